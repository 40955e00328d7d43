"""``dosa sweep``: many searches (workload x method x seed x area budget) as Dask tasks.

Users who sweep their own networks outgrow one process and one machine, so every run is a
task on Dask distributed: a ``LocalCluster`` of this machine by default, or an existing
cluster (``dask scheduler`` / ``dask worker`` started by hand, a batch system's cluster).
Each task is exactly one ``dosa search`` (:func:`dosa.experiments.search_to_folder`) into
``DIR/<workload>/<label>/seed<k>``: the same run key, the same result folder and the same
numbers as a single run, so a rerun reuses every complete run and an interrupted sweep
resumes. DOSA runs of one workload and seed are chained from the tightest budget to the
loosest, each warm-started from the previous design (as in :mod:`dosa.tradeoff`), so that a
looser budget is never worse; the chain is a Dask dependency, the other runs are independent.

A task that fails (a malformed workload file, a diverged search) is reported in ``sweep.csv``
with its error and the other tasks finish.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
from tqdm import tqdm

from dosa.cli import SEARCH_OPTIONS, one_line
from dosa.io import atomic_write_text
from dosa.tradeoff import Budget, check_budgets, sweep_label

if TYPE_CHECKING:
    from distributed import Client

log = logging.getLogger(__name__)

SWEEP_CSV = "sweep.csv"
#: Columns of ``sweep.csv``, one row per run (``folder`` is relative to the sweep's folder;
#: ``status``: done, reused (an identical complete run was already there) or failed).
COLUMNS = ("workload", "method", "seed", "area_budget_mm2", "objective", "edp", "cycles",
           "energy_uj", "area_mm2", "samples", "wall_s", "folder", "status", "error")
#: Methods that take an area budget (``max_area_mm2``; the paper baselines search fixed
#: design spaces) and methods that minimise another objective than EDP, from the option table
#: that ``dosa search`` honours.
BUDGET_METHODS = SEARCH_OPTIONS["max_area_mm2"]
#: The Dask setting that :func:`dask_client` unsets for its local workers.
UNTRIMMED = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"
OBJECTIVE_METHODS = SEARCH_OPTIONS["objective"]


@dataclass(frozen=True)
class SweepTask:
    """One run of a sweep: ``dosa search`` of ``method`` with ``config`` (the method's
    options, without budget and objective) into ``folder``."""

    workload: str
    method: str
    seed: int
    budget: Budget
    objective: str
    config: tuple[tuple[str, Any], ...] = field(default=())
    folder: str = ""

    def search_config(self) -> dict[str, Any]:
        """The configuration of the run: the method's options, the budget, the objective
        (left out when EDP, as ``dosa search`` does, so the run keys agree)."""
        config = dict(self.config)
        if self.budget is not None:
            config["max_area_mm2"] = float(self.budget)
        if self.objective != "edp":
            config["objective"] = self.objective
        return config


def workload_id(workload: str) -> str:
    """Folder name of a workload: a built-in network's name, or a file's or folder's stem."""
    path = Path(workload)
    return path.stem if (path.suffix or path.exists() or "/" in workload) else workload.lower()


def plan_sweep(workloads: Sequence[str], methods: Sequence[str], seeds: Sequence[int],
               configs: Mapping[str, Mapping[str, Any]], *,
               budgets: Sequence[Budget] | None = None, objective: str = "edp"
               ) -> list[SweepTask]:
    """Every (workload, method, seed, budget) run, tightest budget first per chain.

    ``configs`` maps each method to its options. ``budgets`` None: no budget (each method's
    own bounds). A method that cannot honour a budget or the objective is refused, as are
    duplicates and two workloads that would share a folder.
    """
    for name, items in (("workloads", workloads), ("methods", methods), ("seeds", seeds)):
        if not items:
            raise ValueError(f"--{name} must list at least one value")
        if len(set(items)) != len(items):
            raise ValueError(f"--{name}: duplicate value in {','.join(map(str, items))}")
    ids: dict[str, str] = {}
    for workload in workloads:
        wid = workload_id(workload)
        if wid in ids:
            raise ValueError(f"--workloads {ids[wid]} and {workload} would share the result "
                             f"folder {wid}/; rename one")
        ids[wid] = workload
    swept: tuple[Budget, ...] = (None,) if budgets is None else check_budgets(budgets)
    for method in methods:
        if budgets is not None and method not in BUDGET_METHODS:
            raise ValueError(f"--area-budgets applies to --methods {', '.join(BUDGET_METHODS)}"
                             f" (not {method}, which searches a fixed design space)")
        if objective != "edp" and method not in OBJECTIVE_METHODS:
            raise ValueError(f"--objective {objective} applies to --methods "
                             f"{', '.join(OBJECTIVE_METHODS)} (not {method}, which minimises "
                             "EDP only)")
    tasks = []
    for workload in workloads:
        for method in methods:
            config = tuple(sorted(dict(configs.get(method, {})).items()))
            for seed in seeds:
                for budget in swept:
                    label = (sweep_label(method, budget, objective) if budgets is not None
                             else method if objective == "edp" else f"{method}-{objective}")
                    tasks.append(SweepTask(workload, method, int(seed), budget, objective,
                                           config,
                                           f"{workload_id(workload)}/{label}/seed{int(seed)}"))
    return tasks


