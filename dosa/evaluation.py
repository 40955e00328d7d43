"""Exact scoring of designs with the model: published CSV rows and whole-network designs.

This is the float64 "evaluation mode" of the one model in :mod:`dosa.model`; search uses the
same functions on real-valued factors.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dosa.hardware import (
    ACC_WORD_BYTES,
    ARCH_COLUMNS,
    AREA_FIT_RANGE,
    SP_WORD_BYTES,
    Hardware,
    area_model,
    hardware_from_arch_columns,
)
from dosa.mapping import (
    L0_TEMPORAL_LEGAL,
    LEVEL_NAMES,
    NUM_DIMS,
    NUM_LEVELS,
    SPATIAL_LEGAL,
    C,
    K,
    Mapping,
    N,
    P,
    Q,
    R,
    S,
    parse_mapping,
    stack_mappings,
)
from dosa.model import ModelOutput, evaluate
from dosa.workload import DIMS, Layer, Network

log = logging.getLogger(__name__)

PROBLEM_COLUMNS = tuple(f"prob.{d}" for d in DIMS) + ("prob.Wstride", "prob.Hstride")
MAPPING_COLUMN = "mapping.mapping"
#: Optional problem columns: the model ignores dilation, so a row may only claim dilation 1.
DILATION_COLUMNS = ("prob.Wdilation", "prob.Hdilation")
MODEL_COLUMNS = ("model.cycle", "model.energy", "model.area")
VALID_COLUMN = "model.valid"
REASON_COLUMN = "model.invalid_reason"


def _require(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; the published format needs "
                         f"{list(columns)}")


def parse_mapping_column(strings: Sequence[str]) -> list[Mapping]:
    """Parse a column of mapping strings, once per distinct string."""
    cache: dict[str, Mapping] = {}
    out = []
    for i, text in enumerate(strings):
        m = cache.get(text)
        if m is None:
            try:
                m = cache[text] = parse_mapping(text)
            except ValueError as err:
                raise ValueError(f"row {i}: {err}") from err
        out.append(m)
    return out


def _shown(value: object) -> str:
    """A cell value as the user wrote it (``0``, not ``np.int64(0)``)."""
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


def _positive_integers(frame: pd.DataFrame, columns: Sequence[str], source: str) -> np.ndarray:
    """Columns as a float64 [n, len(columns)] array; a structural error unless all are ints >= 1."""
    values = frame[list(columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(values) & (values >= 1) & (values == np.round(values))
    if not ok.all():
        i, c = map(int, np.argwhere(~ok)[0])
        raise ValueError(f"{source}: row {i} column {columns[c]} must be a positive integer, "
                         f"got {_shown(frame[columns[c]].iloc[i])}")
    return values


def _parse_distinct(strings: pd.Series, source: str) -> tuple[list[Mapping], np.ndarray]:
    """Distinct mappings (in order of first appearance) and each row's index into them.

    Parsing is the slow part of scoring a large file, so each distinct string is parsed once.
    """
    codes, uniques = pd.factorize(strings, use_na_sentinel=False)
    first_row = np.unique(codes, return_index=True)[1]  # codes number first appearances 0, 1, ..
    mappings = []
    for k, text in enumerate(uniques):
        try:
            mappings.append(parse_mapping(text))
        except ValueError as err:  # the first failing distinct string holds the first bad row
            raise ValueError(f"{source}: row {int(first_row[k])}: {err}") from err
    return mappings, np.asarray(codes, dtype=np.int64)


def tile_words_batch(temporal: np.ndarray, spatial: np.ndarray,
                     strides: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`dosa.mapping.tile_words`: int64 (accumulator words per bank,
    scratchpad words) of [n, 4, 7] factor tables with [n, 2] (Wstride, Hstride).

    Same integer rules as the per-mapping function, so rows are accepted by ``evaluate_frame``
    exactly when ``Mapping.check`` accepts them.
    """
    t = np.array(temporal, dtype=np.int64)
    s = np.asarray(spatial, dtype=np.int64)
    t[:, 1] *= t[:, 0]  # register loops are folded into the accumulator tile
    f1 = t[:, 1] * s[:, 1]
    f2 = f1 * t[:, 2] * s[:, 2]
    acc = f1[:, P] * f1[:, Q] * f1[:, K] * f1[:, N]
    w2 = f2[:, R] * f2[:, S] * f2[:, C] * f2[:, K]
    ws, hs = np.asarray(strides, dtype=np.int64).T
    sp_p, sp_q = s[:, 1, P] * s[:, 2, P], s[:, 1, Q] * s[:, 2, Q]
    pin, qin = f2[:, P] // sp_p, f2[:, Q] // sp_q
    rin, sin = t[:, 1, R] * t[:, 2, R], t[:, 1, S] * t[:, 2, S]
    i2 = f2[:, C] * f2[:, N] * sp_p * sp_q * ((pin - 1) * ws + rin) * ((qin - 1) * hs + sin)
    return acc, w2 + i2


