"""Best-known design search (dosa.search.best_known)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dosa.evaluation import network_edp, score_network
from dosa.hardware import Hardware
from dosa.mapping import Mapping
from dosa.search import best_known as bk
from dosa.search.grid import grid_search
from dosa.search.options import HardwareBounds
from dosa.search.sampler import sample_mappings
from dosa.search.starts import heuristic_mappings
from dosa.workload import Layer, Network

NET = Network("tiny", (
    Layer("conv", R=3, S=3, P=14, Q=14, C=32, K=64, Wstride=2, Hstride=2, count=2),
    Layer("fc", P=16, C=256, K=100, count=3),
))
BOUNDS = {"max_pe_dim": 8, "max_sp_kb": 16.0, "max_acc_kb": 16.0}
#: The grid axes those bounds leave (pe 2..8, buffers 1..16 KB, powers of two).
AXES = {"pe_dims": [2, 4, 8], "sp_kb": [1.0, 2.0, 4.0, 8.0, 16.0],
        "acc_kb": [1.0, 2.0, 4.0, 8.0, 16.0]}
SMALL = {"top_points": 2, "random_per_layer": 30, "rounds": 1, "refine_starts": 1,
         "local_steps": 1, "final_local_steps": 1, **BOUNDS}


@pytest.fixture(scope="module")
def result():
    return bk.best_known_search(NET, 0, **SMALL)


def test_never_worse_than_the_grid_heuristic_on_the_same_points(result) -> None:
    grid = grid_search(NET, 0, **AXES)
    assert result.extra["grid_points"] == len(HardwareBounds(**BOUNDS).candidates()) == 75
    assert result.extra["stage_edp"]["grid_heuristic"] == pytest.approx(grid.edp, rel=1e-12)
    assert result.edp <= grid.edp * (1 + 1e-12)
    stages = result.extra["stage_edp"]
    assert stages["mapping_optimised"] <= stages["grid_heuristic"] * (1 + 1e-12)
    assert stages["polished"] <= stages["mapping_optimised"] * (1 + 1e-12)
    assert result.edp == pytest.approx(stages["refined"], rel=1e-12)
    for point in result.extra["points"]:  # per point: mapping and polish never lose
        assert point["mapped_edp"] <= point["grid_edp"] * (1 + 1e-12)
        assert point["polished_edp"] <= point["mapped_edp"] * (1 + 1e-12)


def test_design_holds_its_mappings_inside_the_bounds(result) -> None:
    assert result.method == "best-known"
    assert HardwareBounds(**BOUNDS).feasible(result.hardware)
    for layer, m in zip(NET, result.mappings, strict=True):
        m.check(layer, result.hardware)  # raises when a tile overflows a buffer
    assert result.edp == score_network(NET, result.mappings, result.hardware).edp
    # the polished buffers are whole KB and no bigger than the mappings need (+ rounding)
    _, acc_words, sp_words = bk.needed_words(NET, result.mappings)
    assert result.hardware.sp_kb == math.ceil(sp_words / 1024)
    assert result.hardware.acc_kb == math.ceil(result.hardware.pe_dim * acc_words * 4 / 1024)


def test_accounting_and_config(result) -> None:
    assert result.samples == result.model_evals > 0
    xs = [x for x, _ in result.trajectory]
    ys = [y for _, y in result.trajectory]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)
    assert xs[-1] == result.samples and ys[-1] == pytest.approx(result.edp, rel=1e-12)
    assert {k: result.config[k] for k in SMALL} == SMALL
    assert result.config == {**bk.BestKnownConfig().__dict__, **SMALL}


def test_deterministic_for_a_seed(result) -> None:
    again = bk.best_known_search(NET, 0, **SMALL)
    assert again.edp == result.edp and again.hardware == result.hardware
    assert [m.to_string() for m in again.mappings] == [m.to_string() for m in result.mappings]
    assert again.extra == result.extra and again.trajectory == result.trajectory


def test_bounds_that_are_not_whole_kb_are_honoured() -> None:
    bounds = {"max_pe_dim": 8, "max_sp_kb": 12.5, "max_acc_kb": 6.5}
    res = bk.best_known_search(NET, 1, **{**SMALL, **bounds})
    assert HardwareBounds(**bounds).feasible(res.hardware)
    for layer, m in zip(NET, res.mappings, strict=True):
        m.check(layer, res.hardware)


def test_an_area_budget_is_honoured_and_polish_takes_the_widest_array_it_allows() -> None:
    budget = Hardware(4, 8.0, 4.0).area_mm2()
    res = bk.best_known_search(NET, 0, **{**SMALL, "max_area_mm2": budget})
    assert res.hardware.area_mm2() <= budget and res.config["max_area_mm2"] == budget
    for layer, m in zip(NET, res.mappings, strict=True):
        m.check(layer, res.hardware)
    cfg = bk.BestKnownConfig(**BOUNDS, max_area_mm2=budget)
    mappings = heuristic_mappings(NET, Hardware(2, 4.0, 2.0))
    cands = bk.polished_hardware(NET, mappings, Hardware(4, 8.0, 4.0), cfg)
    assert cands and all(c.area_mm2() <= budget for c in cands)
    # the widest candidate is the widest array the budget allows for the same buffers
    widest = max(cands, key=lambda c: c.pe_dim)
    _, acc_words, _ = bk.needed_words(NET, mappings)
    wider = widest.pe_dim + 1
    assert wider > BOUNDS["max_pe_dim"] or Hardware(
        wider, widest.sp_kb, float(math.ceil(wider * acc_words * 4 / 1024))).area_mm2() > budget
    unbounded = bk.polished_hardware(NET, mappings, Hardware(4, 8.0, 4.0),
                                     bk.BestKnownConfig(**BOUNDS))
    assert widest.pe_dim < max(c.pe_dim for c in unbounded)  # the budget binds here


# ----------------------------------------------------------------------------------------------
# Coordinate descent
# ----------------------------------------------------------------------------------------------
def _random_pools(rng: np.random.Generator, layers: int, size: int
                  ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    counts = rng.integers(1, 4, size=layers).astype(np.float64)
    cycles = [rng.uniform(1, 100, size=size) for _ in range(layers)]
    energy = [rng.uniform(1, 100, size=size) for _ in range(layers)]
    return counts, cycles, energy


def _edp(counts, cycles, energy, sel) -> float:
    return float(network_edp(counts, np.array([c[i] for c, i in zip(cycles, sel, strict=True)]),
                             np.array([e[i] for e, i in zip(energy, sel, strict=True)])))


@pytest.mark.parametrize("case", range(20))
def test_coordinate_descent_never_increases_and_reaches_a_fixed_point(case: int) -> None:
    rng = np.random.default_rng(case)
    counts, cycles, energy = _random_pools(rng, layers=4, size=6)
    start = rng.integers(6, size=4)
    sel, edp, passes = bk.coordinate_descent(counts, cycles, energy, start)
    assert edp == pytest.approx(_edp(counts, cycles, energy, sel), rel=1e-12)
    assert edp <= _edp(counts, cycles, energy, start) * (1 + 1e-12)
    assert passes >= 1
    for i in range(4):  # fixed point: no single-layer change lowers the network EDP
        for k in range(6):
            other = sel.copy()
            other[i] = k
            assert _edp(counts, cycles, energy, other) >= edp * (1 - 1e-9)
    # the multi-start choice is never worse than a given start and close to the optimum
    best_sel, best = bk.choose(counts, [_pool(c, e) for c, e in zip(cycles, energy, strict=True)],
                               [start])
    assert best <= edp * (1 + 1e-12)
    optimum = min(_edp(counts, cycles, energy, s) for s in itertools.product(range(6), repeat=4))
    assert optimum <= best <= optimum * 1.05
    assert best == pytest.approx(_edp(counts, cycles, energy, best_sel), rel=1e-12)


def _pool(cycles: np.ndarray, energy: np.ndarray) -> bk._Pool:
    z = np.ones((len(cycles), 4, 7), dtype=np.int64)
    return bk._Pool(z, z, np.zeros_like(z), cycles, energy)


def test_pareto_front() -> None:
    cycles = np.array([3.0, 1.0, 2.0, 2.0, 5.0, 1.0])
    energy = np.array([1.0, 5.0, 2.0, 3.0, 0.5, 5.0])
    front = bk.pareto_front(cycles, energy)
    assert front.tolist() == [1, 2, 0, 4]  # by cycles; 3 is dominated by 2, 5 duplicates 1


# ----------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------
def test_canonical_ranks_match_mapping_canonical() -> None:
    rng = np.random.default_rng(3)
    t, s, r = sample_mappings(NET[0], Hardware(8, 16.0, 16.0), 50, rng)
    canon = bk._canonical_rank(t, r)
    for i in range(len(t)):
        assert np.array_equal(canon[i], Mapping(t[i], s[i], r[i]).canonical().rank)


def test_neighbours_are_valid_fitting_mappings() -> None:
    hw = Hardware(8, 8.0, 4.0)
    layer = NET[0]
    m = heuristic_mappings(NET, hw)[0]
    rng = np.random.default_rng(0)
    for t, s, r in (bk._block_neighbours(layer, hw, m.temporal, m.spatial, m.rank, rng),
                    bk._redraw_neighbours(layer, hw, m.temporal, m.spatial, m.rank, rng, 200)):
        assert len(t) > 0
        for i in range(len(t)):
            Mapping(t[i], s[i], r[i]).check(layer, hw)


def test_polished_hardware_holds_the_mappings_within_bounds() -> None:
    cfg = bk.BestKnownConfig(**BOUNDS)
    hw = Hardware(8, 16.0, 16.0)
    mappings = heuristic_mappings(NET, Hardware(4, 4.0, 2.0))
    cands = bk.polished_hardware(NET, mappings, hw, cfg)
    assert cands and hw not in cands
    for cand in cands:
        assert cfg.bounds().feasible(cand)
        assert cand.sp_kb <= hw.sp_kb and cand.sp_kb == int(cand.sp_kb)
        for layer, m in zip(NET, mappings, strict=True):
            m.check(layer, cand)
    assert max(c.pe_dim for c in cands) == 8  # the widest array the accumulator bound allows


# ----------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("options", "field"), [
    ({"top_points": 0}, "top_points"),
    ({"random_per_layer": -5}, "random_per_layer"),
    ({"rounds": 1.5}, "rounds"),
    ({"refine_starts": True}, "refine_starts"),
    ({"local_steps": "3"}, "local_steps"),
    ({"final_local_steps": 0}, "final_local_steps"),
    ({"max_pe_dim": 0}, "max_pe_dim"),
    ({"max_sp_kb": -1.0}, "max_sp_kb"),
    ({"max_acc_kb": float("nan")}, "max_acc_kb"),
    ({"max_sp_kb": 0.5}, "max_sp_kb"),  # no grid point fits
    ({"max_area_mm2": 0.0}, "max_area_mm2"),
    ({"max_area_mm2": 1e-6}, "max_area_mm2"),  # no grid point fits
    ({"mappings_per_layer": 10}, "mappings_per_layer"),
])
def test_bad_options_name_the_field(options: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        bk.best_known_search(NET, 0, **options)


def test_bad_seed_and_network() -> None:
    with pytest.raises(ValueError, match="seed"):
        bk.best_known_search(NET, -1)
    with pytest.raises(ValueError):
        bk.best_known_search("no-such-network", 0)


def test_refine_design_improves_within_bounds_and_budget() -> None:
    net = NET
    hw = Hardware(16, 64.0, 32.0)
    start = heuristic_mappings(net, hw)
    cfg = bk.refinement_config(HardwareBounds(max_area_mm2=1.0))
    assert (cfg.max_pe_dim, cfg.max_sp_kb, cfg.max_area_mm2) == (128, 2048.0, 1.0)
    edp0 = score_network(net, start, hw).edp
    edp, hw_r, maps, evals, history = bk.refine_design(net, hw, start, cfg, 0, 400)
    assert edp <= edp0 and history[0] == (len(net), edp0)
    assert [e for _, e in history] == sorted((e for _, e in history), reverse=True)
    assert cfg.bounds().feasible(hw_r) and hw_r.area_mm2() <= 1.0
    assert score_network(net, maps, hw_r).edp == pytest.approx(edp, rel=1e-12)  # checks them
    more = bk.refine_design(net, hw, start, cfg, 0, 4000)
    assert evals <= more[3]
    assert bk.refine_design(net, hw, start, cfg, 0, 400)[:2] == (edp, hw_r)
