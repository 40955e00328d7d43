"""Random-search baseline (dosa.search.random_search)."""

from __future__ import annotations

import numpy as np
import pytest

from dosa.evaluation import evaluate_layers, score_network
from dosa.hardware import Hardware
from dosa.search.random_search import evaluate_samples, pick_best, random_search
from dosa.search.sampler import sample_mappings, to_mappings
from dosa.workload import Layer, Network

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
    assert result.config == {"num_hw": 3, "mappings_per_layer": 40, "pe_dim": None}
    xs = [x for x, _ in result.trajectory]
    assert all(x % 40 == 0 for x in xs) and xs[-1] == result.samples


def test_result_is_exactly_scored_and_valid(result) -> None:
    score = score_network(NET, result.mappings, result.hardware)
    assert result.edp == score.edp
    assert result.trajectory[-1][1] == pytest.approx(result.edp, rel=1e-12)
    ys = [y for _, y in result.trajectory]
    assert ys == sorted(ys, reverse=True)
    tried = [Hardware.from_dict(h) for h in result.extra["hardware_tried"]]
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