@dataclass(frozen=True)
class _Check:
    """One physical-legality rule: which rows break it, and why (in words) for row i."""

    column: str
    bad: np.ndarray
    explain: Callable[[int], tuple[str, str]]

    def message(self, i: int) -> str:
        reason, allowed = self.explain(i)
        return f"column {self.column}: {reason} (allowed: {allowed})"


_SPATIAL_LEGAL_MASK = np.zeros((NUM_LEVELS, NUM_DIMS), dtype=bool)
for _j, _d in SPATIAL_LEGAL:
    _SPATIAL_LEGAL_MASK[_j, _d] = True
_L0_TEMPORAL_LEGAL_MASK = np.isin(np.arange(NUM_DIMS), L0_TEMPORAL_LEGAL)
_SPATIAL_ALLOWED = "spatial C at L1 (across PE rows) and K at L2 (across PE columns) only"


def _physical_checks(arch: pd.DataFrame, dilation: np.ndarray | None, temporal: np.ndarray,
                     spatial: np.ndarray, codes: np.ndarray, strides: np.ndarray,
                     hw: np.ndarray) -> list[_Check]:
    """The Gemmini-TL legality rules of ``Mapping.check`` plus the hardware columns, per row.

    ``temporal``/``spatial`` hold the distinct mappings, ``codes`` each row's index into them:
    the mapping-only rules run once per distinct mapping, the rest vectorised over rows.
    """
    checks = []
    pe_count = arch["arch.pe"].to_numpy(dtype=np.float64)
    pe_dim = hw[:, 0]

    def pe_reason(i: int) -> tuple[str, str]:
        side = int(np.sqrt(pe_count[i]))
        nearest = sorted({max(side, 1), side + 1})
        return (f"{pe_count[i]:.12g} PEs do not form a square pe_dim x pe_dim array",
                "a square number such as " + " or ".join(f"{p * p} ({p}x{p})" for p in nearest))

    checks.append(_Check("arch.pe", pe_dim * pe_dim != pe_count, pe_reason))
    if dilation is not None:
        for c, col in enumerate(DILATION_COLUMNS):
            checks.append(_Check(
                col, dilation[:, c] != 1,
                lambda i, c=c: (f"dilation {dilation[i, c]:.12g} is not modelled (the model "
                                "ignores dilation)", "1")))
    # Mapping-only rules, once per distinct mapping; row i looks at mapping codes[i].
    bad_spatial = (spatial > 1) & ~_SPATIAL_LEGAL_MASK
    bad_l0 = (temporal[:, 0] > 1) & ~_L0_TEMPORAL_LEGAL_MASK

    def spatial_reason(i: int) -> tuple[str, str]:
        m = codes[i]
        j, d = map(int, np.argwhere(bad_spatial[m])[0])
        return (f"spatial {DIMS[d]}{spatial[m, j, d]}X at L{j} ({LEVEL_NAMES[j]}) is not a "
                "fan-out of the PE array", _SPATIAL_ALLOWED)

    def l0_reason(i: int) -> tuple[str, str]:
        m = codes[i]
        d = int(np.argmax(bad_l0[m]))
        return (f"temporal loop {DIMS[d]}{temporal[m, 0, d]} at L0 (Registers) would refill the "
                "single-entry weight register", "temporal P, Q, N at L0")

    checks.append(_Check(MAPPING_COLUMN, bad_spatial.any(axis=(1, 2))[codes], spatial_reason))
    checks.append(_Check(MAPPING_COLUMN, bad_l0.any(axis=1)[codes], l0_reason))
    # Rules that need the row's hardware or strides.
    for name, j, d in (("C", 1, C), ("K", 2, K)):
        factor = spatial[codes, j, d]
        checks.append(_Check(
            MAPPING_COLUMN, factor > pe_dim,
            lambda i, name=name, j=j, factor=factor: (
                f"spatial {name}{factor[i]}X at L{j} exceeds the {pe_dim[i]:.0f}x{pe_dim[i]:.0f} "
                "PE array", f"spatial {name} <= pe_dim = {pe_dim[i]:.0f}")))
    acc_words, sp_words = tile_words_batch(temporal[codes], spatial[codes], strides)
    acc_cap = hw[:, 2] * 1024 / ACC_WORD_BYTES / np.maximum(pe_dim, 1)  # = acc_words_per_bank
    sp_cap = hw[:, 1] * 1024 / SP_WORD_BYTES  # = Hardware.sp_words
    checks.append(_Check(
        MAPPING_COLUMN, acc_words > acc_cap,
        lambda i: (f"accumulator tile of {acc_words[i]} words overflows one accumulator bank "
                   f"of {acc_cap[i]:.12g} words", f"<= {acc_cap[i]:.12g} words per bank")))
    checks.append(_Check(
        MAPPING_COLUMN, sp_words > sp_cap,
        lambda i: (f"scratchpad tile of {sp_words[i]} words overflows the {sp_cap[i]:.12g}-word "
                   "scratchpad", f"<= {sp_cap[i]:.12g} words")))
    return checks


