"""Bayesian-optimisation baselines (dosa.search.bayes)."""

from __future__ import annotations

import numpy as np
import pytest

from dosa.evaluation import score_network
from dosa.hardware import Hardware
from dosa.search.bayes import (
    NUM_FEATURES,
    bayes_flat_search,
    bayes_search,
    encode_mappings,
    lcb_top_k,
    point_to_hardware,
)
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


def test_point_to_hardware() -> None:
    assert point_to_hardware([4, 7, 5], None) == Hardware(16, 128.0, 32.0)
    assert point_to_hardware([7, 5], 16) == Hardware(16, 128.0, 32.0)


@pytest.mark.parametrize("kwargs", [{"acq_func": "PI"}, {"num_hw": 0}, {"top_k": 0},
                                    {"pe_dim": 0}])
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