def _row(task: SweepTask) -> dict[str, Any]:
    return {"workload": workload_id(task.workload), "method": task.method, "seed": task.seed,
            "area_budget_mm2": math.nan if task.budget is None else task.budget,
            "objective": task.objective, "edp": math.nan, "cycles": math.nan,
            "energy_uj": math.nan, "area_mm2": math.nan, "samples": math.nan,
            "wall_s": math.nan, "folder": task.folder, "status": "failed", "error": ""}


def run_task(task: SweepTask, out: str, force: bool = False,
             previous: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Run one task (on a Dask worker): its ``sweep.csv`` row, plus the design's warm-start
    options (:func:`dosa.tradeoff.warm_config`) under ``"warm"`` for the next run of a DOSA
    chain. Never raises: a failure is a row with status failed and the error."""
    from dosa.experiments import search_to_folder
    from dosa.tradeoff import warm_config
    from dosa.workload import load_network

    row = _row(task)
    try:
        config = task.search_config()
        if previous is not None:
            if previous["status"] == "failed":
                raise RuntimeError(f"not run: its warm start {previous['folder']} failed")
            config.update(previous["warm"])
        network = load_network(task.workload)
        result, reused = search_to_folder(network, task.method, task.seed, config,
                                          Path(out) / task.folder, force=force)
    except Exception as err:  # reported in sweep.csv; the other tasks go on
        row["error"] = one_line(err)
        return row
    row.update(edp=result.edp, cycles=result.cycles, energy_uj=result.energy_uj,
               area_mm2=result.area_mm2, samples=result.samples, wall_s=result.wall_s,
               status="reused" if reused else "done",
               warm=warm_config(result))
    return row


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, *,
                tasks: int | None = None, connect_timeout_s: float = 10.0,
                source: str = "--scheduler") -> Iterator[Client]:
    """A Dask client of the scheduler at ``scheduler`` (``tcp://host:port``), or of a
    ``LocalCluster`` of ``workers`` single-threaded processes (default: the CPUs this process
    may use; never more than ``tasks``) that lives as long as the block. Every search is
    single-threaded and deterministic in its key, so where a task runs never changes a number.
    ``source`` names where ``scheduler`` came from in the error when nothing answers there.
    """
    import dask
    from distributed import Client, LocalCluster

    from dosa.experiments import default_workers

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=connect_timeout_s)
        except OSError as err:
            raise ValueError(f"{source} {scheduler}: no Dask scheduler answers there "
                             f"({one_line(err)})") from None
        try:
            yield client
        finally:
            client.close()
        return
    workers = default_workers() if workers is None else workers
    n = max(1, min(workers, tasks if tasks is not None else workers))
    # The cluster's own start/stop chatter (INFO) would fill notebooks and logs; warnings stay.
    chatter = logging.getLogger("distributed")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    try:
        # memory_limit=0: a search is small; Dask's default limit would pause or kill a
        # worker on a busy machine for memory other processes use. MALLOC_TRIM_THRESHOLD_
        # unset: Dask's default (65536) makes glibc return memory to the OS so eagerly that
        # searches (many small torch/numpy allocations) ran 2.7x slower (measured).
        with dask.config.set({UNTRIMMED: None}), \
                LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                             dashboard_address=None, memory_limit=0,
                             silence_logs=logging.WARNING) as cluster, \
                Client(cluster) as client:
            yield client
    finally:
        chatter.setLevel(level)


T = TypeVar("T")
R = TypeVar("R")


def parallel_map(fn: Callable[[T], R], items: Sequence[T], *, workers: int | None = None,
                 desc: str = "", progress: bool = False) -> list[R]:
    """``[fn(x) for x in items]`` as tasks of a Dask ``LocalCluster`` of ``workers``
    single-threaded processes (default :func:`dosa.experiments.default_workers`; the cluster
    of ``dosa sweep``, :func:`dask_client`), or of the existing cluster at ``$DOSA_SCHEDULER``
    (``tcp://host:port``; its workers must see this checkout and its run cache at the same
    paths). The notebooks' sweeps (:func:`dosa.experiments.run_labels`,
    :func:`dosa.tradeoff.area_sweeps`) run on it; it lives here, with the rest of the
    scheduling, so that it stays out of the run keys' code fingerprint (where a run is
    scheduled never changes its numbers).

    For deterministic, single-threaded searches only: each item's result is independent of
    where it runs, so the numbers equal a sequential run. The first failure stops the map
    (pending tasks are cancelled) and is raised. ``fn`` must be picklable. Task keys
    (``<desc>-<token>-<i>``) carry a token drawn per call, so two maps on one shared cluster
    (two notebooks on the same ``DOSA_SCHEDULER``) never take each other's results.
    """
    from dosa.experiments import default_workers

    items = list(items)
    workers = default_workers() if workers is None else workers
    scheduler = os.environ.get("DOSA_SCHEDULER") or None
    out: dict[int, R] = {}
    with tqdm(total=len(items), desc=desc, disable=not progress) as bar:
        if scheduler is None and (workers <= 1 or len(items) <= 1):
            for i, item in enumerate(items):
                out[i] = fn(item)
                bar.update()
        else:
            from distributed import as_completed

            token = uuid.uuid4().hex[:8]
            with dask_client(workers, scheduler, tasks=len(items),
                             source="DOSA_SCHEDULER") as client:
                futures = {client.submit(fn, item, pure=False,
                                         key=f"{desc or 'map'}-{token}-{i}"): i
                           for i, item in enumerate(items)}
                try:
                    for future in as_completed(futures):
                        out[futures[future]] = future.result()
                        bar.update()
                finally:
                    client.cancel([f for f in futures if not f.done()])
    return [out[i] for i in range(len(items))]


def run_sweep(tasks: Sequence[SweepTask], out: str | Path, *, workers: int | None = None,
              scheduler: str | None = None, force: bool = False, progress: bool = True,
              connect_timeout_s: float = 10.0) -> pd.DataFrame:
    """Run ``tasks`` on Dask and write ``out/sweep.csv`` (atomically); returns its rows.

    ``scheduler`` (``tcp://host:port``) uses an existing cluster, whose workers must reach
    ``out`` and the workload files at the same paths; otherwise a ``LocalCluster`` of
    ``workers`` single-threaded processes (default: the CPUs this process may use) runs here.
    """
    from distributed import as_completed

    out = Path(out).expanduser().resolve()
    budgets = any(t.budget is not None for t in tasks)
    rows: dict[int, dict[str, Any]] = {}
    with dask_client(workers, scheduler, tasks=len(tasks),
                     connect_timeout_s=connect_timeout_s) as client:
        out.mkdir(parents=True, exist_ok=True)  # only once a cluster answers
        futures = {}
        previous: dict[tuple[str, str, int, str], Any] = {}
        token = uuid.uuid4().hex[:8]  # keys unique per sweep: a shared cluster may run several
        for i, task in enumerate(tasks):
            chain = (task.workload, task.method, task.seed, task.objective)
            before = previous.get(chain) if budgets and task.method == "dosa" else None
            future = client.submit(run_task, task, str(out), force, before, pure=False,
                                   key=f"dosa-sweep-{token}-{i}-{task.folder}")
            previous[chain] = future
            futures[future] = i
        with tqdm(total=len(tasks), desc="sweep runs", disable=not progress) as bar:
            for future in as_completed(futures):
                i = futures[future]
                try:
                    rows[i] = future.result()
                except Exception as err:  # a worker died: the task could not report itself
                    rows[i] = {**_row(tasks[i]), "error": one_line(err)}
                bar.update()
    frame = pd.DataFrame([{c: rows[i].get(c) for c in COLUMNS} for i in range(len(tasks))],
                         columns=list(COLUMNS))
    atomic_write_text(out / SWEEP_CSV, frame.to_csv(index=False))
    failed = frame[frame.status == "failed"]
    for _, r in failed.iterrows():
        log.warning("failed: %s (%s)", r.folder, r.error)
    log.info("%d runs: %d done, %d reused, %d failed; wrote %s", len(frame),
             (frame.status == "done").sum(), (frame.status == "reused").sum(), len(failed),
             out / SWEEP_CSV)
    return frame


__all__ = ["COLUMNS", "SWEEP_CSV", "SweepTask", "dask_client", "parallel_map", "plan_sweep",
           "run_sweep", "run_task", "workload_id"]
