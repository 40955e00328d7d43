"""Open start-point generators for DOSA (the original used CoSA, which needs Gurobi).

* :func:`heuristic_mappings` - a constructive Gemmini mapper: fill the PE array with C and K,
  grow the accumulator tile until the buffers are full, try the three canonical DRAM orders and a
  few tile-growth priorities, keep the best per layer by the model. Deterministic, no sampling.
* :func:`best_of_random_mappings` - best of k random valid mappings per layer, by the model.
* :func:`milp_mappings` - a CoSA-style mixed-integer program (prime factors placed by HiGHS).
"""

from __future__ import annotations

import functools

import numpy as np

from dosa.hardware import Hardware
from dosa.mapping import (
    ACC_ORDER,
    DEFAULT_ORDER,
    DRAM_ORDERS,
    NUM_DIMS,
    NUM_LEVELS,
    Mapping,
    divisors,
    order_to_rank,
)
from dosa.search.random_search import evaluate_samples, pick_best
from dosa.search.sampler import sample_mappings
from dosa.workload import Layer, Network

P, Q, C, K = 2, 3, 4, 5
#: Per-level ranks of the heuristic's loop orders, one per canonical DRAM order.
_HEURISTIC_RANKS = np.array([[order_to_rank(o) for o in (DEFAULT_ORDER, ACC_ORDER,
                                                           DEFAULT_ORDER, dram)]
                             for dram in DRAM_ORDERS.values()])
#: Orders in which the accumulator tile is grown (dims as R..N indices).
GROWTH_PRIORITIES = ((0, 1, 4, 2, 3, 5, 6), (0, 1, 2, 3, 4, 5, 6), (0, 1, 5, 4, 2, 3, 6))


def grown_tile_words(t1: list[int], csp: int, ksp: int, strides: tuple[int, int]
                     ) -> tuple[int, int]:
    """(accumulator words per bank, scratchpad words) of the heuristic's mapping shape.

    The same numbers as :func:`dosa.mapping.tile_words` for a mapping whose only non-DRAM
    factors are the L1 temporal factors ``t1`` and the spatial C (``csp``, L1) and K (``ksp``,
    L2), in plain integers: the tile growth asks this thousands of times per hardware point,
    where building a Mapping each time dominated the grid's run time.
    """
    r, s_, p, q, c, k, n = t1
    ws, hs = strides
    acc = p * q * k * n
    weights = r * s_ * c * csp * k * ksp
    inputs = c * csp * n * ((p - 1) * ws + r) * ((q - 1) * hs + s_)
    return acc, weights + inputs


@functools.lru_cache(maxsize=1 << 17)
def _grow_tile(dims: tuple[int, ...], strides: tuple[int, int], acc_cap: float, sp_cap: float,
               csp: int, ksp: int, priority: tuple[int, ...]) -> tuple[int, ...]:
    """Greedy accumulator-tile growth: raise each dim's L1 factor while the tile still fits.

    Memoised on plain values: a pure function of its arguments, which repeat across the grid's
    points and across the runs of one process (the grid screen asks it ~10^5 times).
    """
    t1 = [1] * NUM_DIMS
    left = list(dims)
    left[C] //= csp
    left[K] //= ksp
    grown = True
    while grown:
        grown = False
        for d in priority:
            rest = left[d] // t1[d]
            if rest == 1:
                continue
            step = next(x for x in divisors(rest) if x > 1)
            trial = list(t1)
            trial[d] *= step
            acc, sp = grown_tile_words(trial, csp, ksp, strides)
            if acc <= acc_cap and sp <= sp_cap:
                t1 = trial
                grown = True
    return tuple(t1)


