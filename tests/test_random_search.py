"""Random-search baseline (dosa.search.random_search)."""

from __future__ import annotations

import numpy as np
import pytest
from search_checks import check_bounded, tried_hardware

from dosa.evaluation import evaluate_layers, score_network
from dosa.hardware import Hardware
from dosa.search import random_search as random_search_module
from dosa.search.random_search import evaluate_samples, pick_best, random_search
from dosa.search.sampler import sample_mappings, to_mappings
from dosa.workload import Layer, Network, WorkloadError, as_network

NET = Network("tiny", (
    Layer("conv", R=3, S=3, P=14, Q=14, C=32, K=64, Wstride=2, Hstride=2, count=2),
    Layer("pw", P=14, Q=14, C=64, K=128),
    Layer("fc", P=16, C=256, K=100, count=3),
))


@pytest.fixture(scope="module")
def result():
    return random_search(NET, 0, num_hw=3, mappings_per_layer=40)


def test_budget_and_accounting(result) -> None:
    assert result.method == "random"
    assert result.samples == 3 * 40
    # Every (hw, layer) found its 40 mappings here, so every one was evaluated.
    assert result.model_evals == 3 * len(NET) * 40
    assert result.config == {"num_hw": 3, "mappings_per_layer": 40, "pe_dim": None,
                             "max_pe_dim": None, "max_sp_kb": None, "max_acc_kb": None,
                             "max_area_mm2": None, "objective": "edp"}
    assert result.objective == "edp"
    xs = [x for x, _ in result.trajectory]
    assert all(x % 40 == 0 for x in xs) and xs[-1] == result.samples


def test_result_is_exactly_scored_and_valid(result) -> None:
    score = score_network(NET, result.mappings, result.hardware)
    assert result.edp == score.edp
    assert result.trajectory[-1][1] == pytest.approx(result.edp, rel=1e-12)
    ys = [y for _, y in result.trajectory]
    assert ys == sorted(ys, reverse=True)
    tried = tried_hardware(result)
    assert result.hardware in tried and len(tried) == 3


def test_deterministic_in_seed(result) -> None:
    again = random_search(NET, 0, num_hw=3, mappings_per_layer=40)
    assert again.edp == result.edp
    assert again.hardware == result.hardware
    assert [m.to_string() for m in again.mappings] == [m.to_string() for m in result.mappings]
    assert again.trajectory == result.trajectory
    other = random_search(NET, 1, num_hw=3, mappings_per_layer=40)
    assert other.edp != result.edp


def test_fixed_pe_dim() -> None:
    res = random_search(NET, 2, num_hw=2, mappings_per_layer=10, pe_dim=16)
    assert res.hardware.pe_dim == 16
    assert all(h["pe_dim"] == 16 for h in res.extra["hardware_tried"])


def test_pick_best_takes_least_per_layer_edp() -> None:
    hw = Hardware(16, 64.0, 32.0)
    rng = np.random.default_rng(0)
    samples = [sample_mappings(layer, hw, 30, rng) for layer in NET]
    cycles, energy = evaluate_samples(NET, hw, samples)
    assert cycles.shape == energy.shape == (90,)
    best, best_c, best_e = pick_best(samples, cycles, energy)
    for i, layer in enumerate(NET):
        ms = to_mappings(samples[i])
        out = evaluate_layers([layer] * len(ms), ms, hw)
        edp = (out.cycles * out.energy_uj).numpy()
        assert best[i] == ms[int(np.argmin(edp))]
        assert best_c[i] * best_e[i] == pytest.approx(edp.min(), rel=1e-12)


@pytest.mark.parametrize("kwargs", [{"num_hw": 0}, {"mappings_per_layer": -3},
                                    {"num_hw": 1.5}])
