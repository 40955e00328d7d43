"""Random-search baseline of Fig. 7 (spec §6.1).

For each of ``num_hw`` random hardware configs, draw ``mappings_per_layer`` random valid mappings
per layer (the stand-in for Timeloop's random mapper), keep per layer the mapping of least
per-layer EDP (cycles x energy, as the original does: not network-optimal), and score the network
as (Σ count·cycles)(Σ count·energy) on that hardware. The best hardware wins. The hardware is the
sampled one, not the minimal hardware of the chosen mappings. Hardware bounds (``max_*``, as in
DOSA) restrict the draws to the grid points inside them, so the winner always satisfies them.
With ``objective="latency"`` or ``"energy"`` both choices minimise that objective instead (per
layer cycles or energy; network Σ count·cycles or Σ count·energy).

Sample accounting (paper): one hardware config with its random mappings counts as
``mappings_per_layer`` samples (1000 in the paper). ``model_evals`` counts the layer-mapping
evaluations actually made (fewer than layers x mappings_per_layer when a small hardware config
leaves few valid mappings).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dosa.evaluation import network_objective, objective_of
from dosa.hardware import Hardware
from dosa.mapping import Mapping
from dosa.model import evaluate
from dosa.search.options import HardwareBounds, check_objective, check_seed, positive_int
from dosa.search.result import SearchResult, Trajectory, finish_result
from dosa.search.sampler import sample_hardware, sample_mappings, single_threaded
from dosa.workload import Network, as_network

log = logging.getLogger(__name__)


Samples = list[tuple[np.ndarray, np.ndarray, np.ndarray]]
"""Per layer, candidate mappings as (temporal, spatial, rank) int arrays [m_l, 4, 7]."""


def evaluate_samples(network: Network, hw: Hardware, samples: Samples
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Cycles and energy (µJ) of every layer's candidates on ``hw``, in one batched model call.

    Returns two flat arrays ordered layer by layer (layer 0's m_0 rows first).
    """
    sizes = [len(t) for t, _, _ in samples]
    temporal = np.concatenate([t for t, _, _ in samples]).astype(np.float64)
    spatial = np.concatenate([s for _, s, _ in samples]).astype(np.float64)
    rank = np.concatenate([r for _, _, r in samples])
    layer_idx = np.repeat(np.arange(len(samples)), sizes)
    dims = torch.from_numpy(network.dims_array().astype(np.float64)[layer_idx])
    strides = torch.from_numpy(network.strides_array().astype(np.float64)[layer_idx])
    hw_t = torch.tensor([hw.as_tuple()], dtype=torch.float64).expand(len(layer_idx), 3)
    with torch.no_grad():
        out = evaluate(dims, strides, torch.from_numpy(temporal), torch.from_numpy(spatial),
                       torch.from_numpy(rank), hw_t)
    cycles, energy = out.cycles.numpy(), out.energy_uj.numpy()
    if not (np.all(np.isfinite(cycles)) and np.all(np.isfinite(energy))):
        raise FloatingPointError(f"model returned non-finite cycles/energy on {hw}")
    return cycles, energy


def pick_best(samples: Samples, cycles: np.ndarray, energy: np.ndarray, objective: str = "edp"
              ) -> tuple[list[Mapping], np.ndarray, np.ndarray]:
    """Per layer, the candidate of least per-layer ``objective`` (EDP: cycles x energy; first
    one on ties).

    ``cycles``/``energy`` are flat, ordered as :func:`evaluate_samples` returns them.
    """
    sizes = [len(t) for t, _, _ in samples]
    layer_idx = np.repeat(np.arange(len(samples)), sizes)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    # Segment-wise argmin without a Python loop over mappings: sort by (layer, objective),
    # take firsts.
    order = np.lexsort((objective_of(objective, cycles, energy), layer_idx))
    best = order[np.searchsorted(layer_idx[order], np.arange(len(samples)))]
    local = best - starts
    mappings = [Mapping(t[i], s[i], r[i]) for (t, s, r), i in zip(samples, local, strict=True)]
    return mappings, cycles[best], energy[best]