def _parse_frame(frame: pd.DataFrame, source: str) -> tuple[
        np.ndarray, np.ndarray | None, pd.DataFrame, np.ndarray, list[Mapping], np.ndarray]:
    """Structural checks and parsing of published-format rows: (problem columns, dilation or
    None, arch columns, hardware [B, 3], distinct mappings, each row's index into them)."""
    probs = _positive_integers(frame, PROBLEM_COLUMNS, source)
    present = [c for c in DILATION_COLUMNS if c in frame.columns]
    dilation = None
    if present:
        dilation = np.ones((len(frame), len(DILATION_COLUMNS)), dtype=np.float64)
        values = _positive_integers(frame, present, source)
        for k, col in enumerate(present):
            dilation[:, DILATION_COLUMNS.index(col)] = values[:, k]
    for col in ARCH_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.nonzero(~np.isfinite(values) | (values <= 0))[0]
        if bad.size:
            raise ValueError(f"{source}: row {int(bad[0])} column {col} must be a positive "
                             f"number, got {_shown(frame[col].iloc[int(bad[0])])}")
    arch = frame[list(ARCH_COLUMNS)].apply(pd.to_numeric)
    hw = hardware_from_arch_columns(arch)
    mappings, codes = _parse_distinct(frame[MAPPING_COLUMN], source)
    product = np.stack([(m.temporal * m.spatial).prod(axis=0) for m in mappings])
    bad_rows = np.nonzero((product[codes] != probs[:, :7]).any(axis=1))[0]
    if bad_rows.size:
        i = int(bad_rows[0])
        raise ValueError(f"{source}: row {i}: mapping factors do not multiply to the layer "
                         f"dims ({mappings[codes[i]]})")
    return probs, dilation, arch, hw, mappings, codes


def frame_tensors(frame: pd.DataFrame, source: str = "frame") -> tuple[torch.Tensor, ...]:
    """Model inputs (dims, strides, temporal, spatial, rank, hw) of published-format rows,
    after the structural checks of :func:`evaluate_frame` but none of its legality rules."""
    _require(frame, PROBLEM_COLUMNS + (MAPPING_COLUMN,) + ARCH_COLUMNS, source)
    probs, _, _, hw, mappings, codes = _parse_frame(frame, source)
    return (torch.from_numpy(probs[:, :7].astype(np.float64)),
            torch.from_numpy(probs[:, 7:9].astype(np.float64)),
            *(torch.from_numpy(np.stack([getattr(m, f) for m in mappings])[codes]
                               .astype(np.int64 if f == "rank" else np.float64))
              for f in ("temporal", "spatial", "rank")),
            torch.from_numpy(hw))