def test_rejects_bad_budget(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        random_search(NET, 0, **kwargs)


def test_unbounded_draws_unchanged(result) -> None:
    """Results stored before bounds existed stay reproducible."""
    tried = [h.as_tuple() for h in tried_hardware(result)]
    assert tried == [(64, 8.0, 1.0), (32, 8.0, 1.0), (16, 1.0, 4.0)]  # pinned, seed 0
    for kwargs in ({"max_pe_dim": None, "max_sp_kb": None, "max_acc_kb": None,
                    "max_area_mm2": None},
                   {"max_pe_dim": 128, "max_sp_kb": 2048.0}):  # excludes no grid point
        again = random_search(NET, 0, num_hw=3, mappings_per_layer=40, **kwargs)
        assert again.extra["hardware_tried"] == result.extra["hardware_tried"]
        assert again.edp == result.edp


@pytest.mark.parametrize("bounds", [
    {"max_area_mm2": 1.0},
    {"max_pe_dim": 8, "max_sp_kb": 64.0, "max_acc_kb": 32.0},
    {"pe_dim": 16, "max_area_mm2": 0.5},
    {"max_pe_dim": 2, "max_sp_kb": 1.0, "max_acc_kb": 1.0},  # a single grid point
])
def test_bounds_honoured(bounds: dict) -> None:
    check_bounded(random_search(NET, 0, num_hw=4, mappings_per_layer=20, **bounds), bounds, NET,
                  tried=4)


def test_unbounded_draws_exceed_the_area_bound(result) -> None:
    """Without the bound the same seed picks a bigger design, so the test above has teeth."""
    assert max(h.area_mm2() for h in tried_hardware(result)) > 1.0


def test_no_feasible_hardware_fails_before_search(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("search work started")

    monkeypatch.setattr(random_search_module, "sample_mappings", forbidden)
    with pytest.raises(ValueError, match=r"no hardware .*max_area_mm2=0.001"):
        random_search(NET, 0, num_hw=2, mappings_per_layer=5, max_area_mm2=0.001)
    with pytest.raises(ValueError, match=r"max_sp_kb=0.5"):
        random_search(NET, 0, num_hw=2, mappings_per_layer=5, max_sp_kb=0.5)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"pe_dim": 5000}, r"pe_dim must be an integer in \[1, 1024\]"),
    ({"pe_dim": 16, "max_pe_dim": 8}, "pe_dim=16 exceeds max_pe_dim=8"),
    ({"max_area_mm2": -1.0}, "max_area_mm2 must be a positive number"),
])
def test_rejects_bad_bounds(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        random_search(NET, 0, num_hw=1, mappings_per_layer=5, **kwargs)


def test_string_network_accepted() -> None:
    res = random_search("bert", 0, num_hw=1, mappings_per_layer=5)
    assert res.workload == "bert" and len(res.mappings) == len(as_network("bert"))


def test_as_network() -> None:
    assert as_network(NET) is NET
    assert as_network("BERT").name == "bert"
    with pytest.raises(WorkloadError, match="not a built-in network"):
        as_network("no-such-network")
    with pytest.raises(TypeError, match="network must be a Network"):
        as_network(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_rejects_bad_seed(seed: object) -> None:
    with pytest.raises(ValueError, match=r"^seed must be an integer in \[0, 4294967295\], got "):
        random_search(NET, seed, num_hw=1, mappings_per_layer=5)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def by_objective(result) -> dict:
    """The module's EDP run and the same seed and budget minimising latency and energy."""
    return {"edp": result, **{o: random_search(NET, 0, num_hw=3, mappings_per_layer=40,
                                                objective=o) for o in ("latency", "energy")}}


@pytest.mark.parametrize(("objective", "key"), [("latency", "cycles"), ("energy", "energy_uj")])
def test_objective_is_minimised(by_objective: dict, objective: str, key: str) -> None:
    """Same seed, same draws (hardware and mappings), so the choice by ``objective`` can only
    be as good or better in that quantity than the EDP choice."""
    res, edp = by_objective[objective], by_objective["edp"]
    assert res.objective == objective and res.config["objective"] == objective
    assert tried_hardware(res) == tried_hardware(edp)
    assert getattr(res, key) <= getattr(edp, key)
    assert res.objective_value == getattr(res, key)
    tried = res.extra["hardware_tried"]
    assert res.objective_value == pytest.approx(min(h[objective] for h in tried), rel=1e-12)
    assert res.trajectory[-1][1] == pytest.approx(res.objective_value, rel=1e-12)
    assert res.edp == score_network(NET, res.mappings, res.hardware).edp


def test_objective_in_result_json(by_objective: dict, tmp_path) -> None:
    import json

    from dosa.search.result import SearchResult

    res = by_objective["latency"]
    res.write(tmp_path / "run", NET)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["objective"] == "latency"
    assert SearchResult.read(tmp_path / "run").objective == "latency"


@pytest.mark.parametrize("objective", ["EDP", "throughput", None, 3])
def test_rejects_bad_objective(objective: object) -> None:
    with pytest.raises(ValueError, match=r"^objective must be one of edp, latency, energy, got "):
        random_search(NET, 0, num_hw=1, mappings_per_layer=5,
                      objective=objective)  # type: ignore[arg-type]
