"""The EDP-area trade-off: every method under a series of area budgets (notebook 08).

An architect asks "for my area budget, what is the best design?", not "what is the best design
of any size?". A *sweep* runs one method on one workload and seed under each budget of a list;
each run is an ordinary cached run (:func:`dosa.experiments.run`, so its key holds the budget,
the objective and any warm start) stored as ``<experiment>/<workload>/<label>@<budget>/seed<k>``.

DOSA is swept from the tightest budget to the loosest, each run warm-started from the previous
budget's design (start 0 of :class:`~dosa.search.dosa_gd.DosaConfig`, its mappings and its own
hardware): that design fits every looser budget and DOSA's answer is never worse than it, so
DOSA's objective can only improve as the budget loosens, by construction and per seed. The
grid baseline is monotone too (a looser budget keeps every point of a tighter one); random
search and BO are not.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from dosa.experiments import BUDGETS, LABELS, SPACE_BOUNDS, run, seeds_for
from dosa.hardware import GEMMINI_DEFAULT
from dosa.search.options import check_objective
from dosa.search.result import SearchResult
from dosa.workload import load_network

log = logging.getLogger(__name__)

Budget = float | None  # mm², None = unbounded (the baselines' design space only)
SweepKey = tuple[str, str, int, Budget]  # (workload, label, seed, budget)

#: The Gemmini default's area by the area model (mm²), rounded to 4 decimals so that it prints
#: and names its folder (:func:`budget_name`) exactly: notebook 08's iso-area budget.
ISO_AREA_BUDGET = round(GEMMINI_DEFAULT.area_mm2(), 4)
#: The bounded area budgets (mm²) of notebook 08's full profile (which adds the unbounded one)
#: and of ``make best-known-area``, whose committed yardsticks the notebook re-scores: one list,
#: so the two cannot drift apart.
AREA_BUDGETS: tuple[float, ...] = (0.5, 1.0, ISO_AREA_BUDGET, 2.0, 4.0, 8.0, 16.0)


def check_budgets(budgets: Iterable[object]) -> tuple[Budget, ...]:
    """The budgets as distinct positive floats (None = unbounded), tightest first, unbounded
    last; a bad entry is refused naming it and the allowed values."""
    out: list[float] = []
    unbounded = False
    items = list(budgets)
    if not items:
        raise ValueError("budgets must list at least one area budget (mm² > 0, or None)")
    for b in items:
        if b is None:
            unbounded = True
            continue
        if isinstance(b, bool) or not isinstance(b, int | float) or not math.isfinite(b) \
                or b <= 0:
            raise ValueError(f"budgets: each must be an area in mm² > 0 or None (unbounded), "
                             f"got {b!r}")
        out.append(float(b))
    if len(set(out)) != len(out):
        raise ValueError(f"budgets: duplicate area budget in {items!r}")
    return (*sorted(out), *((None,) if unbounded else ()))


def budget_name(budget: Budget) -> str:
    """Folder-safe name of a budget: ``0.5mm2``, ``0.6873mm2``, ``unbounded``."""
    return "unbounded" if budget is None else f"{budget:.4g}mm2"


def sweep_label(label: str, budget: Budget, objective: str = "edp") -> str:
    """Result-folder label of one run of a sweep (objective named when not EDP)."""
    suffix = "" if objective == "edp" else f"-{objective}"
    return f"{label}{suffix}@{budget_name(budget)}"


def budget_config(label: str, profile: str, budget: Budget, objective: str = "edp"
                  ) -> dict[str, Any]:
    """The label's configuration in ``profile`` under ``budget`` and ``objective``.

    Every method searches the baselines' design space (pe_dim ≤ 128, buffers ≤ 2,048 KB; the
    random and BO samplers draw from it anyway), so "unbounded" means that space.
    """
    if label not in LABELS or label not in BUDGETS[profile]:
        raise ValueError(f"label must be one of {sorted(BUDGETS[profile])}, got {label!r}")
    config = dict(BUDGETS[profile][label])
    if LABELS[label] in ("dosa", "grid"):
        config.update({k: v for k, v in SPACE_BOUNDS.items() if k not in config})
    if budget is not None:
        config["max_area_mm2"] = float(budget)
    if objective != "edp":
        config["objective"] = objective
    return config


def warm_config(previous: SearchResult) -> dict[str, Any]:
    """DOSA options that start from ``previous`` (a design of the same network): its mappings
    and its own hardware, so the new answer is never worse than it wherever it is allowed."""
    return {"warm_start": [m.to_string() for m in previous.mappings],
            "warm_hardware": previous.hardware.to_dict()}


def area_sweep(workload: str, label: str, seed: int, budgets: Sequence[Budget], profile: str,
               *, objective: str = "edp", experiment: str = "area"
               ) -> dict[Budget, SearchResult]:
    """One method, workload and seed under every budget (tightest first); DOSA labels are
    warm-started from the previous budget's design (see the module docstring)."""
    objective = check_objective(objective)
    budgets = check_budgets(budgets)
    network = load_network(workload)
    method = LABELS[label]
    out: dict[Budget, SearchResult] = {}
    warm: SearchResult | None = None
    for budget in budgets:
        config = budget_config(label, profile, budget, objective)
        if method == "dosa" and warm is not None:
            config.update(warm_config(warm))
        result = run(network, method, seed, experiment=experiment, config=config,
                     label=sweep_label(label, budget, objective))
        warm = result
        out[budget] = result
    return out