def evaluate_frame(frame: pd.DataFrame, source: str = "frame", *,
                   allow_invalid: bool = False) -> pd.DataFrame:
    """Model cycles, energy (µJ) and area (mm²) for rows in the published column format.

    Returns a frame with columns ``model.cycle``, ``model.energy``, ``model.area`` and
    ``model.valid`` aligned with ``frame``; each row is scored with its own hardware (from the
    ``arch.*`` columns). Rows no Gemmini-TL instance can run (illegal or oversized loops, too
    small buffers, a non-square PE count, dilation) raise ValueError naming the first such row,
    because a score for them would look like a real design point. ``allow_invalid=True``
    scores them anyway, with ``model.valid`` False and the why in ``model.invalid_reason``.
    Structural errors (missing columns, non-numeric or non-positive values, unparsable
    mappings, factors that do not multiply to the layer) raise in both modes.
    """
    _require(frame, PROBLEM_COLUMNS + (MAPPING_COLUMN,) + ARCH_COLUMNS, source)
    if frame.empty:  # the batched model cannot take an empty batch; nothing to score
        empty = pd.DataFrame({c: pd.Series(dtype=np.float64) for c in MODEL_COLUMNS}
                             | {VALID_COLUMN: pd.Series(dtype=bool)}, index=frame.index)
        if allow_invalid:
            empty[REASON_COLUMN] = pd.Series(dtype=object, index=frame.index)
        return empty
    probs, dilation, arch, hw, mappings, codes = _parse_frame(frame, source)
    temporal = np.stack([m.temporal for m in mappings])
    spatial = np.stack([m.spatial for m in mappings])
    rank = np.stack([m.rank for m in mappings])
    strides = probs[:, 7:9]
    checks = _physical_checks(arch, dilation, temporal, spatial, codes, strides, hw)
    invalid = np.zeros((len(checks), len(frame)), dtype=bool)
    for k, check in enumerate(checks):
        invalid[k] = check.bad
    bad_any = invalid.any(axis=0)
    if bad_any.any() and not allow_invalid:
        i = int(np.argmax(bad_any))
        check = checks[int(np.argmax(invalid[:, i]))]
        raise ValueError(f"{source}: row {i} {check.message(i)}")
    hw[:, 0] = np.maximum(hw[:, 0], 1)  # arch.pe < 1 (invalid) would round to 0 PEs
    with torch.no_grad():
        out = evaluate(torch.from_numpy(probs[:, :7].copy()), torch.from_numpy(strides.copy()),
                       torch.from_numpy(temporal[codes].astype(np.float64)),
                       torch.from_numpy(spatial[codes].astype(np.float64)),
                       torch.from_numpy(rank[codes]), torch.from_numpy(hw))
        area = area_model().predict(hw[:, 0], hw[:, 1], hw[:, 2])
    result = pd.DataFrame({"model.cycle": out.cycles.numpy(), "model.energy": out.energy_uj.numpy(),
                           "model.area": area, VALID_COLUMN: ~bad_any}, index=frame.index)
    outside = np.zeros(len(frame), dtype=bool)
    for col, (low, high) in zip(range(3), AREA_FIT_RANGE.values(), strict=True):
        outside |= (hw[:, col] < low) | (hw[:, col] > high)
    if outside.any():
        log.warning("%s: %d of %d rows lie outside the area model's fitted range (%s); their "
                    "model.area is an extrapolation", source, int(outside.sum()), len(frame),
                    ", ".join(f"{k} {lo:g}..{hi:g}" for k, (lo, hi) in AREA_FIT_RANGE.items()))
    if allow_invalid:
        reasons = np.full(len(frame), "", dtype=object)
        for i in np.nonzero(bad_any)[0]:
            reasons[i] = "; ".join(checks[k].message(int(i)) for k in np.nonzero(invalid[:, i])[0])
        result[REASON_COLUMN] = pd.Series(reasons, index=frame.index, dtype=object)
        if bad_any.any():
            log.warning("%s: %d of %d rows are physically impossible on Gemmini-TL; scored anyway "
                        "and marked in %s", source, int(bad_any.sum()), len(frame), VALID_COLUMN)
    return result


#: What a search minimises: network EDP (the paper's), latency (cycles) or energy (µJ).
OBJECTIVES = ("edp", "latency", "energy")


