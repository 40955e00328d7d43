"""Open start-point mappers: valid mappings that fit the hardware they were made for."""

from __future__ import annotations

import numpy as np
import pytest

from dosa.hardware import Hardware
from dosa.mapping import DRAM_ORDERS, divisors
from dosa.search.starts import (
    _grow_tile,
    best_of_random_mappings,
    grown_tile_words,
    heuristic_candidates,
    heuristic_mappings,
    heuristic_tables,
    milp_mapping,
    milp_mappings,
)
from dosa.workload import Layer, Network, load_network

HARDWARE = [Hardware(2, 1, 1), Hardware(16, 128, 32), Hardware(128, 2048, 2048),
            Hardware(32, 8, 1)]


@pytest.mark.parametrize("hw", HARDWARE, ids=str)
@pytest.mark.parametrize("mapper", ["heuristic", "milp", "random"])
def test_start_mappings_are_valid_and_fit(hw: Hardware, mapper: str) -> None:
    net = load_network("resnet50")
    if mapper == "heuristic":
        maps = heuristic_mappings(net, hw)
    elif mapper == "milp":
        maps = milp_mappings(net, hw)
    else:
        maps = best_of_random_mappings(net, hw, 20, np.random.default_rng(0))[0]
    assert len(maps) == len(net.layers)
    for layer, m in zip(net.layers, maps, strict=True):
        m.check(layer, hw)


@pytest.mark.parametrize("workload", ["resnet50", "bert"])
def test_heuristic_tiles_fit_and_cannot_grow(workload: str) -> None:
    """The grid screen's candidates (tables, no Mapping objects): every one fits; its L1 tile
    is a fixed point of the greedy growth (no dim can take its next divisor step and still
    fit); each distinct tile comes with the three canonical DRAM orders; the memoised growth
    gives the same tables as a cold one."""
    net = load_network(workload)
    for hw in HARDWARE + [Hardware(64, 512, 128), Hardware(8, 2048, 4)]:
        for layer in net.layers:
            t, s, r = heuristic_tables(layer, hw)
            cands = heuristic_candidates(layer, hw)
            assert len(cands) == len(t) and len(t) % len(DRAM_ORDERS) == 0
            for m, ti, si, ri in zip(cands, t, s, r, strict=True):
                assert (m.temporal == ti).all() and (m.spatial == si).all()
                assert (m.rank == ri).all()
                m.check(layer, hw)
            csp, ksp = int(s[0, 1, 4]), int(s[0, 2, 5])
            left = list(layer.dims)
            left[4] //= csp
            left[5] //= ksp
            for t1 in t[::len(DRAM_ORDERS), 1]:
                for d in range(7):
                    rest = left[d] // int(t1[d])
                    if rest == 1:
                        continue
                    trial = [int(x) for x in t1]
                    trial[d] *= next(x for x in divisors(rest) if x > 1)
                    acc, sp = grown_tile_words(trial, csp, ksp, layer.strides)
                    assert acc > hw.acc_words_per_bank or sp > hw.sp_words
    _grow_tile.cache_clear()
    layer, hw = net.layers[0], HARDWARE[1]
    cold = heuristic_tables(layer, hw)
    warm = heuristic_tables(layer, hw)
    assert all((a == b).all() for a, b in zip(cold, warm, strict=True))


def test_milp_fills_the_array_when_it_can() -> None:
    layer = Layer("pw", P=56, Q=56, C=64, K=64)
    m = milp_mapping(layer, Hardware(16, 256, 64))
    assert m.spatial[1, 4] == 16 and m.spatial[2, 5] == 16  # Csp = Ksp = pe_dim
    assert m.spatial[1, 4] * m.spatial[2, 5] <= 16 * 16


def test_milp_is_deterministic_and_handles_trivial_layers() -> None:
    net = Network("t", (Layer("one", C=1, K=1), Layer("prime", C=7, K=13, P=11, R=3, S=3)))
    hw = Hardware(8, 4, 2)
    a = [m.to_string() for m in milp_mappings(net, hw)]
    b = [m.to_string() for m in milp_mappings(net, hw)]
    assert a == b
