"""Exhaustive grid baseline (dosa.search.grid)."""

from __future__ import annotations

import pytest
from search_checks import check_bounded

from dosa.evaluation import score_network
from dosa.hardware import Hardware
from dosa.search.grid import grid_points, grid_search
from dosa.search.starts import heuristic_mappings
from dosa.workload import Layer, Network

NET = Network("tiny", (
    Layer("conv", R=3, S=3, P=14, Q=14, C=32, K=64, Wstride=2, Hstride=2, count=2),
    Layer("fc", P=16, C=256, K=100, count=3),
))
AXES = {"pe_dims": [4, 16, 128], "sp_kb": [1.0, 16.0, 256.0], "acc_kb": [1.0, 64.0]}


@pytest.fixture(scope="module")
def result():
    return grid_search(NET, 0, **AXES)


def test_default_grid_is_the_power_of_two_sampling_grid() -> None:
    hws = grid_points()
    assert len(hws) == 7 * 12 * 12 == 1008
    assert hws[0] == Hardware(2, 1.0, 1.0) and hws[1] == Hardware(2, 1.0, 2.0)
    assert hws[-1] == Hardware(128, 2048.0, 2048.0)
    assert {h.pe_dim for h in hws} == {2, 4, 8, 16, 32, 64, 128}


def test_budget_and_accounting(result) -> None:
    assert result.method == "grid"
    assert result.samples == 18 and len(result.extra["hardware_tried"]) == 18
    assert result.trajectory[-1][0] == 18
    assert all(1 <= x <= 18 for x, _ in result.trajectory)
    assert result.model_evals >= 18 * len(NET)


def test_returns_argmin_of_heuristic_designs(result) -> None:
    expected = []
    for hw in grid_points(**AXES):
        maps = heuristic_mappings(NET, hw)
        ok = all(m.is_valid(lay, hw) for m, lay in zip(maps, NET, strict=True))
        expected.append(score_network(NET, maps, hw, check=False).edp if ok else None)
    tried = result.extra["hardware_tried"]
    assert result.extra["infeasible_points"] == sum(e is None for e in expected) > 0
    for got, want in zip(tried, expected, strict=True):
        assert (got["edp"] is None) == (want is None)
        if want is not None:
            assert got["edp"] == pytest.approx(want, rel=1e-12)
    feasible = [(t["edp"], i) for i, t in enumerate(tried) if t["edp"] is not None]
    best_edp, best_i = min(feasible)
    assert result.edp == pytest.approx(best_edp, rel=1e-12)
    assert result.hardware == grid_points(**AXES)[best_i]
    assert result.edp == score_network(NET, result.mappings, result.hardware).edp
    assert [m.to_string() for m in result.mappings] == \
        [m.to_string() for m in heuristic_mappings(NET, result.hardware)]


def test_deterministic_and_seed_free(result) -> None:
    again = grid_search(NET, 7, **AXES)
    assert again.edp == result.edp and again.hardware == result.hardware
    assert again.extra["hardware_tried"] == result.extra["hardware_tried"]
    assert again.seed == 7


def test_rejects_empty_axis_and_all_infeasible() -> None:
    with pytest.raises(ValueError, match="sp_kb"):
        grid_search(NET, 0, sp_kb=[])
    with pytest.raises(ValueError, match="no grid point"):
        grid_search(NET, 0, pe_dims=[128], sp_kb=[1.0], acc_kb=[1.0])


def test_accepts_a_builtin_network_name() -> None:
    res = grid_search("bert", 0, pe_dims=[16], sp_kb=[64.0], acc_kb=[64.0])
    assert res.workload == "bert" and res.samples == 1


#: A grid on which EDP and latency pick different designs (48 points, well under a second).
WIDE = {"pe_dims": [8, 32, 128], "sp_kb": [1.0, 8.0, 64.0, 512.0],
        "acc_kb": [1.0, 8.0, 64.0, 512.0]}


@pytest.fixture(scope="module")
def wide() -> dict:
    return {o: grid_search(NET, 0, **WIDE, objective=o) for o in ("edp", "latency", "energy")}


@pytest.mark.parametrize(("objective", "key"), [("latency", "cycles"), ("energy", "energy_uj")])
def test_objective_is_minimised_exactly(wide: dict, objective: str, key: str) -> None:
    """The grid is exhaustive, so the design chosen by an objective is never worse in it."""
    res, edp = wide[objective], wide["edp"]
    assert res.objective == objective and res.config["objective"] == objective
    assert edp.objective == "edp" and edp.config["objective"] == "edp"
    assert getattr(res, key) <= getattr(edp, key)
    tried = res.extra["hardware_tried"]
    assert all(set(t) == {"pe_dim", "sp_kb", "acc_kb", objective} for t in tried)
    best = min(t[objective] for t in tried if t[objective] is not None)
    assert res.objective_value == pytest.approx(best, rel=1e-12)
    assert res.trajectory[-1][1] == pytest.approx(best, rel=1e-12)
    assert res.edp == score_network(NET, res.mappings, res.hardware).edp


def test_objectives_pick_different_designs(wide: dict) -> None:
    """On this grid the least-latency design is not the least-EDP one (the test has teeth)."""
    assert wide["latency"].hardware != wide["edp"].hardware
    assert wide["latency"].edp > wide["edp"].edp


def test_objective_in_result_json(wide: dict, tmp_path) -> None:
    import json

    from dosa.search.result import SearchResult

    wide["latency"].write(tmp_path / "run", NET)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["objective"] == "latency"
    assert SearchResult.read(tmp_path / "run").objective == "latency"


@pytest.mark.parametrize("objective", ["area", "EDP", None])
def test_rejects_bad_objective(objective: object) -> None:
    with pytest.raises(ValueError, match=r"^objective must be one of edp, latency, energy, got "):
        grid_search(NET, 0, **AXES, objective=objective)  # type: ignore[arg-type]


def test_area_bound_honoured(result) -> None:
    bounded = grid_search(NET, 0, **AXES, max_area_mm2=1.0)
    assert bounded.area_mm2 <= 1.0 < result.area_mm2
    assert bounded.samples == 10 < result.samples == 18  # 8 of the 18 points are larger
    check_bounded(bounded, {"max_area_mm2": 1.0}, NET, tried=10)


@pytest.mark.parametrize("bounds", [
    {"max_pe_dim": 16, "max_sp_kb": 16.0, "max_acc_kb": 1.0},
    {"pe_dim": 16},
])
def test_box_bounds_and_fixed_pe_dim(bounds: dict) -> None:
    res = grid_search(NET, 0, **AXES, **bounds)
    check_bounded(res, bounds, NET, tried=4 if "max_pe_dim" in bounds else 6)


def test_pe_dim_alone_narrows_the_default_grid() -> None:
    res = grid_search(NET, 0, pe_dim=16, max_sp_kb=4.0, max_acc_kb=4.0)
    assert res.samples == 3 * 3 and res.config["pe_dims"] == [16]


@pytest.mark.parametrize("bounds", [{"max_area_mm2": 0.01}, {"max_pe_dim": 2},
                                    {"max_sp_kb": 0.5}])
def test_refuses_bounds_that_exclude_every_point(bounds: dict) -> None:
    with pytest.raises(ValueError, match=r"no grid point lies within the hardware bounds"):
        grid_search(NET, 0, **AXES, **bounds)
