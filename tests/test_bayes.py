"""Bayesian-optimisation baselines (dosa.search.bayes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from search_checks import check_bounded

from dosa.evaluation import score_network
from dosa.hardware import Hardware
from dosa.search import bayes as bayes_module
from dosa.search.bayes import (
    NUM_FEATURES,
    HardwareSpace,
    bayes_flat_search,
    bayes_search,
    encode_mappings,
    lcb_top_k,
)
from dosa.search.options import HardwareBounds, grid_hardware
from dosa.search.sampler import sample_mappings
from dosa.workload import Layer, Network

NET = Network("tiny", (
    Layer("conv", R=3, S=3, P=14, Q=14, C=32, K=64, count=2),
    Layer("fc", P=16, C=256, K=100),
))
BUDGET = {"num_hw": 4, "initial_hw": 2, "mappings_per_hw": 20, "candidates_per_layer": 60,
          "top_k": 5}


@pytest.fixture(scope="module")
def result():
    return bayes_search(NET, 0, **BUDGET)


def test_budget_and_accounting(result) -> None:
    assert result.method == "bo"
    assert result.samples == 4 * 20
    # Per hw and layer: 20 random training mappings + top_k LCB picks (none fell short here).
    assert result.model_evals == 4 * len(NET) * (20 + 5)
    assert len(result.extra["hardware_tried"]) == 4
    xs = [x for x, _ in result.trajectory]
    assert all(x % 20 == 0 for x in xs) and xs[-1] == result.samples
    assert result.config["acq_func"] == "EI"


def test_result_is_exactly_scored_and_best_of_tried(result) -> None:
    assert result.edp == score_network(NET, result.mappings, result.hardware).edp
    tried = result.extra["hardware_tried"]
    assert result.edp == pytest.approx(min(h["edp"] for h in tried), rel=1e-12)
    assert result.trajectory[-1][1] == pytest.approx(result.edp, rel=1e-12)


def test_deterministic_for_fixed_seed(result) -> None:
    again = bayes_search(NET, 0, **BUDGET)
    assert again.edp == result.edp
    assert again.hardware == result.hardware
    assert again.extra["hardware_tried"] == result.extra["hardware_tried"]
    assert [m.to_string() for m in again.mappings] == [m.to_string() for m in result.mappings]
    other = bayes_search(NET, 1, **BUDGET)
    assert other.extra["hardware_tried"] != result.extra["hardware_tried"]


def test_fixed_pe_dim_and_lcb() -> None:
    res = bayes_search(NET, 3, num_hw=3, initial_hw=2, mappings_per_hw=10,
                       candidates_per_layer=30, top_k=3, pe_dim=16, acq_func="LCB")
    assert res.hardware.pe_dim == 16
    assert all(h["pe_dim"] == 16 for h in res.extra["hardware_tried"])


def test_encoding_is_compact_and_finite() -> None:
    arrays = sample_mappings(NET[0], Hardware(16, 64.0, 32.0), 50, np.random.default_rng(0))
    x = encode_mappings(*arrays)
    assert x.shape == (50, NUM_FEATURES) and x.dtype == np.float64
    assert np.all(np.isfinite(x))
    np.testing.assert_array_equal(x[:, 0], np.log2(arrays[1][:, 1, 4]))  # Csp
    pos = x[:, 10:]
    assert np.all((pos >= 0) & (pos <= 7))


def test_lcb_top_k_returns_k_distinct_candidates() -> None:
    hw = Hardware(16, 64.0, 32.0)
    rng = np.random.default_rng(0)
    train = sample_mappings(NET[1], hw, 30, rng)
    y = np.log(np.arange(1, 31, dtype=np.float64))
    cands = sample_mappings(NET[1], hw, 100, rng)
    idx = lcb_top_k(train, y, cands, 7)
    assert len(idx) == 7 == len(set(idx.tolist()))
    assert np.array_equal(lcb_top_k(train, y, cands, 7), idx)
    assert len(lcb_top_k(train, y, tuple(a[:4] for a in cands), 7)) == 4


def test_hardware_space_without_bounds_is_the_full_grid() -> None:
    """The pre-bounds space (same axes, ranges, no constraint), so unbounded runs are unchanged."""
    space = HardwareSpace(HardwareBounds())
    assert [(d.name, d.low, d.high) for d in space.dimensions] == [
        ("log2_pe_dim", 1, 7), ("log2_sp_kb", 0, 11), ("log2_acc_kb", 0, 11)]
    assert space.constraint is None
    assert space.to_hardware([4, 7, 5]) == Hardware(16, 128.0, 32.0)
    fixed = HardwareSpace(HardwareBounds(pe_dim=16))
    assert [d.name for d in fixed.dimensions] == ["log2_sp_kb", "log2_acc_kb"]
    assert fixed.constraint is None
    assert fixed.to_hardware([7, 5]) == Hardware(16, 128.0, 32.0)


def test_hardware_space_box_bounds_narrow_the_ranges() -> None:
    space = HardwareSpace(HardwareBounds(max_pe_dim=8, max_sp_kb=64, max_acc_kb=40))
    assert [(d.low, d.high) for d in space.dimensions] == [(1, 3), (0, 6), (0, 5)]
    assert space.constraint is None
    single_axis = HardwareSpace(HardwareBounds(max_pe_dim=2, max_sp_kb=1))
    assert [d.name for d in single_axis.dimensions] == ["log2_acc_kb"]
    assert single_axis.to_hardware([3]) == Hardware(2, 1.0, 8.0)


def test_hardware_space_area_bound_allows_exactly_the_feasible_points() -> None:
    bounds = HardwareBounds(max_area_mm2=1.0)
    space = HardwareSpace(bounds)
    assert space.constraint is not None
    ranges = [range(d.low, d.high + 1) for d in space.dimensions]
    allowed = [space.to_hardware([p, s, a]) for p in ranges[0] for s in ranges[1]
               for a in ranges[2] if space.constraint([p, s, a])]
    assert allowed == bounds.candidates()
    assert space.constraint([np.int64(1), np.int64(0), np.int64(0)])  # skopt hands numpy ints
    assert grid_hardware(1, 0, 0) in allowed


def test_hardware_space_single_point_has_no_dimensions() -> None:
    space = HardwareSpace(HardwareBounds(max_pe_dim=2, max_sp_kb=1, max_acc_kb=1))
    assert space.dimensions == [] and space.to_hardware([]) == Hardware(2, 1.0, 1.0)


@pytest.mark.parametrize("kwargs", [{"acq_func": "PI"}, {"num_hw": 0}, {"top_k": 0},
                                    {"pe_dim": 0}, {"pe_dim": 5000}])
def test_rejects_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="acq_func|positive integer|pe_dim"):
        bayes_search(NET, 0, **kwargs)


def test_bayes_flat_search() -> None:
    pytest.importorskip("dosa.search.starts", reason="dosa.search.starts not available")
    res = bayes_flat_search(NET, 0, num_hw=4, initial_hw=2)
    assert res.method == "bo-flat"
    assert res.samples == 4
    assert res.model_evals == 4 * len(NET)
    assert res.edp == score_network(NET, res.mappings, res.hardware).edp
    again = bayes_flat_search(NET, 0, num_hw=4, initial_hw=2)
    assert again.edp == res.edp and again.hardware == res.hardware


def test_unbounded_proposals_unchanged(result) -> None:
    """Results stored before bounds existed stay reproducible."""
    tried = [(h["pe_dim"], h["sp_kb"], h["acc_kb"]) for h in result.extra["hardware_tried"]]
    assert tried[:2] == [(16, 256.0, 128.0), (16, 32.0, 128.0)]  # pinned random initial points
    again = bayes_search(NET, 0, **BUDGET, max_pe_dim=128, max_sp_kb=None, max_acc_kb=2048.0)
    assert again.extra["hardware_tried"] == result.extra["hardware_tried"]
    assert again.edp == result.edp


BOUNDS = [
    {"max_area_mm2": 1.0},
    {"max_pe_dim": 8, "max_sp_kb": 64.0, "max_acc_kb": 32.0},
    {"pe_dim": 16, "max_area_mm2": 0.5},
    {"max_pe_dim": 2, "max_sp_kb": 1.0, "max_acc_kb": 1.0},  # a single grid point
]
SMALL = {"num_hw": 4, "initial_hw": 2, "mappings_per_hw": 20, "candidates_per_layer": 40,
         "top_k": 3}


@pytest.mark.parametrize("bounds", BOUNDS)
def test_bo_bounds_honoured(bounds: dict) -> None:
    check_bounded(bayes_search(NET, 0, **SMALL, **bounds), bounds, NET, tried=4)


@pytest.mark.parametrize("bounds", BOUNDS)
def test_bo_flat_bounds_honoured(bounds: dict) -> None:
    pytest.importorskip("dosa.search.starts", reason="dosa.search.starts not available")
    check_bounded(bayes_flat_search(NET, 0, num_hw=4, initial_hw=2, **bounds), bounds, NET,
                  tried=4)


def test_bo_area_bound_is_deterministic() -> None:
    a = bayes_search(NET, 5, **SMALL, max_area_mm2=0.3)
    b = bayes_search(NET, 5, **SMALL, max_area_mm2=0.3)
    assert a.extra["hardware_tried"] == b.extra["hardware_tried"] and a.edp == b.edp


def test_bo_no_feasible_hardware_fails_before_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("search work started")

    monkeypatch.setattr(bayes_module, "inner_search", forbidden)
    monkeypatch.setattr(bayes_module, "Optimizer", forbidden)
    with pytest.raises(ValueError, match=r"no hardware .*max_area_mm2=0.001"):
        bayes_search(NET, 0, **SMALL, max_area_mm2=0.001)
    with pytest.raises(ValueError, match=r"pe_dim 128.*max_area_mm2=0.5"):
        bayes_flat_search(NET, 0, num_hw=2, pe_dim=128, max_area_mm2=0.5)


def test_bo_string_network_accepted() -> None:
    res = bayes_search("bert", 0, num_hw=1, initial_hw=1, mappings_per_hw=5,
                       candidates_per_layer=10, top_k=2)
    assert res.workload == "bert"
    pytest.importorskip("dosa.search.starts", reason="dosa.search.starts not available")
    assert bayes_flat_search("bert", 0, num_hw=2, initial_hw=1).workload == "bert"


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_bo_rejects_bad_seed(seed: object) -> None:
    for fn in (bayes_search, bayes_flat_search):
        with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 4294967295\]"):
            fn(NET, seed, num_hw=1, initial_hw=1)  # type: ignore[arg-type]


def test_bayes_flat_proposes_only_hardware_its_mapper_can_fill() -> None:
    """On tiny scratchpads the heuristic's one-word tile (Csp x Ksp weights) overflows: such
    points are never proposed (they used to crash the run), and an all-unusable box is refused."""
    from dosa.search.starts import heuristic_fits

    res = bayes_flat_search(NET, 0, num_hw=6, initial_hw=3, max_pe_dim=64, max_sp_kb=2.0)
    tried = [Hardware(int(h["pe_dim"]), h["sp_kb"], h["acc_kb"])
             for h in res.extra["hardware_tried"]]
    assert all(heuristic_fits(NET, hw) for hw in tried)
    assert not heuristic_fits(NET, Hardware(64, 1.0, 64.0))
    with pytest.raises(ValueError, match="heuristic mapper"):
        bayes_flat_search(NET, 0, num_hw=2, initial_hw=1, pe_dim=64, max_sp_kb=1.0)


#: Only random hardware (initial_hw = num_hw) and every candidate evaluated (top_k >=
#: candidates_per_layer): the draws are then the same for every objective, so the choice by an
#: objective is at least as good in it as the EDP choice. The GP still ranks nothing here;
#: test_objective_drives_both_gps covers the guided path.
SAME_DRAWS = {"num_hw": 3, "initial_hw": 3, "mappings_per_hw": 10, "candidates_per_layer": 8,
              "top_k": 8}


@pytest.mark.parametrize(("objective", "key"), [("latency", "cycles"), ("energy", "energy_uj")])
def test_objective_is_minimised(objective: str, key: str) -> None:
    edp = bayes_search(NET, 0, **SAME_DRAWS)
    res = bayes_search(NET, 0, **SAME_DRAWS, objective=objective)
    assert res.objective == objective and res.config["objective"] == objective
    assert edp.objective == "edp" and edp.config["objective"] == "edp"
    hws = [(h["pe_dim"], h["sp_kb"], h["acc_kb"]) for h in res.extra["hardware_tried"]]
    assert hws == [(h["pe_dim"], h["sp_kb"], h["acc_kb"]) for h in edp.extra["hardware_tried"]]
    assert getattr(res, key) <= getattr(edp, key)
    assert res.objective_value == pytest.approx(
        min(h[objective] for h in res.extra["hardware_tried"]), rel=1e-12)
    assert res.trajectory[-1][1] == pytest.approx(res.objective_value, rel=1e-12)


def test_objective_drives_both_gps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-layer GP is fitted to the log of the objective, the outer GP told its log."""
    fitted: list[np.ndarray] = []
    real = bayes_module.lcb_top_k

    def spy(train, log_edp, cands, top_k):  # type: ignore[no-untyped-def]
        fitted.append(np.asarray(log_edp))
        return real(train, log_edp, cands, top_k)

    told: list[float] = []

    class Told(bayes_module.Optimizer):  # type: ignore[misc,name-defined]
        def tell(self, x, y, *args, **kwargs):  # type: ignore[no-untyped-def]
            told.append(y)
            return super().tell(x, y, *args, **kwargs)

    monkeypatch.setattr(bayes_module, "lcb_top_k", spy)
    monkeypatch.setattr(bayes_module, "Optimizer", Told)
    res = bayes_search(NET, 0, **BUDGET, objective="latency")
    hw = Hardware(**{k: res.extra["hardware_tried"][0][k] for k in ("pe_dim", "sp_kb",
                                                                       "acc_kb")})
    rng = np.random.default_rng(0)  # the first layer's training draws on the first hardware
    train = sample_mappings(NET[0], hw, BUDGET["mappings_per_hw"], rng)
    cycles, _ = bayes_module.evaluate_samples(NET, hw, [train, sample_mappings(
        NET[1], hw, BUDGET["mappings_per_hw"], rng)])
    np.testing.assert_array_equal(fitted[0], np.log(cycles[:len(train[0])]))
    tried = res.extra["hardware_tried"]
    assert all(set(h) == {"pe_dim", "sp_kb", "acc_kb", "latency"} for h in tried)
    assert told == [math.log(h["latency"]) for h in tried]
    assert res.cycles == pytest.approx(min(h["latency"] for h in tried), rel=1e-12)


