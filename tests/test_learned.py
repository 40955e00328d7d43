"""Learned RTL latency predictors: interface, gradients, save/load, determinism, splits.

Unit tests train on a tiny synthetic frame in the published column format (seconds); tests
marked ``data`` use the FireSim training file and skip when it is not available.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dosa import data
from dosa.hardware import Hardware
from dosa.learned import (
    FEATURE_NAMES,
    KINDS,
    LatencyPredictor,
    cross_validate,
    frame_tensors,
    layer_keys,
    load_predictor,
    make_predictor,
    predict_frame,
    prediction_metrics,
    save_predictor,
    split_indices,
    train_predictor,
)
from dosa.mapping import DEFAULT_ORDER, DRAM_ORDERS, order_to_rank, round_mapping
from dosa.model import evaluate
from dosa.workload import Layer

FAST = {"max_steps": 40, "eval_every": 10, "patience": 20, "n_members": 2, "hidden": (16,)}
LAYERS = [
    Layer("a", R=3, S=3, P=8, Q=8, C=16, K=32),
    Layer("b", P=16, Q=16, C=32, K=16),
    Layer("c", R=3, S=3, P=4, Q=4, C=64, K=64, Wstride=2, Hstride=2),
    Layer("d", P=32, C=64, K=128),
    Layer("e", P=7, Q=7, C=128, K=32),
    Layer("f", R=5, S=5, P=16, Q=16, C=8, K=16),
]


def _synthetic_frame(per_layer: int = 8, seed: int = 0) -> pd.DataFrame:
    """Rows in the published format; 'RTL' = model cycles x a smooth mapping-dependent factor."""
    rng = np.random.default_rng(seed)
    hw = Hardware(128, 1024.0, 1024.0)
    rows = []
    for layer in LAYERS:
        for _ in range(per_layer):
            t = np.exp(rng.uniform(0, 2.5, size=(4, 7)))
            s = np.exp(rng.uniform(0, 2.5, size=(4, 7)))
            orders = (DEFAULT_ORDER, "PQNCRSK", DEFAULT_ORDER,
                      list(DRAM_ORDERS.values())[rng.integers(3)])
            rank = np.array([order_to_rank(o) for o in orders])
            m = round_mapping(t, s, rank, layer, max_spatial=16)
            rows.append({**{f"prob.{d}": v for d, v in zip("RSPQCKN", layer.dims, strict=True)},
                         "prob.Wstride": layer.Wstride, "prob.Hstride": layer.Hstride,
                         "mapping.mapping": m.to_string(), **hw.to_arch_columns()})
    frame = pd.DataFrame(rows)
    rt = frame_tensors(frame, pe_dim=16)
    cyc = rt.evaluate().cycles.numpy()
    iters = rt.temporal[:, 3].prod(dim=1).numpy()
    frame["target.gemmini_cycle"] = cyc * 1.5 + 40.0 * iters + 500.0
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _synthetic_frame()


@pytest.fixture(scope="module")
def trained(frame: pd.DataFrame) -> dict[str, LatencyPredictor]:
    return {k: train_predictor(k, frame, split="grouped", seed=0, **FAST)[0] for k in KINDS}


def _batch(frame: pd.DataFrame, grad: bool = False) -> tuple[torch.Tensor, ...]:
    rt = frame_tensors(frame.iloc[:10], pe_dim=16)
    args = [a.clone() for a in rt.args()]
    if grad:
        for i in (2, 3, 5):  # temporal, spatial, hw
            args[i].requires_grad_(True)
    return tuple(args)


@pytest.mark.parametrize("kind", KINDS)
def test_call_shape_dtype_and_analytical_input(trained, frame, kind):
    pred = trained[kind]
    args = _batch(frame)
    ana = evaluate(*args)
    out = pred(*args, ana)
    assert out.shape == (10,) and out.dtype == torch.float64
    assert torch.all(torch.isfinite(out)) and torch.all(out > 0)
    assert pred.name == kind and not pred.training
    # ``analytical`` may be omitted: computed from the same batch
    assert torch.allclose(pred(*args), out)
    if kind == "analytical":
        assert torch.equal(out, ana.cycles)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_factors_and_hardware(trained, frame, kind):
    args = _batch(frame, grad=True)
    ana = evaluate(*args)
    out = trained[kind](*args, ana)
    torch.log(out).sum().backward()
    dims, strides, temporal, spatial, rank, hw = args
    for name, t in (("temporal", temporal), ("spatial", spatial), ("hw", hw)):
        assert t.grad is not None, name
        assert torch.all(torch.isfinite(t.grad)), name
    assert temporal.grad.abs().sum() > 0
    assert spatial.grad.abs().sum() > 0
    assert all(p.grad is None for p in trained[kind].parameters())  # frozen weights


def test_fractional_factors_stay_finite(trained, frame):
    args = list(_batch(frame))
    args[2] = args[2] * 0.37 + 0.2  # fractional, some < 1 (as during gradient descent)
    for kind in KINDS:
        out = trained[kind](*args, evaluate(*args))
        assert torch.all(torch.isfinite(out)) and torch.all(out > 0)


def test_save_load_round_trip(tmp_path, trained, frame):
    for kind in KINDS:
        path = save_predictor(trained[kind], tmp_path / "models" / f"{kind}.pt")
        loaded = load_predictor(path)
        assert loaded.kind == kind and loaded.feature_names == trained[kind].feature_names
        a = predict_frame(trained[kind], frame, pe_dim=16)
        b = predict_frame(loaded, frame, pe_dim=16)
        assert np.array_equal(a, b)
    assert not list((tmp_path / "models").glob(".*tmp"))  # atomic write leaves no temp file


def test_load_rejects_foreign_file(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"something": 1}, path)
    with pytest.raises(ValueError, match="not a dosa latency predictor"):
        load_predictor(path)


def test_training_is_deterministic(frame):
    a, ma = train_predictor("both", frame, seed=3, **FAST)
    b, mb = train_predictor("both", frame, seed=3, **FAST)
    c, _ = train_predictor("both", frame, seed=4, **FAST)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert ma["test"] == mb["test"]
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items()
               if v.dtype.is_floating_point and v.ndim > 1)


def test_grouped_split_keeps_layers_disjoint(frame):
    keys = layer_keys(frame)
    for seed in range(5):
        train, test = split_indices(frame, "grouped", seed=seed)
        assert len(test) > 0 and len(train) > 0
        assert not set(keys[train]) & set(keys[test])
        assert len(np.union1d(train, test)) == len(frame)
    train, test = split_indices(frame, "random", seed=0)
    assert len(test) == round(0.08 * len(frame)) and not set(train) & set(test)
    train, test = split_indices(frame, "none")
    assert len(train) == len(frame) and len(test) == 0


def test_cross_validation_is_out_of_fold_and_grouped(frame):
    pred, metrics = cross_validate("dnn", frame, folds=3, seed=0, **FAST)
    assert pred.shape == (len(frame),) and np.all(np.isfinite(pred)) and np.all(pred > 0)
    fold, keys = np.array(metrics["fold"]), layer_keys(frame)
    for k in np.unique(keys):
        assert len(set(fold[keys == k])) == 1
    assert -1 <= metrics["spearman"] <= 1


def test_learned_beats_nothing_on_synthetic(frame):
    _, m = train_predictor("both", frame, split="random", seed=0,
                           **{**FAST, "max_steps": 300, "patience": 100})
    assert m["train"]["mape"] < 25  # the residual is learnable


def test_bad_inputs_name_field_and_allowed_values(frame):
    with pytest.raises(ValueError, match="kind must be one of"):
        train_predictor("lstm", frame)
    with pytest.raises(ValueError, match="split must be one of"):
        train_predictor("dnn", frame, split="stratified")
    with pytest.raises(ValueError, match="unknown training option"):
        train_predictor("dnn", frame, epochs=3)
    with pytest.raises(ValueError, match="feature_set must be one of"):
        train_predictor("dnn", frame, feature_set="everything")
    with pytest.raises(ValueError, match="missing column"):
        frame_tensors(frame.drop(columns=["mapping.mapping"]))
    with pytest.raises(ValueError, match="target.gemmini_cycle"):
        train_predictor("dnn", frame.drop(columns=["target.gemmini_cycle"]))
    with pytest.raises(ValueError, match="positive and finite"):
        prediction_metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]))


def test_make_predictor_analytical_needs_no_training(frame):
    pred = make_predictor("analytical")
    args = _batch(frame)
    assert torch.equal(pred(*args), evaluate(*args).cycles)
    assert len(FEATURE_NAMES) == len(set(FEATURE_NAMES))


@pytest.mark.data
def test_firesim_both_beats_analytical_on_held_out_layers():
    if not data.available("firesim_training"):
        pytest.skip("FireSim training data not available (set DOSA_DATA_DIR to shared/dosa-data)")
    frame = data.load_firesim_training()
    _, ana = train_predictor("analytical", frame, split="grouped", seed=0)
    _, both = train_predictor("both", frame, split="grouped", seed=0, n_members=1,
                              max_steps=400)
    assert both["n_test"] > 50 and both["test"]["spearman"] > ana["test"]["spearman"]
