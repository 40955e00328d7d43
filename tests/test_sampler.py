"""Random hardware and random valid mappings (dosa.search.sampler)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dosa.hardware import Hardware
from dosa.mapping import ACC_ORDER, Mapping, order_to_rank
from dosa.search.sampler import (
    all_dram_mapping,
    factor_table,
    random_hardware,
    sample_mappings,
    to_mappings,
)
from dosa.workload import Layer

R, S, P, Q, C, K, N = range(7)

LAYERS = [
    Layer("conv3x3_s2", R=3, S=3, P=28, Q=28, C=128, K=128, Wstride=2, Hstride=2),
    Layer("conv7x7_s2", R=7, S=7, P=112, Q=112, C=3, K=64, Wstride=2, Hstride=2),
    Layer("matmul", P=128, C=768, K=3072),
    Layer("batch_conv", R=3, S=1, P=14, Q=7, C=20, K=36, N=4),
]
HARDWARE = [Hardware(2, 1.0, 1.0), Hardware(128, 1.0, 1.0), Hardware(16, 128.0, 32.0),
            Hardware(128, 2048.0, 2048.0)]


def test_random_hardware_ranges_and_determinism() -> None:
    hws = random_hardware(np.random.default_rng(0), 200)
    pes = {h.pe_dim for h in hws}
    sps = {h.sp_kb for h in hws}
    accs = {h.acc_kb for h in hws}
    assert pes == {2**k for k in range(1, 8)}
    assert sps == {float(2**k) for k in range(12)}
    assert accs == {float(2**k) for k in range(12)}
    again = random_hardware(np.random.default_rng(0), 200)
    assert hws == again
    assert random_hardware(np.random.default_rng(1), 200) != hws
    fixed = random_hardware(np.random.default_rng(0), 50, pe_dim=16)
    assert {h.pe_dim for h in fixed} == {16}
    assert len({h.sp_kb for h in fixed}) > 1


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_random_hardware_rejects_bad_n(bad: object) -> None:
    with pytest.raises(ValueError, match="n must be"):
        random_hardware(np.random.default_rng(0), bad)  # type: ignore[arg-type]


def test_random_hardware_rejects_bad_pe_dim() -> None:
    with pytest.raises(ValueError, match="pe_dim"):
        random_hardware(np.random.default_rng(0), 3, pe_dim=0)


def test_factor_table_lists_every_factorisation() -> None:
    tab = factor_table(12, 2)
    assert len(tab) == len({tuple(r) for r in tab.tolist()})
    assert all(12 % (a * b) == 0 for a, b in tab.tolist())
    # 12 = 2^2 * 3 over 3 slots (2 inner + DRAM): C(4,2) * C(3,2) = 18 ordered factorisations.
    assert len(tab) == 18


@pytest.mark.parametrize("hw", HARDWARE, ids=lambda h: "x".join(map(str, h.as_tuple())))
@pytest.mark.parametrize("layer", LAYERS, ids=lambda lay: lay.name)
def test_sampled_mappings_are_valid_and_legal(layer: Layer, hw: Hardware) -> None:
    t, s, r = sample_mappings(layer, hw, 150, np.random.default_rng(3))
    assert t.shape == s.shape == r.shape == (150, 4, 7)
    assert t.dtype == s.dtype == r.dtype == np.int64
    for m in to_mappings((t, s, r)):
        m.check(layer, hw)
    # The legal Gemmini mapspace: spatial only Csp/Ksp, L0 only P, no L2 loops, fixed L1 order.
    spatial_mask = np.ones((4, 7), dtype=bool)
    spatial_mask[1, C] = spatial_mask[2, K] = False
    assert np.all(s[:, spatial_mask] == 1)
    assert np.all(np.delete(t[:, 0], P, axis=1) == 1)
    assert np.all(t[:, 2] == 1)
    assert np.all(r[:, 1] == np.array(order_to_rank(ACC_ORDER)))
    for j in range(4):
        assert np.all(np.sort(r[:, j], axis=1) == np.arange(7))


def test_samples_vary_and_dram_order_is_random() -> None:
    layer, hw = LAYERS[0], Hardware(16, 128.0, 32.0)
    t, s, r = sample_mappings(layer, hw, 300, np.random.default_rng(0))
    assert len({tuple(row) for row in r[:, 3].tolist()}) > 100
    assert len({tuple(row) for row in t[:, 1].tolist()}) > 30
    assert len(set(s[:, 1, C].tolist())) > 1 and len(set(s[:, 2, K].tolist())) > 1


def test_sampling_is_deterministic_in_the_generator() -> None:
    layer, hw = LAYERS[2], Hardware(8, 64.0, 16.0)
    a = sample_mappings(layer, hw, 100, np.random.default_rng(7))
    b = sample_mappings(layer, hw, 100, np.random.default_rng(7))
    c = sample_mappings(layer, hw, 100, np.random.default_rng(8))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_shortfall_returns_what_was_found_plus_all_dram(caplog: pytest.LogCaptureFixture
                                                       ) -> None:
    layer, hw = LAYERS[1], Hardware(2, 1.0, 1.0)
    with caplog.at_level(logging.WARNING, logger="dosa.search.sampler"):
        t, s, r = sample_mappings(layer, hw, 500, np.random.default_rng(0), max_tries=1)
    assert 1 <= len(t) < 500
    assert "only" in caplog.text
    fallback = all_dram_mapping(layer)
    np.testing.assert_array_equal(t[-1], fallback[0][0])
    np.testing.assert_array_equal(s[-1], fallback[1][0])
    for m in to_mappings((t, s, r)):
        m.check(layer, hw)


def test_all_dram_mapping_fits_smallest_hardware() -> None:
    for layer in LAYERS:
        (m,) = to_mappings(all_dram_mapping(layer))
        m.check(layer, Hardware(128, 1.0, 1.0))


def test_hardware_too_small_for_any_tile_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        sample_mappings(LAYERS[0], Hardware(128, 1.0, 0.25), 10, np.random.default_rng(0))


@pytest.mark.parametrize("kwargs", [{"n": 0}, {"n": 2.0}, {"n": 5, "max_tries": 0}])
def test_sample_mappings_rejects_bad_arguments(kwargs: dict) -> None:
    n = kwargs.pop("n")
    with pytest.raises(ValueError, match="must be a positive integer"):
        sample_mappings(LAYERS[0], HARDWARE[2], n, np.random.default_rng(0), **kwargs)


def test_to_mappings_round_trips() -> None:
    arrays = sample_mappings(LAYERS[3], HARDWARE[2], 5, np.random.default_rng(1))
    ms = to_mappings(arrays)
    assert all(isinstance(m, Mapping) for m in ms)
    np.testing.assert_array_equal(np.stack([m.temporal for m in ms]), arrays[0])
    np.testing.assert_array_equal(np.stack([m.rank for m in ms]), arrays[2])