def heuristic_tables(layer: Layer, hw: Hardware) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The candidates of :func:`heuristic_candidates` as stacked (temporal, spatial, rank)
    tables [m, 4, 7], for callers that score many points (no Mapping objects built)."""
    csp = max(d for d in divisors(layer.C) if d <= hw.pe_dim)
    ksp = max(d for d in divisors(layer.K) if d <= hw.pe_dim)
    dims = np.array(layer.dims)
    tiles = list(dict.fromkeys(_grow_tile(layer.dims, layer.strides, hw.acc_words_per_bank,
                                          hw.sp_words, csp, ksp, priority)
                               for priority in GROWTH_PRIORITIES))
    n = len(tiles) * len(DRAM_ORDERS)
    temporal = np.ones((n, NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial = np.ones((n, NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial[:, 1, C], spatial[:, 2, K] = csp, ksp
    t1 = np.repeat(np.array(tiles, dtype=np.int64), len(DRAM_ORDERS), axis=0)
    temporal[:, 1] = t1
    temporal[:, 3] = dims // (t1 * spatial[:, 1] * spatial[:, 2])
    rank = np.tile(_HEURISTIC_RANKS, (len(tiles), 1, 1))
    return temporal, spatial, rank


def heuristic_candidates(layer: Layer, hw: Hardware) -> list[Mapping]:
    """Candidate mappings of one layer that fit ``hw`` (all growth priorities x DRAM orders)."""
    temporal, spatial, rank = heuristic_tables(layer, hw)
    return [Mapping(t, s, r) for t, s, r in zip(temporal, spatial, rank, strict=True)]




def _best_per_layer(network: Network, hw: Hardware,
                    samples: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[Mapping]:
    """Per layer, the candidate (rows of its (temporal, spatial, rank) tables) of least
    cycles x energy."""
    cycles, energy = evaluate_samples(network, hw, samples)
    return pick_best(samples, cycles, energy)[0]


def heuristic_fits(network: Network, hw: Hardware) -> bool:
    """Whether the heuristic mapper can place every layer on ``hw``: its smallest tile (one
    word per PE, everything else at DRAM) fits the scratchpad and one accumulator bank."""
    for layer in network.layers:
        csp = max(d for d in divisors(layer.C) if d <= hw.pe_dim)
        ksp = max(d for d in divisors(layer.K) if d <= hw.pe_dim)
        acc, sp = grown_tile_words([1] * NUM_DIMS, csp, ksp, layer.strides)
        if acc > hw.acc_words_per_bank or sp > hw.sp_words:
            return False
    return True


def heuristic_mappings(network: Network, hw: Hardware) -> list[Mapping]:
    """One valid mapping per layer that fits ``hw``, from the constructive Gemmini mapper."""
    return _best_per_layer(network, hw, [heuristic_tables(lay, hw) for lay in network.layers])


def best_of_random_mappings(network: Network, hw: Hardware, k: int,
                            rng: np.random.Generator) -> tuple[list[Mapping], int]:
    """Best of ``k`` random valid mappings per layer on ``hw``; returns (mappings, evals)."""
    samples = [sample_mappings(lay, hw, k, rng) for lay in network.layers]
    cycles, energy = evaluate_samples(network, hw, samples)
    return pick_best(samples, cycles, energy)[0], len(cycles)


# ----------------------------------------------------------------------------------------------
# A CoSA-style mixed-integer start mapper on an open solver (HiGHS through SciPy)
# ----------------------------------------------------------------------------------------------
def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


#: Where a prime factor of each dim may go: L0 (registers, P only), L1 temporal, the two
#: spatial fan-outs (C over rows, K over columns), or DRAM.
_SLOTS = ("L0", "L1", "Csp", "Ksp", "DRAM")
_ALLOWED = {0: ("L1", "DRAM"), 1: ("L1", "DRAM"), 2: ("L0", "L1", "DRAM"), 3: ("L1", "DRAM"),
            4: ("L1", "Csp", "DRAM"), 5: ("L1", "Ksp", "DRAM"), 6: ("L1", "DRAM")}


def milp_mapping(layer: Layer, hw: Hardware, *, spatial_weight: float = 2.0) -> Mapping:
    """CoSA-style mapping: assign every prime factor of every dim to a level by a MILP.

    As in CoSA (Huang et al., ISCA 2021) the products become sums of logs, so tile sizes are
    linear in binary placement variables: each prime factor goes to exactly one slot; the
    spatial fan-outs fit the pe_dim x pe_dim array; the output tile fits one accumulator bank;
    the weight and input tiles each fit half of the scratchpad (the input tile bounded by
    stride x P x R per axis, an over-estimate of the sliding window). The objective maximises
    ``spatial_weight`` x log(PE utilisation) + log(tile sizes) (more reuse below DRAM). Solved
    with SciPy's HiGHS ``milp``; the DRAM loop order is then the best canonical one by the model.
    Falls back to the heuristic mapper if the rounded result does not fit (it always should).
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    factors = [(d, p) for d in range(NUM_DIMS) for p in _prime_factors(layer.dims[d])]
    var = [(i, s) for i, (d, _) in enumerate(factors) for s in _ALLOWED[d]]
    n = len(var)
    if n == 0:  # a 1x1x...x1 layer: nothing to place
        return heuristic_candidates(layer, hw)[0]
    logp = np.array([np.log(factors[i][1]) for i, _ in var])
    slot = [s for _, s in var]
    dim = [factors[i][0] for i, _ in var]

    def row(pred: object) -> np.ndarray:
        return np.array([logp[k] if pred(dim[k], slot[k]) else 0.0 for k in range(n)])

    rows, upper = [], []
    one_hot = np.zeros((len(factors), n))
    for k, (i, _) in enumerate(var):
        one_hot[i, k] = 1.0
    rows.append(row(lambda d, s: s == "Csp"))
    upper.append(np.log(hw.pe_dim))
    rows.append(row(lambda d, s: s == "Ksp"))
    upper.append(np.log(hw.pe_dim))
    rows.append(row(lambda d, s: d in (P, Q, K, 6) and s in ("L0", "L1")))
    upper.append(np.log(hw.acc_words_per_bank))
    rows.append(row(lambda d, s: d in (0, 1, C, K) and s in ("L1", "Csp", "Ksp")))
    upper.append(np.log(hw.sp_words / 2))
    rows.append(row(lambda d, s: d in (0, 1, P, Q, C, 6) and s in ("L0", "L1", "Csp")))
    upper.append(np.log(hw.sp_words / 2) - np.log(layer.Wstride * layer.Hstride))
    objective = -row(lambda d, s: s in ("Csp", "Ksp")) * spatial_weight \
        - row(lambda d, s: s in ("L0", "L1", "Csp", "Ksp"))
    res = milp(objective, integrality=np.ones(n), bounds=Bounds(0, 1),
               constraints=[LinearConstraint(one_hot, 1, 1),
                            LinearConstraint(np.array(rows), -np.inf, np.array(upper) + 1e-9)])
    if res.x is None:  # infeasible only if not even the all-DRAM mapping fits; keep it simple
        return heuristic_candidates(layer, hw)[0]
    temporal = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    where = {"L0": (temporal, 0), "L1": (temporal, 1), "Csp": (spatial, 1), "Ksp": (spatial, 2),
             "DRAM": (temporal, 3)}
    for k in np.nonzero(np.round(res.x) > 0.5)[0]:
        table, level = where[slot[k]]
        table[level, dim[k]] *= factors[var[k][0]][1]
    candidates = [Mapping.from_factors(temporal, spatial,
                                       (DEFAULT_ORDER, ACC_ORDER, DEFAULT_ORDER, dram))
                  for dram in DRAM_ORDERS.values()]
    fits = [m for m in candidates if m.is_valid(layer, hw)]
    return fits[0] if fits else heuristic_candidates(layer, hw)[0]


def milp_mappings(network: Network, hw: Hardware) -> list[Mapping]:
    """One MILP mapping per layer (best canonical DRAM order by the model)."""
    candidates = []
    for lay in network.layers:
        m = milp_mapping(lay, hw)
        candidates.append([m.with_order(3, o) for o in DRAM_ORDERS.values()])
    return _best_per_layer(network, hw, [tuple(np.stack([getattr(m, f) for m in cands])
                                               for f in ("temporal", "spatial", "rank"))
                                         for cands in candidates])
