"""The one result type every search method returns, and its on-disk form.

A run directory holds ``result.json`` (design, totals, sample accounting, trajectory, config,
provenance) and ``mappings.csv`` (one row per unique layer, mapping in the published string
format). The folder is one unit: it is written complete into a temporary sibling and renamed
into place, and ``result.json`` records the sha256 of ``mappings.csv``, so a reader that finds a
pair from two different runs (whatever signal interrupted a writer, whenever) refuses it instead
of reporting one run's EDP beside another run's mappings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dosa.hardware import Hardware
from dosa.io import _fsync_dir, _fsync_file
from dosa.mapping import Mapping, parse_mapping
from dosa.workload import Network

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"
MAPPINGS_FILE = "mappings.csv"
#: Test hook: called with a step name between the steps of :meth:`SearchResult.write`, so a
#: fault-injection test can kill the writer at each point.
_WRITE_HOOK: Callable[[str], None] | None = None


class ResultError(ValueError):
    """A result folder is unreadable, incomplete or inconsistent."""


ANALYTICAL: dict[str, Any] = {"latency": "analytical", "energy": "analytical"}
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
        """Record an evaluation; sample counts must never decrease (an improvement at the same
        count replaces the last point, so the stored counts are strictly increasing)."""
        if self.points and samples < self.points[-1][0]:
            raise ValueError(f"trajectory samples went backwards: {samples} after "
                             f"{self.points[-1][0]}")
        if not math.isfinite(edp):
            return
        if edp < self.best:
            self.best = float(edp)
            if self.points and self.points[-1][0] == samples:
                self.points[-1] = (int(samples), self.best)
            else:
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
    #: What the latency and energy numbers come from ("analytical model" or a predictor file).
    evaluator: dict[str, Any] = field(default_factory=lambda: dict(ANALYTICAL))
    #: Everything that determines the result (see :func:`dosa.experiments.run_key`).
    provenance: dict[str, Any] = field(default_factory=dict)
    #: What the search minimised (:data:`dosa.evaluation.OBJECTIVES`).
    objective: str = "edp"

    @property
    def objective_value(self) -> float:
        """The final design's value of the objective the search minimised."""
        from dosa.evaluation import objective_of

        return float(objective_of(self.objective, self.cycles, self.energy_uj))

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
            "objective": self.objective,
            "area_mm2": self.area_mm2,
            "samples": self.samples,
            "model_evals": self.model_evals,
            "wall_s": self.wall_s,
            "trajectory": self.trajectory,
            "config": self.config,
            "evaluator": self.evaluator,
            "provenance": self.provenance,
            "extra": self.extra,
        }

    def mappings_frame(self, network: Network) -> pd.DataFrame:
        frame = network.to_frame()
        frame["mapping"] = [m.to_string() for m in self.mappings]
        frame["cycles"] = self.layer_cycles
        frame["energy_uj"] = self.layer_energy_uj
        return frame[MAPPING_COLUMNS]

    def write(self, out_dir: str | Path, network: Network) -> Path:
        """Write the folder as one unit: complete in a temporary sibling, then renamed.

        A folder already at ``out_dir`` is moved aside first and removed last, so at every
        instant ``out_dir`` is either absent, the old complete result or the new one.
        """
        out = Path(out_dir)
        for key in ("cycles", "energy_uj", "edp", "area_mm2"):
            if not math.isfinite(getattr(self, key)):
                raise ValueError(f"refusing to write a result with non-finite {key}")
        out.parent.mkdir(parents=True, exist_ok=True)
        for leftover in [*out.parent.glob(f".{out.name}.*.tmp"),
                         *out.parent.glob(f".{out.name}.*.old")]:
            shutil.rmtree(leftover, ignore_errors=True)  # of a writer killed earlier
        csv = self.mappings_frame(network).to_csv(index=False).encode()
        data = self.to_json()
        data["files"] = {MAPPINGS_FILE: hashlib.sha256(csv).hexdigest()}
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
        old: Path | None = None
        try:
            (tmp / MAPPINGS_FILE).write_bytes(csv)
            _step("mappings written")
            (tmp / RESULT_FILE).write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
            for name in (MAPPINGS_FILE, RESULT_FILE):
                _fsync_file(tmp / name)
            os.chmod(tmp, 0o755)
            _step("folder complete")
            if out.exists():
                old = out.with_name(f".{out.name}.{os.getpid()}.old")
                os.replace(out, old)
                _step("old moved aside")
            os.replace(tmp, out)
            _fsync_dir(out.parent)
            _step("renamed")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if old is not None and not out.exists():
                os.replace(old, out)  # put the previous complete result back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return out / RESULT_FILE

    @classmethod
    def read(cls, out_dir: str | Path) -> SearchResult:
        """Load a result folder; :class:`ResultError` when it is incomplete or inconsistent."""
        out = Path(out_dir)
        try:
            data = json.loads((out / RESULT_FILE).read_text(encoding="utf-8"))
            csv = (out / MAPPINGS_FILE).read_bytes()
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ResultError(f"{out}: unreadable result ({err})") from err
        expected = data.get("files", {}).get(MAPPINGS_FILE) if isinstance(data, dict) else None
        if expected != hashlib.sha256(csv).hexdigest():
            raise ResultError(f"{out}: {MAPPINGS_FILE} does not belong to {RESULT_FILE} "
                              "(incomplete or mixed result)")
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
            extra=data.get("extra", {}), evaluator=data.get("evaluator", dict(ANALYTICAL)),
            provenance=data.get("provenance", {}), objective=data.get("objective", "edp"),
        )


