"""Random hardware and random valid mappings (dosa.search.sampler)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dosa.hardware import Hardware
from dosa.mapping import ACC_ORDER, Mapping, order_to_rank
from dosa.search.options import SEED_MAX, HardwareBounds, check_seed, grid_size
from dosa.search.sampler import (
    all_dram_mapping,
    factor_table,
    random_hardware,
    sample_hardware,
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


# ----------------------------------------------------------------------------------------------
# Hardware bounds and bounded hardware sampling
# ----------------------------------------------------------------------------------------------
GRID = [Hardware(2**p, float(2**s), float(2**a))
        for p in range(1, 8) for s in range(12) for a in range(12)]


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"max_sp_kb": -1.0}, "max_sp_kb"),
    ({"max_acc_kb": 0}, "max_acc_kb"),
    ({"max_area_mm2": float("nan")}, "max_area_mm2"),
    ({"max_pe_dim": 0}, "max_pe_dim"),
    ({"max_pe_dim": 8.0}, "max_pe_dim"),
    ({"max_pe_dim": True}, "max_pe_dim"),
    ({"pe_dim": 0}, "pe_dim"),
    ({"pe_dim": 2000}, "pe_dim"),
    ({"pe_dim": 16, "max_pe_dim": 8}, "pe_dim=16 exceeds max_pe_dim=8"),
])
def test_hardware_bounds_validation_names_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        HardwareBounds(**kwargs)


def test_hardware_bounds_refuse_absurd_pe_dim() -> None:
    with pytest.raises(ValueError, match=r"pe_dim must be an integer in \[1, 1024\], got 4096"):
        HardwareBounds(pe_dim=4096)
    assert HardwareBounds(pe_dim=1024).pe_dim == 1024


def test_hardware_bounds_normalise_values() -> None:
    b = HardwareBounds(pe_dim=np.int64(16), max_pe_dim=np.int64(32), max_sp_kb=64,
                       max_acc_kb=np.float32(8.0), max_area_mm2=2)
    assert b.to_dict() == {"pe_dim": 16, "max_pe_dim": 32, "max_sp_kb": 64.0,
                           "max_acc_kb": 8.0, "max_area_mm2": 2.0}
    assert type(b.pe_dim) is int and type(b.max_sp_kb) is float
    assert "max_sp_kb=64.0" in str(b)


@pytest.mark.parametrize("kwargs", [
    {}, {"max_area_mm2": 1.0}, {"max_pe_dim": 8, "max_sp_kb": 64, "max_acc_kb": 32},
    {"pe_dim": 16, "max_area_mm2": 0.5}, {"pe_dim": 32}, {"max_sp_kb": 100.0, "max_acc_kb": 3.0},
])
def test_bounds_feasible_matches_dosa_config(kwargs: dict) -> None:
    """Same semantics as DosaConfig.feasible, so DOSA can switch to HardwareBounds."""
    from dosa.search.dosa_gd import DosaConfig

    bounds, cfg = HardwareBounds(**kwargs), DosaConfig(**kwargs)
    probes = GRID + [Hardware(16, 28.5, 56.0), Hardware(12, 100.0, 3.0), Hardware(256, 1.0, 1.0)]
    assert [bounds.feasible(hw) for hw in probes] == [cfg.feasible(hw) for hw in probes]


def test_candidates_are_exactly_the_feasible_grid_points() -> None:
    assert HardwareBounds().candidates() == GRID
    assert len(GRID) == grid_size()
    box = HardwareBounds(max_pe_dim=8, max_sp_kb=64, max_acc_kb=32).candidates()
    assert len(box) == 3 * 7 * 6
    area = HardwareBounds(max_area_mm2=1.0)
    found = area.candidates()
    assert found == [hw for hw in GRID if hw.area_mm2() <= 1.0]
    assert 0 < len(found) < len(GRID)
    fixed = HardwareBounds(pe_dim=12).candidates()
    assert len(fixed) == grid_size(12) == 144 and {hw.pe_dim for hw in fixed} == {12}
    assert not HardwareBounds().excludes_grid_points()
    assert not HardwareBounds(max_pe_dim=128, max_sp_kb=2048).excludes_grid_points()
    assert area.excludes_grid_points()


def test_require_candidates_names_the_bounds() -> None:
    with pytest.raises(ValueError, match=r"no hardware .* satisfies the bounds .*area_mm2=0.001"):
        HardwareBounds(max_area_mm2=0.001).require_candidates()
    with pytest.raises(ValueError, match=r"pe_dim 128.*max_area_mm2=0.5"):
        HardwareBounds(pe_dim=128, max_area_mm2=0.5).require_candidates()


def test_sample_hardware_without_limits_keeps_random_hardware_draws() -> None:
    """Stored results stay reproducible: no bounds (or bounds excluding nothing) = old draws."""
    old = random_hardware(np.random.default_rng(5), 40)
    assert sample_hardware(np.random.default_rng(5), 40) == old
    assert sample_hardware(np.random.default_rng(5), 40, HardwareBounds()) == old
    assert sample_hardware(np.random.default_rng(5), 40,
                           HardwareBounds(max_pe_dim=128, max_acc_kb=4096)) == old
    assert (sample_hardware(np.random.default_rng(5), 40, HardwareBounds(pe_dim=16))
            == random_hardware(np.random.default_rng(5), 40, pe_dim=16))
    # Pinned: the first draws of seed 0 as random search has always made them.
    assert [h.as_tuple() for h in random_hardware(np.random.default_rng(0), 3)] == [
        (64, 8.0, 1.0), (32, 8.0, 1.0), (16, 1.0, 4.0)]


def test_sample_hardware_is_uniform_over_feasible_points() -> None:
    bounds = HardwareBounds(max_pe_dim=8, max_sp_kb=4, max_acc_kb=2)
    hws = sample_hardware(np.random.default_rng(0), 3000, bounds)
    assert all(bounds.feasible(h) for h in hws)
    counts = {h: hws.count(h) for h in set(hws)}
    assert set(counts) == set(bounds.candidates()) and len(counts) == 3 * 3 * 2
    assert min(counts.values()) > 3000 / 18 * 0.7
    assert sample_hardware(np.random.default_rng(0), 3000, bounds) == hws
    area = HardwareBounds(max_area_mm2=0.2)
    assert all(h.area_mm2() <= 0.2 for h in sample_hardware(np.random.default_rng(1), 200, area))


def test_sample_hardware_without_feasible_point_raises() -> None:
    with pytest.raises(ValueError, match="max_sp_kb=0.5"):
        sample_hardware(np.random.default_rng(0), 3, HardwareBounds(max_sp_kb=0.5))
    with pytest.raises(ValueError, match="n must be"):
        sample_hardware(np.random.default_rng(0), -1)


# ----------------------------------------------------------------------------------------------
# Seeds
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("good", [0, 7, SEED_MAX, np.int64(3)])
def test_check_seed_accepts_32_bit_integers(good: object) -> None:
    assert check_seed(good) == int(good) and type(check_seed(good)) is int


@pytest.mark.parametrize("bad", [-1, 2**32, 1.0, True, "0", None])
def test_check_seed_rejects_others(bad: object) -> None:
    with pytest.raises(ValueError) as err:
        check_seed(bad)
    assert str(err.value) == f"seed must be an integer in [0, 4294967295], got {bad!r}"
