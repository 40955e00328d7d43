"""Gemmini-RTL latency predictors: analytical, learned (``dnn``), analytical + learned (``both``).

The analytical roofline of :mod:`dosa.model` ranks FireSim-measured RTL cycles well across
layers (Spearman ~0.86 on the training file) but is off by 2-3x on average and ranks mappings of
one layer poorly (fixed overheads, DMA and pipeline effects it does not model). DOSA (spec §8.1)
therefore learns the RTL latency from the 1,567 FireSim measurements. All three kinds share one
interface, :class:`LatencyPredictor`, called like the model::

    cycles = predictor(dims, strides, temporal, spatial, rank, hw, analytical)   # [B] float64

where ``analytical`` is :func:`dosa.model.evaluate` of the same batch. The call is differentiable
in ``temporal``, ``spatial`` and ``hw`` so the DOSA search can descend through a frozen
predictor (``predictor.eval()``, weights with ``requires_grad=False``).

Kinds and their functional forms (our choices, documented here):

* ``analytical``: ``analytical.cycles``; nothing is learned.
* ``dnn``: ``log rtl = mu + sigma * mean_m MLP_m(x)``. Features x only describe the layer, the
  mapping and the hardware (no analytical quantities), as in the paper's "DNN-only" model.
* ``both``: ``log rtl = log analytical.cycles + mu + sigma * mean_m MLP_m(x)``: a multiplicative
  residual on the roofline (the paper adds a softplus residual to the normalised roofline; the
  log form keeps the correction relative and lets it also *reduce* the latency, which the data
  needs on ~19 % of rows where RTL beats Timeloop). Its features add log2 of the roofline
  bounds (compute and each bandwidth-limited level, :data:`dosa.model.BOUND_NAMES`), so the
  MLP can see which resource the analytical model thinks is the bottleneck.

Features (:data:`FEATURE_NAMES`, default set ``raw``) are log2 of the layer dims and strides,
of every legal mapping factor (L0 P/Q/N, all L1-L3 temporal factors, spatial C at L1 and K at
L2), of the three hardware parameters, plus the DRAM loop-order keys (no gradient) and, for
``both`` only, log2 of the analytical cycles and of each roofline bound relative to them.
Features that are constant on the training rows are dropped (their learned effect would be
arbitrary extrapolation); the rest are standardised with the training mean/std stored with the
weights. Alternative sets (``compact``, ``intensive``: a few physical summaries such as loop
iterations per level, tile sizes, cycles per DRAM tile) rank held-out layers worse (grouped-CV
Spearman ~0.92 vs ~0.955) but are less biased on the DOSA-searched points, which lie in a
sparse corner of the training data (big tiles, few DRAM iterations); see notebook 04.

Hardware seen by the analytical part. The training file describes every row with a dummy
128x128 / 1024 KB / 1024 KB Timeloop architecture "so any mapping fits", but FireSim ran a
16x16 Gemmini (dosa-data §5/§6). The roofline depends on the hardware only through the
scratchpad bandwidth (2 pe_dim words/cycle), so we evaluate the training rows at pe_dim 16 (the
array that produced the cycles, and the one the FireSim-mode search fixes) with the file's
buffer sizes. At pe_dim 16 our shared-bandwidth model equals the dummy arch's read+write
bandwidths (scratchpad 16+16, accumulator 1+1 per column) and ranks RTL better (Spearman 0.863
vs 0.846 at 128). Since all training rows share one hardware, the hardware features are
constant there and dropped: the learned part cannot (and does not pretend to) model buffer
sizes; gradients w.r.t. ``hw`` reach the predictor only through the analytical part.

Training (:func:`train_predictor`) is a seeded, single-threaded, full-batch Adam fit of a small
ensemble of MLPs on log RTL cycles (L1 loss on the standardised log target, robust to the noisy
RTL measurements). Each member holds out a different group of training layers for early
stopping (grouped K-fold bagging, K = max(5, members)), so every training layer trains most
members and no layer both trains and stops the same member. Evaluation: grouped by layer
(every layer wholly in train or test; the main evaluation, as a single 80/20 split or K-fold
:func:`cross_validate`) and the paper's random 92/8 split.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from dosa.evaluation import MAPPING_COLUMN, PROBLEM_COLUMNS, parse_mapping_column
from dosa.hardware import hardware_from_arch_columns
from dosa.io import atomic_path
from dosa.mapping import stack_mappings
from dosa.model import BOUND_NAMES, ModelOutput, evaluate
from dosa.workload import DIMS

log = logging.getLogger(__name__)

__all__ = [
    "FEATURE_NAMES",
    "FIRESIM_PE_DIM",
    "KINDS",
    "SPLITS",
    "LatencyPredictor",
    "RowTensors",
    "TrainConfig",
    "features",
    "frame_tensors",
    "layer_keys",
    "load_predictor",
    "make_predictor",
    "predict_frame",
    "prediction_metrics",
    "save_predictor",
    "split_indices",
    "train_predictor",
]

KINDS: tuple[str, ...] = ("analytical", "dnn", "both")
SPLITS: tuple[str, ...] = ("grouped", "random", "none")
#: The PE array side of the FireSim Gemmini that produced the RTL cycles.
FIRESIM_PE_DIM = 16
RTL_TARGET = "target.gemmini_cycle"
FORMAT_VERSION = 1
_LOG_CLAMP = (-30.0, 60.0)  # exp() range of predicted log cycles: keeps the search finite
_EPS = 1e-6

R, S, P, Q, C, K, N = range(7)
_L0_LEGAL = (P, Q, N)


_BOUND_NAMES = BOUND_NAMES
_RAW_FEATURES: tuple[str, ...] = (
    *(f"log2.dim.{d}" for d in DIMS), "log2.Wstride", "log2.Hstride",
    *(f"log2.t0.{DIMS[d]}" for d in _L0_LEGAL),
    *(f"log2.t{j}.{d}" for j in (1, 2, 3) for d in DIMS),
    "log2.s1.C", "log2.s2.K", "log2.hw.pe_dim", "log2.hw.sp_kb", "log2.hw.acc_kb",
    *(f"rank3.{d}" for d in DIMS))
_DERIVED_FEATURES: tuple[str, ...] = (
    "log2.macs", "log2.filter", "log2.iters.dram", "log2.iters.acc", "log2.iters.sp",
    "log2.tile.acc_words", "log2.tile.sp_words", "log2.macs_per_tile")
_ANALYTICAL_FEATURES: tuple[str, ...] = ("log2.cycles", "log2.cycles_per_tile",
                                         *(f"log2.bound_rel.{b}" for b in _BOUND_NAMES))
#: Every feature the predictors can use, in column order of :func:`features`.
FEATURE_NAMES: tuple[str, ...] = _RAW_FEATURES + _DERIVED_FEATURES + _ANALYTICAL_FEATURES
#: Named feature sets (before dropping constant columns and, for ``dnn``, analytical ones).
#: ``compact`` (default) summarises the mapping by a few physical quantities (iteration
#: counts, tile sizes, array utilisation); ``raw`` gives every factor and the DRAM order.
FEATURE_SETS: dict[str, tuple[str, ...]] = {
    "compact": ("log2.macs", "log2.filter", "log2.Wstride", "log2.Hstride", "log2.iters.dram",
                "log2.iters.acc", "log2.iters.sp", "log2.tile.acc_words", "log2.tile.sp_words",
                "log2.s1.C", "log2.s2.K", "log2.hw.pe_dim", "log2.hw.sp_kb", "log2.hw.acc_kb",
                *_ANALYTICAL_FEATURES),
    "intensive": ("log2.filter", "log2.Wstride", "log2.Hstride", "log2.macs_per_tile",
                  "log2.iters.acc", "log2.iters.sp", "log2.tile.acc_words", "log2.tile.sp_words",
                  "log2.s1.C", "log2.s2.K", "log2.hw.pe_dim", "log2.hw.sp_kb", "log2.hw.acc_kb",
                  "log2.cycles_per_tile", *(f"log2.bound_rel.{b}" for b in _BOUND_NAMES)),
    "raw": _RAW_FEATURES + _ANALYTICAL_FEATURES,
    "all": FEATURE_NAMES,
}


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"predictor kind must be one of {KINDS}, got {kind!r}")
    return kind


def _log2(x: torch.Tensor) -> torch.Tensor:
    return torch.log2(torch.clamp(x, min=_EPS))


def features(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
             spatial: torch.Tensor, rank: torch.Tensor, hw: torch.Tensor,
             analytical: ModelOutput) -> torch.Tensor:
    """All features [B, len(FEATURE_NAMES)] float64, differentiable in factors and hw."""
    t = torch.clamp(temporal, min=_EPS)
    log_t = torch.log2(t)
    cols = [_log2(dims), _log2(strides), log_t[:, 0, list(_L0_LEGAL)],
            log_t[:, 1], log_t[:, 2], log_t[:, 3],
            _log2(spatial[:, 1, C:C + 1]), _log2(spatial[:, 2, K:K + 1]), _log2(hw),
            rank[:, 3].to(dims.dtype),
            # derived: layer size, filter window, loop-iteration counts per level, tile sizes
            _log2(dims).sum(dim=1, keepdim=True),
            _log2(dims[:, R:S + 1]).sum(dim=1, keepdim=True),
            log_t[:, 3].sum(dim=1, keepdim=True),
            log_t[:, :2].sum(dim=(1, 2)).unsqueeze(1),
            log_t[:, 2].sum(dim=1, keepdim=True),
            _log2(analytical.acc_words).unsqueeze(1),
            _log2(analytical.sp_words).unsqueeze(1),
            _log2(dims).sum(dim=1, keepdim=True) - log_t[:, 3].sum(dim=1, keepdim=True)]
    log_cycles = _log2(analytical.cycles).unsqueeze(1)
    cols += [log_cycles, log_cycles - log_t[:, 3].sum(dim=1, keepdim=True),
             _log2(analytical.bounds) - log_cycles]
    return torch.cat(cols, dim=1)


# ----------------------------------------------------------------------------------------------
# Published rows -> model tensors
# ----------------------------------------------------------------------------------------------
@dataclass
class RowTensors:
    """Model inputs of a batch of published rows (see :mod:`dosa.model` for shapes)."""

    dims: torch.Tensor
    strides: torch.Tensor
    temporal: torch.Tensor
    spatial: torch.Tensor
    rank: torch.Tensor
    hw: torch.Tensor

    def __len__(self) -> int:
        return int(self.dims.shape[0])

    def args(self) -> tuple[torch.Tensor, ...]:
        return (self.dims, self.strides, self.temporal, self.spatial, self.rank, self.hw)

    def evaluate(self) -> ModelOutput:
        """The analytical model of these rows (no gradient)."""
        with torch.no_grad():
            return evaluate(*self.args())

    def subset(self, index: np.ndarray | Sequence[int]) -> RowTensors:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        return RowTensors(*(t[idx] for t in self.args()))


def frame_tensors(frame: pd.DataFrame, *, pe_dim: int | None = None,
                  source: str = "frame") -> RowTensors:
    """Turn published rows into model tensors, each row with its own hardware.

    ``pe_dim`` overrides the array side (the training file's dummy 128 -> FireSim's 16).
    """
    from dosa.hardware import ARCH_COLUMNS

    missing = [c for c in (*PROBLEM_COLUMNS, MAPPING_COLUMN, *ARCH_COLUMNS)
               if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}")
    probs = frame[list(PROBLEM_COLUMNS)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(probs) & (probs >= 1)):
        raise ValueError(f"{source}: prob.* columns must be positive integers")
    hw = hardware_from_arch_columns(frame)
    if pe_dim is not None:
        hw[:, 0] = float(pe_dim)
    mappings = parse_mapping_column(frame[MAPPING_COLUMN].tolist())
    t, s, r = stack_mappings(mappings)
    rows = RowTensors(torch.from_numpy(probs[:, :7].copy()), torch.from_numpy(probs[:, 7:].copy()),
                      t, s, r, torch.from_numpy(hw))
    bad = np.nonzero((t * s).prod(dim=1).numpy() != probs[:, :7])[0]
    if bad.size:
        raise ValueError(f"{source}: row {int(bad[0])}: mapping factors do not multiply to the "
                         f"layer dims ({mappings[int(bad[0])]})")
    return rows


def layer_keys(frame: pd.DataFrame) -> np.ndarray:
    """Layer identity per row, ``R_S_P_Q_C_K_N_Wstride_Hstride`` (as :meth:`Layer.key`)."""
    missing = [c for c in PROBLEM_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing problem column(s) {missing}")
    vals = frame[list(PROBLEM_COLUMNS)].to_numpy(dtype=np.int64)
    return np.array(["_".join(map(str, row)) for row in vals])


def rtl_cycles(frame: pd.DataFrame, column: str = RTL_TARGET) -> np.ndarray:
    """FireSim RTL cycles of each row, validated positive and finite."""
    if column not in frame.columns:
        raise ValueError(f"missing RTL target column {column!r}")
    y = frame[column].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(y) & (y > 0)):
        raise ValueError(f"column {column!r} must hold positive finite cycle counts")
    return y


# ----------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------
def split_indices(frame: pd.DataFrame, split: str, *, test_fraction: float | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices (positions) of ``frame`` for a split kind.

    ``grouped``: whole layers go to test until ``test_fraction`` (default 0.2) of the layers;
    ``random``: the paper's shuffled row split (default 8 % test); ``none``: everything trains.
    """
    n = len(frame)
    rng = np.random.default_rng(seed)
    if split == "none":
        return np.arange(n), np.arange(0)
    if split == "random":
        frac = 0.08 if test_fraction is None else test_fraction
        _check_fraction(frac)
        perm = rng.permutation(n)
        n_test = max(1, int(round(frac * n)))
        return np.sort(perm[n_test:]), np.sort(perm[:n_test])
    if split == "grouped":
        frac = 0.2 if test_fraction is None else test_fraction
        _check_fraction(frac)
        keys = layer_keys(frame)
        uniq = np.unique(keys)
        if len(uniq) < 2:
            raise ValueError("a grouped split needs at least two distinct layers")
        perm = rng.permutation(len(uniq))
        n_test = min(len(uniq) - 1, max(1, int(round(frac * len(uniq)))))
        test_layers = set(uniq[perm[:n_test]].tolist())
        is_test = np.array([k in test_layers for k in keys])
        return np.nonzero(~is_test)[0], np.nonzero(is_test)[0]
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _check_fraction(frac: float) -> None:
    if not 0 < frac < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {frac}")


