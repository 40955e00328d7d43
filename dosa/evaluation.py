"""Exact scoring of designs with the model: published CSV rows and whole-network designs.

This is the float64 "evaluation mode" of the one model in :mod:`dosa.model`; search uses the
same functions on real-valued factors.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from dosa.hardware import Hardware, area_model, hardware_from_arch_columns
from dosa.mapping import Mapping, parse_mapping, stack_mappings
from dosa.model import ModelOutput, evaluate
from dosa.workload import DIMS, Layer, Network

log = logging.getLogger(__name__)

PROBLEM_COLUMNS = tuple(f"prob.{d}" for d in DIMS) + ("prob.Wstride", "prob.Hstride")
MAPPING_COLUMN = "mapping.mapping"


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


def evaluate_frame(frame: pd.DataFrame, source: str = "frame") -> pd.DataFrame:
    """Model cycles, energy (µJ) and area (mm²) for rows in the published column format.

    Returns a frame with columns ``model.cycle``, ``model.energy``, ``model.area`` aligned with
    ``frame``; each row is scored with its own hardware (from the ``arch.*`` columns).
    """
    from dosa.hardware import ARCH_COLUMNS

    _require(frame, PROBLEM_COLUMNS + (MAPPING_COLUMN,) + ARCH_COLUMNS, source)
    probs = frame[list(PROBLEM_COLUMNS)].to_numpy(dtype=np.float64)
    if np.any(~np.isfinite(probs)) or np.any(probs < 1) or np.any(probs != np.round(probs)):
        bad = np.argwhere(~(np.isfinite(probs) & (probs >= 1) & (probs == np.round(probs))))[0]
        raise ValueError(f"{source}: row {bad[0]} column {PROBLEM_COLUMNS[bad[1]]} must be a "
                         f"positive integer, got {probs[bad[0], bad[1]]}")
    for col in ARCH_COLUMNS:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.nonzero(~np.isfinite(values) | (values <= 0))[0]
        if bad.size:
            raise ValueError(f"{source}: row {int(bad[0])} column {col} must be a positive "
                             f"number, got {frame[col].iloc[int(bad[0])]!r}")
    hw = hardware_from_arch_columns(frame)
    mappings = parse_mapping_column(frame[MAPPING_COLUMN].tolist())
    t, s, r = stack_mappings(mappings)
    dims = torch.from_numpy(probs[:, :7].copy())
    strides = torch.from_numpy(probs[:, 7:9].copy())
    bad_rows = np.nonzero((t * s).prod(dim=1).numpy() != probs[:, :7])[0]
    if bad_rows.size:
        i = int(bad_rows[0])
        raise ValueError(f"{source}: row {i}: mapping factors do not multiply to the layer "
                         f"dims ({mappings[i]})")
    with torch.no_grad():
        out = evaluate(dims, strides, t, s, r, torch.from_numpy(hw))
        area = area_model().predict(hw[:, 0], hw[:, 1], hw[:, 2])
    return pd.DataFrame({"model.cycle": out.cycles.numpy(), "model.energy": out.energy_uj.numpy(),
                         "model.area": area}, index=frame.index)


def network_edp(counts: np.ndarray, cycles: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Network EDP (Σ count·cycles)·(Σ count·energy), reducing the last (layer) axis."""
    counts = np.asarray(counts, dtype=np.float64)
    return (np.asarray(cycles) * counts).sum(axis=-1) * (np.asarray(energy) * counts).sum(axis=-1)


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