def hardware_loop(network: Network, hws: list[Hardware], mappings_per_layer: int,
                  rng: np.random.Generator, *, register_p: bool = True, desc: str,
                  progress: bool = False, objective: str = "edp"
                  ) -> tuple[tuple[float, Hardware, list[Mapping]], int, Trajectory,
                             list[dict[str, float]]]:
    """The random baselines' loop: per hardware, ``mappings_per_layer`` random mappings per
    layer, per-layer least-``objective`` choice, network ``objective``; the best hardware wins.

    Returns ((objective value, hardware, mappings) of the best, model evaluations, trajectory
    of the objective, and every tried hardware with its value under the key ``objective``).
    ``register_p=False`` samples the original mapspace.
    """
    traj = Trajectory()
    best: tuple[float, Hardware, list[Mapping]] | None = None
    evals = 0
    tried: list[dict[str, float]] = []
    with single_threaded():
        for i, hw in enumerate(tqdm(hws, desc=desc, disable=not progress)):
            samples = [sample_mappings(layer, hw, mappings_per_layer, rng, register_p=register_p)
                       for layer in network]
            cycles, energy = evaluate_samples(network, hw, samples)
            evals += len(cycles)
            mappings, cycles, energy = pick_best(samples, cycles, energy, objective)
            value = float(network_objective(network.counts_array(), cycles, energy, objective))
            log.debug("%s hw %d/%d %s: network %s %.4g", desc, i + 1, len(hws), hw, objective,
                      value)
            traj.record((i + 1) * mappings_per_layer, value)
            tried.append({**hw.to_dict(), objective: value})
            if best is None or value < best[0]:
                best = (value, hw, mappings)
    if best is None:
        raise ValueError("no hardware to search")
    return best, evals, traj, tried


def random_search(network: Network | str, seed: int, *, num_hw: int = 10,
                  mappings_per_layer: int = 1000, pe_dim: int | None = None,
                  max_pe_dim: int | None = None, max_sp_kb: float | None = None,
                  max_acc_kb: float | None = None, max_area_mm2: float | None = None,
                  objective: str = "edp", progress: bool = False,
                  checkpoint_dir: Path | None = None) -> SearchResult:
    """Random hardware x random mappings baseline (spec §6.1); deterministic in ``seed``.

    ``network`` is a :class:`Network` or a built-in name / YAML path. ``pe_dim`` fixes the PE
    array side (FireSim mode); ``max_pe_dim``, ``max_sp_kb``, ``max_acc_kb`` and
    ``max_area_mm2`` bound the hardware as in DOSA: only grid points inside the bounds are
    drawn (:func:`~dosa.search.sampler.sample_hardware`), and a ValueError says so at once when
    none fits. ``objective`` (edp, latency, energy) is what both the per-layer mapping choice
    and the hardware choice minimise; the draws do not depend on it, so at one seed every
    objective sees the same hardware and mappings. ``checkpoint_dir`` is accepted for the
    common method signature but unused: a full run takes seconds.
    """
    seed = check_seed(seed)
    network = as_network(network)
    num_hw = positive_int("num_hw", num_hw)
    mappings_per_layer = positive_int("mappings_per_layer", mappings_per_layer)
    objective = check_objective(objective)
    bounds = HardwareBounds(pe_dim=pe_dim, max_pe_dim=max_pe_dim, max_sp_kb=max_sp_kb,
                            max_acc_kb=max_acc_kb, max_area_mm2=max_area_mm2)
    del checkpoint_dir
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    hws = sample_hardware(rng, num_hw, bounds)
    best, evals, traj, tried = hardware_loop(network, hws, mappings_per_layer, rng,
                                             desc=f"random {network.name}", progress=progress,
                                             objective=objective)
    config = {"num_hw": num_hw, "mappings_per_layer": mappings_per_layer, **bounds.to_dict(),
              "objective": objective}
    return finish_result(method="random", seed=seed, network=network, hardware=best[1],
                         mappings=best[2], samples=num_hw * mappings_per_layer,
                         model_evals=evals, wall_s=time.perf_counter() - t0, trajectory=traj,
                         config=config, extra={"hardware_tried": tried}, objective=objective)