def test_bo_objective_in_result_json(tmp_path) -> None:
    import json

    from dosa.search.result import SearchResult

    res = bayes_search(NET, 0, **SAME_DRAWS, objective="energy")
    res.write(tmp_path / "run", NET)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["objective"] == "energy"
    assert SearchResult.read(tmp_path / "run").objective == "energy"


def test_bo_flat_objective() -> None:
    edp = bayes_flat_search(NET, 0, num_hw=3, initial_hw=3)
    res = bayes_flat_search(NET, 0, num_hw=3, initial_hw=3, objective="latency")
    assert res.objective == "latency" and res.config["objective"] == "latency"
    assert res.cycles <= edp.cycles  # same random hardware, same (heuristic) mappings
    assert res.cycles == min(h["latency"] for h in res.extra["hardware_tried"])


@pytest.mark.parametrize("fn", [bayes_search, bayes_flat_search])
def test_bo_rejects_bad_objective(fn) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=r"^objective must be one of edp, latency, energy, got "):
        fn(NET, 0, num_hw=1, initial_hw=1, objective="area")


@pytest.mark.parametrize("hw", [Hardware(16, 64.0, 32.0), Hardware(4, 8.0, 4.0)])
def test_written_out_gp_is_scikit_learn_bit_for_bit(hw: Hardware) -> None:
    """gp_lcb / standard_scale replace StandardScaler + GaussianProcessRegressor for speed only:
    the same bits on real mapping features (a constant feature included) and on a constant y."""
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    for layer in NET:
        train = encode_mappings(*sample_mappings(layer, hw, 40, rng))
        test = encode_mappings(*sample_mappings(layer, hw, 200, rng))
        scaler = StandardScaler().fit(train)
        mean, scale = bayes_module.standard_scale(train)
        got_train, got_test = (train - mean) / scale, (test - mean) / scale
        assert np.array_equal(got_train, scaler.transform(train))
        assert np.array_equal(got_test, scaler.transform(test))
        for y in (rng.normal(10.0, 3.0, len(train)), np.full(len(train), 2.5)):
            mean, std = bayes_module._layer_gp().fit(got_train, y).predict(got_test,
                                                                           return_std=True)
            ref = mean - bayes_module.LCB_KAPPA * std
            assert np.array_equal(bayes_module.gp_lcb(got_train, y, got_test), ref)