def objective_of(objective: str, cycles: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """The objective of (network or per-layer) cycles and energy, elementwise.

    Per layer the same function ranks one layer's candidate mappings: on a fixed hardware the
    network objective is monotone in each layer's cycles (latency), energy (energy) or, for
    EDP, the product the searches have always used per layer.
    """
    if objective == "edp":
        return np.asarray(cycles) * np.asarray(energy)
    if objective == "latency":
        return np.asarray(cycles, dtype=np.float64)
    if objective == "energy":
        return np.asarray(energy, dtype=np.float64)
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def network_objective(counts: np.ndarray, cycles: np.ndarray, energy: np.ndarray,
                      objective: str = "edp") -> np.ndarray:
    """Network objective of per-layer cycles/energy, reducing the last (layer) axis:
    EDP (Σ count·cycles)·(Σ count·energy), latency Σ count·cycles or energy Σ count·energy."""
    counts = np.asarray(counts, dtype=np.float64)
    return objective_of(objective, (np.asarray(cycles) * counts).sum(axis=-1),
                        (np.asarray(energy) * counts).sum(axis=-1))


def network_edp(counts: np.ndarray, cycles: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Network EDP (Σ count·cycles)·(Σ count·energy), reducing the last (layer) axis."""
    return network_objective(counts, cycles, energy, "edp")


@dataclass(frozen=True)
class NetworkScore:
    """Exact score of a network design: per-layer and network totals (EDP in µJ·cycles)."""

    cycles: float
    energy_uj: float
    edp: float
    layer_cycles: np.ndarray
    layer_energy_uj: np.ndarray

    @staticmethod
    def from_layers(counts: np.ndarray, cycles: np.ndarray, energy: np.ndarray) -> NetworkScore:
        total_c = float(np.sum(counts * cycles))
        total_e = float(np.sum(counts * energy))
        return NetworkScore(total_c, total_e, float(network_edp(counts, cycles, energy)), cycles,
                            energy)


def layer_tensors(layers: Sequence[Layer]) -> tuple[torch.Tensor, torch.Tensor]:
    dims = torch.tensor([lay.dims for lay in layers], dtype=torch.float64)
    strides = torch.tensor([lay.strides for lay in layers], dtype=torch.float64)
    return dims, strides


def evaluate_layers(layers: Sequence[Layer], mappings: Sequence[Mapping],
                    hardware: Hardware | Sequence[Hardware]) -> ModelOutput:
    """Model outputs for each (layer, mapping) on the given hardware (one or one per layer)."""
    hws = [hardware] * len(layers) if isinstance(hardware, Hardware) else list(hardware)
    dims, strides = layer_tensors(layers)
    t, s, r = stack_mappings(list(mappings))
    hw = torch.tensor([h.as_tuple() for h in hws], dtype=torch.float64)
    with torch.no_grad():
        return evaluate(dims, strides, t, s, r, hw)


def score_network(network: Network, mappings: Sequence[Mapping], hardware: Hardware,
                  *, check: bool = True) -> NetworkScore:
    """Network EDP = (Σ count·cycles)·(Σ count·energy) of one design, checking validity."""
    if len(mappings) != len(network.layers):
        raise ValueError(f"{len(mappings)} mappings for {len(network.layers)} layers")
    if check:
        for layer, m in zip(network.layers, mappings, strict=True):
            m.check(layer, hardware)
    out = evaluate_layers(network.layers, mappings, hardware)
    return NetworkScore.from_layers(network.counts_array().astype(np.float64),
                                    out.cycles.numpy(), out.energy_uj.numpy())


def design_frame(network: Network, mappings: Sequence[Mapping], hardware: Hardware,
                 cycles: Sequence[float] | None = None) -> pd.DataFrame:
    """A design in the published CSV format (one row per unique layer), e.g. for FireSim.

    ``target.*`` hold the model's cycles and energy (µJ), EDP in J·cycles as published, and the
    area model's mm²; ``cycles`` may override the cycle column (a learned predictor's).
    """
    out = evaluate_layers(network.layers, mappings, hardware)
    cyc = out.cycles.numpy() if cycles is None else np.asarray(cycles, dtype=np.float64)
    energy = out.energy_uj.numpy()
    rows = []
    for layer, m, c, e in zip(network.layers, mappings, cyc, energy, strict=True):
        row: dict[str, object] = {"target.cycle": c, "target.energy": e,
                                  "target.edp": c * e * 1e-6,
                                  "target.area": hardware.area_mm2(),
                                  "mapping.mapping": m.to_string()}
        row |= hardware.to_arch_columns()
        row |= {"prob.shape": "cnn-layer", "prob.C": layer.C, "prob.Hdilation": 1,
                "prob.Hstride": layer.Hstride, "prob.K": layer.K, "prob.N": layer.N,
                "prob.P": layer.P, "prob.Q": layer.Q, "prob.R": layer.R, "prob.S": layer.S,
                "prob.Wdilation": 1, "prob.Wstride": layer.Wstride,
                "layer": layer.name, "count": layer.count}
        rows.append(row)
    return pd.DataFrame(rows)
