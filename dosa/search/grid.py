"""Exhaustive grid baseline ("grid"): every power-of-two hardware point, heuristic mappings.

The random hardware of spec §1.2 lives on a small grid - pe_dim 2..128, scratchpad and
accumulator 1..2048 KB, powers of two: 7 x 12 x 12 = 1,008 points. Mapping each point with the
deterministic constructive mapper :func:`dosa.search.starts.heuristic_mappings` and keeping the
least network EDP gives a seed-free reference that shows how much of a search's result is
hardware choice alone. One hardware point counts as one sample (one network design).

Per point the candidates are exactly those of :func:`dosa.search.starts.heuristic_candidates`
and the per-layer choice is :func:`dosa.search.random_search.pick_best` (least per-layer EDP,
first on ties), i.e. ``heuristic_mappings``; only the model evaluation is batched across points.
Where the heuristic mapper cannot fit a layer (its one-word-per-PE tile already overflows a tiny
scratchpad or accumulator bank, e.g. pe 128 with 1 KB), the point is infeasible and skipped.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dosa.evaluation import network_objective
from dosa.hardware import Hardware
from dosa.mapping import Mapping
from dosa.model import evaluate
from dosa.search.options import (
    LOG2_ACC_KB_RANGE,
    LOG2_PE_RANGE,
    LOG2_SP_KB_RANGE,
    HardwareBounds,
    check_objective,
    check_seed,
)
from dosa.search.random_search import pick_best
from dosa.search.result import SearchResult, Trajectory, finish_result
from dosa.search.sampler import single_threaded
from dosa.search.starts import heuristic_tables
from dosa.workload import Network, as_network

log = logging.getLogger(__name__)

DEFAULT_PE_DIMS = tuple(2 ** i for i in range(LOG2_PE_RANGE[0], LOG2_PE_RANGE[1] + 1))
DEFAULT_SP_KB = tuple(float(2 ** i) for i in range(LOG2_SP_KB_RANGE[0], LOG2_SP_KB_RANGE[1] + 1))
DEFAULT_ACC_KB = tuple(float(2 ** i)
                       for i in range(LOG2_ACC_KB_RANGE[0], LOG2_ACC_KB_RANGE[1] + 1))
#: Hardware points whose candidates go through the model in one call.
POINTS_PER_BATCH = 32


def grid_points(pe_dims: Sequence[int] | None = None, sp_kb: Sequence[float] | None = None,
                acc_kb: Sequence[float] | None = None) -> list[Hardware]:
    """The grid's hardware, pe outermost and accumulator innermost (None = the default axis)."""
    axes = (DEFAULT_PE_DIMS if pe_dims is None else tuple(pe_dims),
            DEFAULT_SP_KB if sp_kb is None else tuple(sp_kb),
            DEFAULT_ACC_KB if acc_kb is None else tuple(acc_kb))
    for name, axis in zip(("pe_dims", "sp_kb", "acc_kb"), axes, strict=True):
        if len(axis) == 0:
            raise ValueError(f"{name} must not be empty")
    return [Hardware(int(p), float(s), float(a)) for p, s, a in itertools.product(*axes)]


def score_points(network: Network, hws: list[Hardware], objective: str = "edp"
                 ) -> list[tuple[float, list[Mapping], int]]:
    """(network objective or inf, heuristic mappings, candidates evaluated) for each point.

    Public because DOSA's hardware screen and the best-known search score points the same way.
    """
    per_point: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    for hw in hws:
        per_point.append([heuristic_tables(layer, hw) for layer in network])
    sizes = [[len(s[0]) for s in samples] for samples in per_point]
    point_rows = [sum(s) for s in sizes]
    layer_idx = np.concatenate([np.repeat(np.arange(len(network)), s) for s in sizes])
    hw_rows = np.repeat(np.array([h.as_tuple() for h in hws], dtype=np.float64), point_rows,
                        axis=0)
    temporal = np.concatenate([s[0] for samples in per_point for s in samples])
    spatial = np.concatenate([s[1] for samples in per_point for s in samples])
    rank = np.concatenate([s[2] for samples in per_point for s in samples])
    dims = torch.from_numpy(network.dims_array().astype(np.float64)[layer_idx])
    strides = torch.from_numpy(network.strides_array().astype(np.float64)[layer_idx])
    with torch.no_grad():
        out = evaluate(dims, strides, torch.from_numpy(temporal.astype(np.float64)),
                       torch.from_numpy(spatial.astype(np.float64)), torch.from_numpy(rank),
                       torch.from_numpy(hw_rows))
    cycles, energy = out.cycles.numpy(), out.energy_uj.numpy()
    acc_words, sp_words = out.acc_words.numpy(), out.sp_words.numpy()
    counts = network.counts_array()
    results = []
    lo = 0
    for hw, samples, n in zip(hws, per_point, point_rows, strict=True):
        sl = slice(lo, lo + n)
        lo += n
        mappings, c, e = pick_best(samples, cycles[sl], energy[sl], objective)
        # The heuristic never exceeds pe_dim spatially; a tile that overflows one candidate of a
        # layer overflows all of them (all start from the same one-word tile), so check the fit.
        fit = (acc_words[sl] <= hw.acc_words_per_bank) & (sp_words[sl] <= hw.sp_words)
        value = float(network_objective(counts, c, e, objective)) if fit.all() else math.inf
        results.append((value, mappings, n))
    return results


