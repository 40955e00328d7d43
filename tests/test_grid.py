"""Exhaustive grid baseline (dosa.search.grid)."""

from __future__ import annotations

import pytest

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