def _step(name: str) -> None:
    if _WRITE_HOOK is not None:
        _WRITE_HOOK(name)


def finish_result(*, method: str, seed: int, network: Network, hardware: Hardware,
                  mappings: list[Mapping], samples: int, model_evals: int, wall_s: float,
                  trajectory: Trajectory, config: dict[str, Any],
                  extra: dict[str, Any] | None = None, predictor: Any = None,
                  evaluator: dict[str, Any] | None = None,
                  objective: str = "edp") -> SearchResult:
    """Score the final design exactly (checking validity) and package it.

    ``objective`` is what the search minimised; the trajectory records that objective's value.

    With a learned latency ``predictor`` every reported number (layer cycles, totals, EDP, the
    trajectory's last point) uses the predictor's latency and the model's energy, as the search
    did; the purely analytical totals are kept in ``extra["analytical"]``. ``evaluator`` says so
    in the result.
    """
    from dosa.evaluation import NetworkScore, layer_tensors, objective_of, score_network
    from dosa.hardware import area_model_range_issue

    score = score_network(network, mappings, hardware, check=True)
    extra = dict(extra or {})
    if predictor is not None:
        import torch

        from dosa.evaluation import evaluate_layers
        from dosa.mapping import stack_mappings

        extra["analytical"] = {"cycles": score.cycles, "energy_uj": score.energy_uj,
                               "edp": score.edp}
        out = evaluate_layers(network.layers, mappings, hardware)
        dims, strides = layer_tensors(network.layers)
        t, s, r = stack_mappings(list(mappings))
        hw_rows = torch.tensor([hardware.as_tuple()] * len(mappings), dtype=torch.float64)
        with torch.no_grad():
            cycles = predictor(dims, strides, t, s, r, hw_rows, out).numpy()
        score = NetworkScore.from_layers(network.counts_array().astype(np.float64), cycles,
                                         out.energy_uj.numpy())
    issue = area_model_range_issue(hardware)
    if issue is not None:
        log.warning("%s %s seed %d: %s", method, network.name, seed, issue)
        extra["area_model_warning"] = issue
    trajectory.record(samples, float(objective_of(objective, score.cycles, score.energy_uj)))
    trajectory.close(samples)
    return SearchResult(
        method=method, seed=seed, workload=network.name, hardware=hardware,
        mappings=list(mappings),
        layer_cycles=[float(x) for x in np.asarray(score.layer_cycles)],
        layer_energy_uj=[float(x) for x in np.asarray(score.layer_energy_uj)],
        cycles=score.cycles, energy_uj=score.energy_uj, edp=score.edp,
        area_mm2=hardware.area_mm2(), samples=int(samples), model_evals=int(model_evals),
        wall_s=float(wall_s), trajectory=trajectory.as_list(), config=config, extra=extra,
        evaluator=dict(evaluator or ANALYTICAL), objective=objective,
    )