def grid_search(network: Network | str, seed: int, *, pe_dims: Sequence[int] | None = None,
                sp_kb: Sequence[float] | None = None, acc_kb: Sequence[float] | None = None,
                objective: str = "edp", pe_dim: int | None = None,
                max_pe_dim: int | None = None, max_sp_kb: float | None = None,
                max_acc_kb: float | None = None, max_area_mm2: float | None = None,
                progress: bool = False, checkpoint_dir: Path | None = None) -> SearchResult:
    """Least network ``objective`` over the hardware grid with heuristic mappings ("grid").

    Deterministic and independent of ``seed`` (recorded only). Axes default to the power-of-two
    grid of spec §1.2; the hardware bounds (same meaning as every method's) drop the points
    outside them, and only the points inside count as samples. ``checkpoint_dir`` is unused
    (seconds per network).
    """
    seed = check_seed(seed)
    objective = check_objective(objective)
    network = as_network(network)
    bounds = HardwareBounds(pe_dim, max_pe_dim, max_sp_kb, max_acc_kb, max_area_mm2)
    del checkpoint_dir
    t0 = time.perf_counter()
    if pe_dim is not None and pe_dims is None:
        pe_dims = (pe_dim,)
    hws = [hw for hw in grid_points(pe_dims, sp_kb, acc_kb) if bounds.feasible(hw)]
    if not hws:
        raise ValueError(f"no grid point lies within the hardware bounds ({bounds})")
    traj = Trajectory()
    best: tuple[float, Hardware, list[Mapping]] | None = None
    evals = 0
    tried: list[dict[str, Any]] = []
    with single_threaded():
        batches = range(0, len(hws), POINTS_PER_BATCH)
        for lo in tqdm(batches, desc=f"grid {network.name}", disable=not progress):
            chunk = hws[lo:lo + POINTS_PER_BATCH]
            for i, (hw, (value, mappings, n)) in enumerate(
                    zip(chunk, score_points(network, chunk, objective), strict=True)):
                evals += n
                tried.append({**hw.to_dict(),
                              objective: value if math.isfinite(value) else None})
                traj.record(lo + i + 1, value)
                if math.isfinite(value) and (best is None or value < best[0]):
                    best = (value, hw, mappings)
    if best is None:
        raise ValueError(f"no grid point within the bounds can hold network {network.name!r} "
                         "with the heuristic mapper")
    infeasible = sum(t[objective] is None for t in tried)
    log.info("grid %s: %d points (%d infeasible), best %s %s %.4g", network.name, len(hws),
             infeasible, best[1], objective, best[0])
    config = {"pe_dims": sorted({h.pe_dim for h in hws}),
              "sp_kb": sorted({h.sp_kb for h in hws}), "acc_kb": sorted({h.acc_kb for h in hws}),
              "objective": objective, **bounds.to_dict()}
    return finish_result(method="grid", seed=seed, network=network, hardware=best[1],
                         mappings=best[2], samples=len(hws), model_evals=evals,
                         wall_s=time.perf_counter() - t0, trajectory=traj, config=config,
                         extra={"hardware_tried": tried, "infeasible_points": infeasible},
                         objective=objective)
