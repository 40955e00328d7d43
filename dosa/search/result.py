"""The one result type every search method returns, and its on-disk form.

A run directory holds ``result.json`` (design, totals, sample accounting, trajectory, config)
and ``mappings.csv`` (one row per unique layer, mapping in the published string format). Both
are written atomically, so an interrupted run never leaves a half-written result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dosa.hardware import Hardware
from dosa.io import atomic_write_text
from dosa.mapping import Mapping, parse_mapping
from dosa.workload import Network

RESULT_FILE = "result.json"
MAPPINGS_FILE = "mappings.csv"
MAPPING_COLUMNS = ["layer", "R", "S", "P", "Q", "C", "K", "N", "Wstride", "Hstride", "count",
                   "mapping", "cycles", "energy_uj"]


class Trajectory:
    """Best network EDP so far as a function of samples used (the paper's Fig. 7 x-axis).

    ``record(samples, edp)`` is called with the cumulative sample count after each evaluation;
    only improvements are stored (plus the final point), so it stays small.
    """

    def __init__(self) -> None:
        self.points: list[tuple[int, float]] = []
        self.best = math.inf

    def record(self, samples: int, edp: float) -> None:
        if not math.isfinite(edp):
            return
        if edp < self.best:
            self.best = float(edp)
            self.points.append((int(samples), self.best))

    def close(self, samples: int) -> None:
        """Mark the end of the run at ``samples`` (so curves extend to the full budget)."""
        if self.points and self.points[-1][0] != samples:
            self.points.append((int(samples), self.best))

    def as_list(self) -> list[list[float]]:
        return [[s, e] for s, e in self.points]


@dataclass
class SearchResult:
    """A searched design and how it was found."""

    method: str
    seed: int
    workload: str
    hardware: Hardware
    mappings: list[Mapping]
    layer_cycles: list[float]
    layer_energy_uj: list[float]
    cycles: float
    energy_uj: float
    edp: float
    area_mm2: float
    samples: int
    model_evals: int
    wall_s: float
    trajectory: list[list[float]]
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "seed": self.seed,
            "workload": self.workload,
            "hardware": {"pe_dim": self.hardware.pe_dim, "sp_kb": self.hardware.sp_kb,
                         "acc_kb": self.hardware.acc_kb},
            "cycles": self.cycles,
            "energy_uj": self.energy_uj,
            "edp": self.edp,
            "edp_unit": "uJ*cycles",
            "area_mm2": self.area_mm2,
            "samples": self.samples,
            "model_evals": self.model_evals,
            "wall_s": self.wall_s,
            "trajectory": self.trajectory,
            "config": self.config,
            "extra": self.extra,
        }

    def mappings_frame(self, network: Network) -> pd.DataFrame:
        frame = network.to_frame()
        frame["mapping"] = [m.to_string() for m in self.mappings]
        frame["cycles"] = self.layer_cycles
        frame["energy_uj"] = self.layer_energy_uj
        return frame[MAPPING_COLUMNS]

    def write(self, out_dir: str | Path, network: Network) -> Path:
        """Write mappings.csv then result.json (the latter marks a complete run)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for key in ("cycles", "energy_uj", "edp", "area_mm2"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"refusing to write a result with non-finite {key}")
        atomic_write_text(out / MAPPINGS_FILE, self.mappings_frame(network).to_csv(index=False))
        atomic_write_text(out / RESULT_FILE, json.dumps(self.to_json(), indent=1) + "\n")
        return out / RESULT_FILE

    @classmethod
    def read(cls, out_dir: str | Path) -> SearchResult:
        out = Path(out_dir)
        data = json.loads((out / RESULT_FILE).read_text())
        frame = pd.read_csv(out / MAPPINGS_FILE)
        return cls(
            method=data["method"], seed=data["seed"], workload=data["workload"],
            hardware=Hardware.from_dict(data["hardware"]),
            mappings=[parse_mapping(s) for s in frame["mapping"]],
            layer_cycles=frame["cycles"].astype(float).tolist(),
            layer_energy_uj=frame["energy_uj"].astype(float).tolist(),
            cycles=data["cycles"], energy_uj=data["energy_uj"], edp=data["edp"],
            area_mm2=data["area_mm2"], samples=data["samples"],
            model_evals=data["model_evals"], wall_s=data["wall_s"],
            trajectory=data["trajectory"], config=data.get("config", {}),
            extra=data.get("extra", {}),
        )


def finish_result(*, method: str, seed: int, network: Network, hardware: Hardware,
                  mappings: list[Mapping], samples: int, model_evals: int, wall_s: float,
                  trajectory: Trajectory, config: dict[str, Any],
                  extra: dict[str, Any] | None = None) -> SearchResult:
    """Score the final design exactly (checking validity) and package it."""
    from dosa.evaluation import score_network

    score = score_network(network, mappings, hardware, check=True)
    trajectory.record(samples, score.edp)
    trajectory.close(samples)
    return SearchResult(
        method=method, seed=seed, workload=network.name, hardware=hardware,
        mappings=list(mappings),
        layer_cycles=[float(x) for x in np.asarray(score.layer_cycles)],
        layer_energy_uj=[float(x) for x in np.asarray(score.layer_energy_uj)],
        cycles=score.cycles, energy_uj=score.energy_uj, edp=score.edp,
        area_mm2=hardware.area_mm2(), samples=int(samples), model_evals=int(model_evals),
        wall_s=float(wall_s), trajectory=trajectory.as_list(), config=config, extra=extra or {},
    )
