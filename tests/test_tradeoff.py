"""The EDP-area sweeps: budgets checked, keys per budget, DOSA monotone by construction."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from dosa import experiments
from dosa.claims import ARTIFACTS_DIR_ENV, RUNS_DIR_ENV
from dosa.tradeoff import (
    area_sweep,
    area_sweeps,
    budget_config,
    budget_name,
    check_budgets,
    sweep_frame,
    sweep_label,
)


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RUNS_DIR_ENV, str(tmp_path / "runs"))
    monkeypatch.setenv(ARTIFACTS_DIR_ENV, str(tmp_path / "art"))


def test_budgets_sorted_tightest_first_unbounded_last() -> None:
    assert check_budgets([None, 4, 0.5, 2.0]) == (0.5, 2.0, 4.0, None)
    assert check_budgets([1]) == (1.0,)


@pytest.mark.parametrize("bad", [[], [0], [-1.0], [math.nan], [math.inf], ["2"], [True],
                                 [1.0, 1]])
def test_bad_budgets_are_refused_naming_the_field(bad: list) -> None:
    with pytest.raises(ValueError, match="budgets"):
        check_budgets(bad)


def test_names_and_configs() -> None:
    assert budget_name(None) == "unbounded"
    assert budget_name(0.5) == "0.5mm2"
    assert budget_name(1.26734) == "1.267mm2"
    assert sweep_label("dosa-screen", 2.0) == "dosa-screen@2mm2"
    assert sweep_label("dosa-screen", None, "latency") == "dosa-screen-latency@unbounded"
    cfg = budget_config("grid", "smoke", 2.0, "energy")
    assert cfg["max_area_mm2"] == 2.0 and cfg["objective"] == "energy"
    assert cfg["max_pe_dim"] == experiments.SPACE_BOUNDS["max_pe_dim"]
    assert "max_area_mm2" not in budget_config("random", "smoke", None)
    assert "objective" not in budget_config("bo", "smoke", 1.0)
    with pytest.raises(ValueError, match="label must be one of"):
        budget_config("nope", "smoke", 1.0)


@pytest.mark.parametrize("label", ["dosa-screen", "dosa-refine"])
def test_dosa_sweep_is_monotone_and_warm_started(label: str) -> None:
    budgets = [0.4, 0.8, 1.5, None]
    got = area_sweep("bert", label, 0, budgets, "smoke")
    edps = [got[b].edp for b in check_budgets(budgets)]
    assert edps == sorted(edps, reverse=True)
    for b in (0.4, 0.8, 1.5):
        assert got[b].area_mm2 <= b
    assert got[0.4].config["warm_start"] is None
    assert list(got[0.8].config["warm_start"]) == [m.to_string() for m in got[0.4].mappings]
    assert got[0.8].config["warm_hardware"] == got[0.4].hardware.to_dict()
    assert got[0.8].extra["starts"][0]["kind"] == "warm"


def test_grid_sweep_is_monotone_and_objective_is_recorded() -> None:
    got = area_sweep("bert", "grid", 0, [1.0, None], "smoke", objective="latency")
    assert got[None].cycles <= got[1.0].cycles
    assert {r.objective for r in got.values()} == {"latency"}
    assert got[1.0].samples < got[None].samples


def test_parallel_sweeps_equal_sequential_and_rerun_reuses(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    args = (["bert"], ["dosa-screen", "random", "grid"], [1.0, None], "smoke")
    par = area_sweeps(*args, seeds=[0], workers=2)
    calls: list[str] = []
    real = experiments.method_fn
    monkeypatch.setattr(experiments, "method_fn",
                        lambda name: calls.append(name) or real(name))
    seq = area_sweeps(*args, seeds=[0], workers=1)
    assert calls == []  # every run came from the cache
    assert set(par) == set(seq)
    frame = sweep_frame(par)
    assert len(frame) == 3 * 2 and set(frame["budget"]) == {"1mm2", "unbounded"}
    for key in par:
        assert par[key].edp == seq[key].edp and par[key].hardware == seq[key].hardware


def test_sweeps_refuse_bad_input_before_work() -> None:
    with pytest.raises(ValueError, match="label must be one of"):
        area_sweeps(["bert"], ["nope"], [1.0], "smoke")
    with pytest.raises(ValueError, match="objective must be one of"):
        area_sweeps(["bert"], ["grid"], [1.0], "smoke", objective="power")
    with pytest.raises(ValueError, match="budgets"):
        area_sweeps(["bert"], ["grid"], [-1.0], "smoke")
