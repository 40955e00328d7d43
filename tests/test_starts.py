"""Open start-point mappers: valid mappings that fit the hardware they were made for."""

from __future__ import annotations

import numpy as np
import pytest

from dosa.hardware import Hardware
from dosa.search.starts import (
    best_of_random_mappings,
    heuristic_mappings,
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