def _member_folds(keys: np.ndarray, n_members: int, seed: int,
                  grouped: bool) -> list[np.ndarray]:
    """Early-stopping validation mask per ensemble member (grouped or random K-fold)."""
    rng = np.random.default_rng(seed + 7919)
    folds = max(5, n_members)  # each member stops on 1/folds of the training layers
    if grouped:
        uniq = np.unique(keys)
        fold_of_layer = dict(zip(uniq[rng.permutation(len(uniq))],
                                 np.arange(len(uniq)) % folds, strict=True))
        fold = np.array([fold_of_layer[k] for k in keys])
    else:
        fold = rng.permutation(len(keys)) % folds
    return [fold == m for m in range(n_members)]


# ----------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------
def _mlp(n_in: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    prev = n_in
    for h in hidden:
        layers += [nn.Linear(prev, h), nn.GELU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = h
    layers.append(nn.Linear(prev, 1))
    return nn.Sequential(*layers)


class LatencyPredictor(nn.Module):
    """RTL-cycle predictor of one kind; call it like the model, get [B] float64 cycles.

    The MLP runs in float32 internally; inputs and the output are float64. Buffers hold the
    feature selection and normalisation so that ``state_dict`` is the whole learned state.
    """

    def __init__(self, kind: str, *, keep: Sequence[int] = (), hidden: Sequence[int] = (64, 64),
                 dropout: float = 0.0, n_members: int = 1) -> None:
        super().__init__()
        self.kind = _check_kind(kind)
        self.hidden = tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        keep_t = torch.as_tensor(list(keep), dtype=torch.long)
        self.register_buffer("keep", keep_t)
        n_in = int(keep_t.numel())
        self.register_buffer("x_mean", torch.zeros(n_in, dtype=torch.float64))
        self.register_buffer("x_std", torch.ones(n_in, dtype=torch.float64))
        self.register_buffer("y_mean", torch.zeros((), dtype=torch.float64))
        self.register_buffer("y_std", torch.ones((), dtype=torch.float64))
        if kind == "analytical":
            self.members = nn.ModuleList()
        else:
            if n_in == 0:
                raise ValueError(f"a {kind!r} predictor needs at least one feature")
            self.members = nn.ModuleList(_mlp(n_in, self.hidden, self.dropout)
                                         for _ in range(n_members))

    @property
    def name(self) -> str:
        return self.kind

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(FEATURE_NAMES[i] for i in self.keep.tolist())

    def extra_repr(self) -> str:
        return (f"kind={self.kind!r}, features={int(self.keep.numel())}, hidden={self.hidden}, "
                f"members={len(self.members)}")

    def _base(self, analytical: ModelOutput) -> torch.Tensor:
        if self.kind == "both":
            return torch.log(torch.clamp(analytical.cycles, min=_EPS))
        return torch.zeros_like(analytical.cycles)

    def normalized_features(self, dims: torch.Tensor, strides: torch.Tensor,
                            temporal: torch.Tensor, spatial: torch.Tensor, rank: torch.Tensor,
                            hw: torch.Tensor, analytical: ModelOutput) -> torch.Tensor:
        """Selected, standardised features [B, F] (float64)."""
        x = features(dims, strides, temporal, spatial, rank, hw, analytical)
        return (x.index_select(1, self.keep) - self.x_mean) / self.x_std

    def residual(self, xn: torch.Tensor, member: int | None = None) -> torch.Tensor:
        """Standardised log residual [B] (ensemble mean, or one member's) from features.

        Runs in the members' dtype: float32 while training, float64 once frozen.
        """
        x = xn.to(next(self.members.parameters()).dtype)
        if member is not None:
            return self.members[member](x).squeeze(-1).to(torch.float64)
        outs = torch.stack([m(x).squeeze(-1) for m in self.members], dim=0)
        return outs.mean(dim=0).to(torch.float64)

    def log_cycles(self, dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
                   spatial: torch.Tensor, rank: torch.Tensor, hw: torch.Tensor,
                   analytical: ModelOutput | None = None) -> torch.Tensor:
        """Natural log of the predicted RTL cycles [B] (float64)."""
        if analytical is None:
            analytical = evaluate(dims, strides, temporal, spatial, rank, hw)
        if self.kind == "analytical":
            return torch.log(torch.clamp(analytical.cycles, min=_EPS))
        xn = self.normalized_features(dims, strides, temporal, spatial, rank, hw, analytical)
        out = self._base(analytical) + self.y_mean + self.y_std * self.residual(xn)
        return torch.clamp(out, *_LOG_CLAMP)

    def forward(self, dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
                spatial: torch.Tensor, rank: torch.Tensor, hw: torch.Tensor,
                analytical: ModelOutput | None = None) -> torch.Tensor:
        """Predicted RTL cycles [B] float64 (``analytical`` = model output of the same batch)."""
        if self.kind == "analytical":
            if analytical is None:
                analytical = evaluate(dims, strides, temporal, spatial, rank, hw)
            return analytical.cycles
        return torch.exp(self.log_cycles(dims, strides, temporal, spatial, rank, hw, analytical))

    def freeze(self) -> LatencyPredictor:
        """Eval mode, no weight gradients and float64 weights: how searches and evaluations
        use a trained predictor. In float64 a prediction does not depend on the batch it is
        computed in (float32 matmuls differ by ~1e-7 with the batch's blocking), so a design
        scored during a batched search and re-scored alone gets the same number."""
        self.members.double()
        self.eval()
        for p in self.parameters():
            p.grad = None
            p.requires_grad_(False)
        return self


def make_predictor(kind: str) -> LatencyPredictor:
    """An untrained predictor; only ``analytical`` is usable without training."""
    return LatencyPredictor(kind).freeze()


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_predictor` (defaults: a few seconds per member)."""

    hidden: tuple[int, ...] = (64, 64)
    dropout: float = 0.1
    n_members: int = 3
    lr: float = 3e-3
    weight_decay: float = 1e-3
    max_steps: int = 2000
    eval_every: int = 20
    patience: int = 300
    test_fraction: float | None = None
    pe_dim: int = FIRESIM_PE_DIM
    feature_set: str = "raw"

    def __post_init__(self) -> None:
        if self.feature_set not in FEATURE_SETS:
            raise ValueError(f"feature_set must be one of {sorted(FEATURE_SETS)}, "
                             f"got {self.feature_set!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """Run with one intra-op thread (reproducible reductions); restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class _Prepared:
    rows: RowTensors
    analytical: ModelOutput
    x: torch.Tensor  # raw features [B, F]
    y: torch.Tensor  # log RTL cycles [B]
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=str))


def _prepare(frame: pd.DataFrame, kind: str, pe_dim: int | None,
             target: str = RTL_TARGET) -> _Prepared:
    rows = frame_tensors(frame, pe_dim=pe_dim)
    ana = rows.evaluate()
    x = features(*rows.args(), ana)
    y = torch.from_numpy(np.log(rtl_cycles(frame, target)))
    return _Prepared(rows, ana, x, y, layer_keys(frame))


def _fit_member(model: LatencyPredictor, member: int, xn: torch.Tensor, yn: torch.Tensor,
                train: np.ndarray, val: np.ndarray, cfg: TrainConfig, seed: int) -> dict[str, Any]:
    """Full-batch Adam with early stopping on ``val`` (L1 on the standardised log target)."""
    torch.manual_seed(seed)
    net = model.members[member]
    for mod in net.modules():
        if isinstance(mod, nn.Linear):
            mod.reset_parameters()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    xt, yt = xn[train].to(torch.float32), yn[train].to(torch.float32)
    xv, yv = xn[val].to(torch.float32), yn[val].to(torch.float32)
    best = (math.inf, 0, copy.deepcopy(net.state_dict()))
    step = 0
    for step in range(1, cfg.max_steps + 1):
        net.train()
        opt.zero_grad()
        loss = (net(xt).squeeze(-1) - yt).abs().mean()
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            net.eval()
            with torch.no_grad():
                vloss = float((net(xv).squeeze(-1) - yv).abs().mean()) if len(val) else float(
                    loss)
            if vloss < best[0] - 1e-6:
                best = (vloss, step, copy.deepcopy(net.state_dict()))
            elif step - best[1] >= cfg.patience:
                break
    net.load_state_dict(best[2])
    net.eval()
    return {"member": member, "best_step": best[1], "steps": step, "val_l1": best[0]}


def _resolve_config(config: TrainConfig | None, overrides: dict[str, Any]) -> TrainConfig:
    """``config`` (or the defaults) with ``overrides`` applied; unknown names are errors."""
    cfg = config or TrainConfig()
    if overrides:
        unknown = sorted(set(overrides) - set(cfg.__dict__))
        if unknown:
            raise ValueError(f"unknown training option(s) {unknown}; "
                             f"allowed: {sorted(cfg.__dict__)}")
        cfg = TrainConfig(**{**cfg.__dict__, **overrides})
    if cfg.n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {cfg.n_members}")
    return cfg


def train_predictor(kind: str, frame: pd.DataFrame, *, split: str = "grouped", seed: int = 0,
                    config: TrainConfig | None = None, target: str = RTL_TARGET,
                    **overrides: Any) -> tuple[LatencyPredictor, dict[str, Any]]:
    """Fit a predictor of ``kind`` on FireSim rows; return it (frozen) and its metrics.

    ``split`` picks the held-out test rows (:func:`split_indices`); metrics hold Spearman, MAPE
    and log errors on train and test rows plus the per-member early-stopping record.
    Deterministic for a seed: seeded init, full-batch (no shuffling), single thread.
    ``overrides`` replace fields of ``config`` (e.g. ``max_steps=50``).
    """
    _check_kind(kind)
    cfg = _resolve_config(config, overrides)
    train_idx, test_idx = split_indices(frame, split, test_fraction=cfg.test_fraction, seed=seed)
    with _single_thread():
        prep = _prepare(frame, kind, cfg.pe_dim, target)
        base = (torch.log(torch.clamp(prep.analytical.cycles, min=_EPS)) if kind == "both"
                else torch.zeros_like(prep.y))
        metrics: dict[str, Any] = {"kind": kind, "split": split, "seed": seed,
                                   "n_train": int(len(train_idx)), "n_test": int(len(test_idx)),
                                   "config": cfg.to_dict()}
        if kind == "analytical":
            model = LatencyPredictor("analytical")
        else:
            x_tr = prep.x[train_idx]
            std = x_tr.std(dim=0)
            wanted = [n for n in FEATURE_SETS[cfg.feature_set]
                      if kind == "both" or n not in _ANALYTICAL_FEATURES]
            # constant columns (e.g. the single training hardware) carry no information
            keep = torch.tensor([FEATURE_NAMES.index(n) for n in wanted
                                 if std[FEATURE_NAMES.index(n)] > 1e-6], dtype=torch.long)
            metrics["features"] = [FEATURE_NAMES[i] for i in keep.tolist()]
            model = LatencyPredictor(kind, keep=keep.tolist(), hidden=cfg.hidden,
                                     dropout=cfg.dropout, n_members=cfg.n_members)
            model.x_mean.copy_(x_tr[:, keep].mean(dim=0))
            model.x_std.copy_(std[keep])
            resid = (prep.y - base)[train_idx]
            model.y_mean.copy_(resid.mean())
            model.y_std.copy_(torch.clamp(resid.std(), min=1e-3))
            xn = (prep.x.index_select(1, model.keep) - model.x_mean) / model.x_std
            yn = (prep.y - base - model.y_mean) / model.y_std
            folds = _member_folds(prep.keys[train_idx], cfg.n_members, seed,
                                  grouped=split != "random")
            records = []
            for m, val_mask in enumerate(folds):
                tr_m, va_m = train_idx[~val_mask], train_idx[val_mask]
                records.append(_fit_member(model, m, xn, yn, tr_m, va_m, cfg,
                                           seed * 1000 + m))
            metrics["members"] = records
            log.info("trained %s (%s split, seed %d): %s", kind, split, seed,
                     [(r["best_step"], round(r["val_l1"], 4)) for r in records])
        model.freeze()
        with torch.no_grad():
            pred = model(*prep.rows.args(), prep.analytical).numpy()
    y = np.exp(prep.y.numpy())
    metrics["train"] = prediction_metrics(pred[train_idx], y[train_idx])
    if len(test_idx):
        metrics["test"] = prediction_metrics(pred[test_idx], y[test_idx])
    metrics["train_index"] = train_idx.tolist()
    metrics["test_index"] = test_idx.tolist()
    return model, metrics


def cross_validate(kind: str, frame: pd.DataFrame, *, folds: int = 5, grouped: bool = True,
                   seed: int = 0, config: TrainConfig | None = None, target: str = RTL_TARGET,
                   **overrides: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Out-of-fold predictions for every row: K-fold CV, folds grouped by layer by default.

    Each row is predicted by a model that never saw its layer (``grouped``) or the row itself;
    returns the predictions [n] and metrics over all rows (plus per-fold metrics).
    """
    _check_kind(kind)
    cfg = _resolve_config(config, overrides)
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    keys = layer_keys(frame)
    rng = np.random.default_rng(seed + 104729)
    if grouped:
        uniq = np.unique(keys)
        if len(uniq) < folds:
            raise ValueError(f"{folds} grouped folds need >= {folds} layers, got {len(uniq)}")
        fold_of = dict(zip(uniq[rng.permutation(len(uniq))], np.arange(len(uniq)) % folds,
                           strict=True))
        fold = np.array([fold_of[k] for k in keys])
    else:
        fold = rng.permutation(len(frame)) % folds
    pred = np.full(len(frame), np.nan)
    per_fold = []
    for f in range(folds):
        test = np.nonzero(fold == f)[0]
        train = np.nonzero(fold != f)[0]
        model, _ = train_predictor(kind, frame.iloc[train], split="none", seed=seed + f,
                                   config=cfg, target=target)
        pred[test] = predict_frame(model, frame.iloc[test], pe_dim=cfg.pe_dim)
        if len(test) >= 2:
            per_fold.append(prediction_metrics(pred[test], rtl_cycles(frame.iloc[test], target)))
    metrics = prediction_metrics(pred, rtl_cycles(frame, target))
    metrics.update({"kind": kind, "folds": folds, "grouped": grouped, "seed": seed,
                    "per_fold": per_fold, "fold": fold.tolist()})
    return pred, metrics


def predict_frame(predictor: LatencyPredictor, frame: pd.DataFrame, *,
                  pe_dim: int | None = None) -> np.ndarray:
    """Predicted RTL cycles of published rows (float64 numpy), each row at its own hardware."""
    rows = frame_tensors(frame, pe_dim=pe_dim)
    with torch.no_grad():
        return predictor(*rows.args(), rows.evaluate()).numpy()


def prediction_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Spearman rho, MAPE (%), mean |log ratio| and geomean(pred/true) of a prediction."""
    from scipy.stats import spearmanr

    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 1 or len(pred) < 2:
        raise ValueError(f"need two equal 1-D arrays of >= 2 values, got {pred.shape}, "
                         f"{true.shape}")
    if not (np.all(np.isfinite(pred)) and np.all(pred > 0)):
        raise ValueError("predictions must be positive and finite")
    lr = np.log(pred / true)
    rho = float(spearmanr(pred, true).statistic)
    return {"n": int(len(pred)), "spearman": rho if math.isfinite(rho) else 0.0,
            "mape": float(np.mean(np.abs(pred - true) / true) * 100),
            "mean_abs_log": float(np.mean(np.abs(lr))),
            "geomean_ratio": float(np.exp(np.mean(lr)))}


# ----------------------------------------------------------------------------------------------
# Save / load
# ----------------------------------------------------------------------------------------------
BUILTIN_PREDICTORS = ("dnn", "both")
"""Predictors trained by notebook 04, resolved in ``<artifacts>/models/<name>.pt``."""


def predictor_path(spec: str) -> Path:
    """The file of a predictor spec: a built-in name (notebook 04's model in the artifacts
    folder, found independently of the current folder) or the path of a saved predictor."""
    from dosa.claims import artifacts_dir

    path = artifacts_dir() / "models" / f"{spec}.pt" if spec in BUILTIN_PREDICTORS \
        else Path(spec).expanduser()
    if not path.is_file():
        raise ValueError(f"predictor {spec!r}: no trained model at {path}; train it with "
                         "notebook 04 (make nb-04), or pass 'analytical', one of "
                         f"{list(BUILTIN_PREDICTORS)} or the path of a saved predictor file")
    return path


def file_sha256(path: str | Path) -> str:
    """Content hash of a file (predictor files enter run cache keys by content, not name)."""
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_predictor(predictor: LatencyPredictor, path: str | Path,
                   metadata: dict[str, Any] | None = None) -> Path:
    """Write weights + normalisation + kind + feature spec to one file, atomically."""
    payload = {
        "format_version": FORMAT_VERSION,
        "kind": predictor.kind,
        "feature_names": list(FEATURE_NAMES),
        "kept_features": list(predictor.feature_names),
        "hidden": list(predictor.hidden),
        "dropout": predictor.dropout,
        "n_members": len(predictor.members),
        "state_dict": {k: v.detach().clone() for k, v in predictor.state_dict().items()},
        "metadata": metadata or {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    log.info("saved %s predictor to %s", predictor.kind, path)
    return path


def load_predictor(path: str | Path) -> LatencyPredictor:
    """Load a :func:`save_predictor` file; the predictor comes back frozen (eval mode)."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, ValueError) as err:
        raise ValueError(f"{path}: not a readable dosa latency predictor file "
                         f"({' '.join(str(err).split())[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: not a dosa latency predictor file (format_version "
                         f"{FORMAT_VERSION} expected)")
    if list(payload["feature_names"]) != list(FEATURE_NAMES):
        raise ValueError(f"{path}: saved with a different feature set; retrain the predictor")
    kept = [FEATURE_NAMES.index(f) for f in payload["kept_features"]]
    model = LatencyPredictor(payload["kind"], keep=kept, hidden=payload["hidden"],
                             dropout=payload["dropout"], n_members=payload["n_members"])
    model.load_state_dict(payload["state_dict"])
    return model.freeze()