def _sweep_task(task: tuple[str, str, int, tuple[Budget, ...], str, str, str]
                ) -> dict[Budget, SearchResult]:
    workload, label, seed, budgets, profile, objective, experiment = task
    try:
        return area_sweep(workload, label, seed, budgets, profile, objective=objective,
                          experiment=experiment)
    except Exception as err:
        raise RuntimeError(f"{experiment} sweep {workload}/{label}/seed {seed}: {err}") from err


def area_sweeps(workloads: Sequence[str], labels: Sequence[str], budgets: Sequence[Budget],
                profile: str, *, seeds: Sequence[int] | None = None, objective: str = "edp",
                experiment: str = "area", workers: int | None = None, progress: bool = False
                ) -> dict[SweepKey, SearchResult]:
    """:func:`area_sweep` for every workload x label x seed (``seeds_for`` the label unless
    ``seeds`` is given; the seed-free grid runs once), sweeps in parallel processes."""
    from dosa.sweep import parallel_map  # not at the top: dosa.sweep imports this module

    objective = check_objective(objective)
    budgets = check_budgets(budgets)
    for label in labels:
        budget_config(label, profile, None)  # refuses an unknown label before any work
    for workload in workloads:
        load_network(workload)
    tasks = []
    for workload in workloads:
        for label in labels:
            label_seeds = seeds_for(label, profile) if seeds is None or LABELS[label] == "grid" \
                else tuple(seeds)
            if LABELS[label] == "grid":
                label_seeds = label_seeds[:1]
            tasks += [(workload, label, int(s), budgets, profile, objective, experiment)
                      for s in label_seeds]
    # The longest sweeps (BO) first, so the last worker does not finish alone.
    tasks.sort(key=lambda t: (LABELS[t[1]] != "bo", LABELS[t[1]] != "dosa"))
    swept = parallel_map(_sweep_task, tasks, workers=workers, desc=experiment,
                         progress=progress)
    out: dict[SweepKey, SearchResult] = {}
    for task, results in zip(tasks, swept, strict=True):
        workload, label, seed = task[:3]
        for budget, result in results.items():
            out[workload, label, seed, budget] = result
    return out


def sweep_frame(results: dict[SweepKey, SearchResult]) -> pd.DataFrame:
    """One row per run: workload, label, seed, budget (NaN = unbounded), the design's totals."""
    rows = []
    for (workload, label, seed, budget), r in results.items():
        rows.append({"workload": workload, "label": label, "seed": seed,
                     "budget_mm2": math.nan if budget is None else budget,
                     "budget": budget_name(budget), "objective": r.objective,
                     "edp": r.edp, "cycles": r.cycles, "energy_uj": r.energy_uj,
                     "area_mm2": r.area_mm2, "pe_dim": r.hardware.pe_dim,
                     "sp_kb": r.hardware.sp_kb, "acc_kb": r.hardware.acc_kb,
                     "samples": r.samples, "wall_s": r.wall_s,
                     "best_start": r.extra.get("starts", [{}] * (1 + r.extra.get(
                         "best_start", 0)))[r.extra.get("best_start", 0)].get("kind")
                     if r.method == "dosa" else None})
    return pd.DataFrame(rows)


__all__ = ["AREA_BUDGETS", "ISO_AREA_BUDGET", "area_sweep", "area_sweeps", "budget_config",
           "budget_name", "check_budgets", "sweep_frame", "sweep_label", "warm_config"]
