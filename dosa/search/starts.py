"""Open start-point generators for DOSA (the original used CoSA, which needs Gurobi).

* :func:`heuristic_mappings` - a constructive Gemmini mapper: fill the PE array with C and K,
  grow the accumulator tile until the buffers are full, try the three canonical DRAM orders and a
  few tile-growth priorities, keep the best per layer by the model. Deterministic, no sampling.
* :func:`best_of_random_mappings` - best of k random valid mappings per layer, by the model.
"""

from __future__ import annotations

import numpy as np
import torch

from dosa.hardware import Hardware
from dosa.mapping import (
    ACC_ORDER,
    DEFAULT_ORDER,
    DRAM_ORDERS,
    NUM_DIMS,
    NUM_LEVELS,
    Mapping,
    divisors,
    stack_mappings,
    tile_words,
)
from dosa.model import evaluate
from dosa.workload import Layer, Network

C, K, P, Q = 4, 5, 2, 3
#: Orders in which the accumulator tile is grown (dims as R..N indices).
GROWTH_PRIORITIES = ((0, 1, 4, 2, 3, 5, 6), (0, 1, 2, 3, 4, 5, 6), (0, 1, 5, 4, 2, 3, 6))


def _grow_tile(layer: Layer, hw: Hardware, csp: int, ksp: int, priority: tuple[int, ...],
               max_tile: int | None) -> np.ndarray:
    """Greedy accumulator-tile growth: raise each dim's L1 factor while the tile still fits."""
    dims = np.array(layer.dims)
    t1 = np.ones(NUM_DIMS, dtype=np.int64)
    left = dims.copy()
    left[C] //= csp
    left[K] //= ksp
    spatial = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial[1, C], spatial[2, K] = csp, ksp
    grown = True
    while grown:
        grown = False
        for d in priority:
            rest = left[d] // t1[d]
            if rest == 1:
                continue
            step = next(x for x in divisors(int(rest)) if x > 1)
            trial = t1.copy()
            trial[d] *= step
            if max_tile is not None and trial[d] > max_tile:
                continue
            temporal = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
            temporal[1] = trial
            temporal[3] = dims // (trial * spatial[1] * spatial[2])
            m = Mapping(temporal, spatial, np.zeros((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
                        + np.arange(NUM_DIMS))
            acc, sp = tile_words(m, layer)
            if acc <= hw.acc_words_per_bank and sp <= hw.sp_words:
                t1 = trial
                grown = True
    return t1


def heuristic_candidates(layer: Layer, hw: Hardware) -> list[Mapping]:
    """Candidate mappings of one layer that fit ``hw`` (all growth priorities x DRAM orders)."""
    csp = max(d for d in divisors(layer.C) if d <= hw.pe_dim)
    ksp = max(d for d in divisors(layer.K) if d <= hw.pe_dim)
    dims = np.array(layer.dims)
    out: list[Mapping] = []
    seen: set[tuple[int, ...]] = set()
    for priority in GROWTH_PRIORITIES:
        t1 = _grow_tile(layer, hw, csp, ksp, priority, None)
        if tuple(t1) in seen:
            continue
        seen.add(tuple(t1))
        temporal = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
        temporal[1] = t1
        spatial = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
        spatial[1, C], spatial[2, K] = csp, ksp
        temporal[3] = dims // (t1 * spatial[1] * spatial[2])
        for dram in DRAM_ORDERS.values():
            out.append(Mapping.from_factors(temporal, spatial,
                                            (DEFAULT_ORDER, ACC_ORDER, DEFAULT_ORDER, dram)))
    return out


def pick_best_per_layer(network: Network, candidates: list[list[Mapping]],
                        hw: Hardware) -> tuple[list[Mapping], int]:
    """Per layer, the candidate with the lowest cycles x energy; returns (mappings, evals)."""
    flat = [m for cands in candidates for m in cands]
    owner = np.repeat(np.arange(len(candidates)), [len(c) for c in candidates])
    layers = [network.layers[i] for i in owner]
    dims = torch.tensor([lay.dims for lay in layers], dtype=torch.float64)
    strides = torch.tensor([lay.strides for lay in layers], dtype=torch.float64)
    t, s, r = stack_mappings(flat)
    hw_t = torch.tensor([hw.as_tuple()], dtype=torch.float64).expand(len(flat), 3)
    with torch.no_grad():
        out = evaluate(dims, strides, t, s, r, hw_t)
    edp = (out.cycles * out.energy_uj).numpy()
    best = []
    for i in range(len(candidates)):
        idx = np.nonzero(owner == i)[0]
        best.append(flat[int(idx[np.argmin(edp[idx])])])
    return best, len(flat)


def heuristic_mappings(network: Network, hw: Hardware) -> list[Mapping]:
    """One valid mapping per layer that fits ``hw``, from the constructive Gemmini mapper."""
    best, _ = pick_best_per_layer(network, [heuristic_candidates(lay, hw)
                                            for lay in network.layers], hw)
    return best


def best_of_random_mappings(network: Network, hw: Hardware, k: int,
                            rng: np.random.Generator) -> tuple[list[Mapping], int]:
    """Best of ``k`` random valid mappings per layer on ``hw``; returns (mappings, evals)."""
    from dosa.search.sampler import sample_mappings, to_mappings

    candidates = [to_mappings(sample_mappings(lay, hw, k, rng)) for lay in network.layers]
    return pick_best_per_layer(network, candidates, hw)
