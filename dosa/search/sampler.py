"""Random hardware and random valid mappings of the legal Gemmini-TL mapspace.

Used by the random-search and Bayesian-optimisation baselines (spec §6) and for DOSA's random
start hardware (spec §1.2). The mapping sampler is the stand-in for Timeloop's random mapper with
``mapspace_real_gemmini.yaml`` / ``mapspace_arch_baseline.yaml`` (spec §1.4):

* spatial fan-out only for C at L1 (Csp) and K at L2 (Ksp), each <= ``pe_dim``;
* registers (L0): temporal P only (single-entry weight register);
* accumulator (L1): any temporal factors, loop order fixed to :data:`ACC_ORDER`;
* scratchpad (L2): no temporal loops;
* DRAM (L3): the remaining factors, loop order a uniformly random permutation;
* the accumulator tile must fit one bank and the scratchpad tile the scratchpad.

Like Timeloop's index factorisation, each dim's factorisation over its legal slots is drawn
uniformly among all its ordered factorisations, independently per dim, and draws that do not fit
the hardware are rejected, so accepted mappings are uniform over the valid mapspace. Per-dim
necessary conditions (a single dim's tile term already too big for a buffer) are applied to the
factorisation tables before drawing, which keeps rejection cheap on small hardware without
changing that distribution. Everything is vectorised over the batch; the only Python loops run
over the 7 dims.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from dosa.hardware import Hardware
from dosa.mapping import (
    ACC_ORDER,
    DEFAULT_ORDER,
    NUM_DIMS,
    NUM_LEVELS,
    Mapping,
    divisors,
    order_to_rank,
)
from dosa.model import capacities
from dosa.search.options import (
    LOG2_ACC_KB_RANGE,
    LOG2_PE_RANGE,
    LOG2_SP_KB_RANGE,
    HardwareBounds,
    positive_int,
)
from dosa.workload import Layer

log = logging.getLogger(__name__)

R, S, P, Q, C, K, N = range(NUM_DIMS)

# The grid's log2 ranges (LOG2_*_RANGE, spec §1.2) live in dosa.search.options next to
# HardwareBounds and are re-exported here, where they have always been imported from.

#: Loop orders (innermost first) of the fixed-order levels. L0 and L2 hold at most one loop
#: (P at L0) or none, so their order never matters; L1 is Gemmini's accumulator order.
L0_ORDER = "PQRSCKN"
L2_ORDER = DEFAULT_ORDER

# Slots a dim's factors may go to, as (block, level): block 0 = temporal, 1 = spatial. DRAM
# (temporal, L3) is implicit: it takes the last part of every split.
_SLOTS: dict[int, tuple[tuple[int, int], ...]] = {
    R: ((0, 1),),
    S: ((0, 1),),
    P: ((0, 0), (0, 1)),
    Q: ((0, 1),),
    C: ((1, 1), (0, 1)),
    K: ((1, 2), (0, 1)),
    N: ((0, 1),),
}

#: Largest batch drawn in one rejection round (memory: ~1 KB per row in the model).
MAX_ROUND = 200_000
DEFAULT_MAX_TRIES = 50


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread inside the block, restoring the settings after.

    The baselines work on small batches (thousands of rows, 100x100 GP matrices) where extra
    threads only add synchronisation; on a busy 2-core machine spinning threads made them 3-30x
    slower. Scoped, so the caller's settings (e.g. for DOSA's large batches) are untouched.
    """
    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(torch_threads)


def random_hardware(rng: np.random.Generator, n: int, *, pe_dim: int | None = None
                    ) -> list[Hardware]:
    """``n`` random Gemmini-TL configs: pe_dim = 2^U{1..7}, sp/acc KB = 2^U{0..11} (spec §1.2).

    ``pe_dim`` fixes the array side (FireSim mode draws only the buffer sizes).
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if pe_dim is not None and (isinstance(pe_dim, bool) or not isinstance(pe_dim, int | np.integer)
                               or pe_dim < 1):
        raise ValueError(f"pe_dim must be None or an integer >= 1, got {pe_dim!r}")
    pe = rng.integers(LOG2_PE_RANGE[0], LOG2_PE_RANGE[1] + 1, size=n)
    sp = rng.integers(LOG2_SP_KB_RANGE[0], LOG2_SP_KB_RANGE[1] + 1, size=n)
    acc = rng.integers(LOG2_ACC_KB_RANGE[0], LOG2_ACC_KB_RANGE[1] + 1, size=n)
    return [Hardware(int(pe_dim) if pe_dim is not None else 2 ** int(p), float(2 ** int(s)),
                     float(2 ** int(a))) for p, s, a in zip(pe, sp, acc, strict=True)]


def sample_hardware(rng: np.random.Generator, n: int, bounds: HardwareBounds | None = None
                    ) -> list[Hardware]:
    """``n`` random grid configs inside ``bounds``, uniform over the feasible grid points.

    When the bounds exclude no grid point (none given, or e.g. max_pe_dim=128) this is exactly
    :func:`random_hardware` (same draws from ``rng``), so results stored before bounds existed
    stay reproducible. Otherwise it draws uniform indices into
    :meth:`HardwareBounds.candidates`: the same uniform distribution over the grid, restricted
    to the feasible points, with no rejection loop to get stuck on tight bounds. Raises
    ValueError (naming the bounds) when no grid point fits, before drawing anything.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    bounds = bounds if bounds is not None else HardwareBounds()
    candidates = bounds.require_candidates()
    if not bounds.excludes_grid_points():
        return random_hardware(rng, n, pe_dim=bounds.pe_dim)
    return [candidates[int(i)] for i in rng.integers(len(candidates), size=n)]


@lru_cache(maxsize=1024)
def factor_table(size: int, k: int) -> np.ndarray:
    """All ordered ``k``-tuples of factors whose product divides ``size`` -> int64 [M, k].

    These are the factorisations of a dim over ``k`` inner slots; DRAM takes the quotient.
    Read-only because it is cached.
    """
    rows: list[tuple[int, ...]] = [()]
    for _ in range(k):
        rows = [(*row, f) for row in rows for f in divisors(size // math.prod(row))]
    table = np.array(rows, dtype=np.int64).reshape(len(rows), k)
    table.setflags(write=False)
    return table


def _dim_tables(layer: Layer, hw: Hardware) -> list[np.ndarray]:
    """Per dim, the factorisations over its legal slots that pass per-dim necessary conditions.

    A tile is a product of per-dim terms that are all >= 1, so no single term may exceed the
    buffer on its own (and spatial factors may not exceed pe_dim). Dropping those rows up front
    removes the bulk of the rejections on small hardware without changing the distribution of
    the accepted mappings: the full, coupled check still runs on every draw.
    """
    acc_w, sp_w, pe = hw.acc_words_per_bank, hw.sp_words, hw.pe_dim
    ws, hs = layer.strides
    tables = []
    for d, size in enumerate(layer.dims):
        tab = factor_table(size, len(_SLOTS[d]))
        inner = tab.prod(axis=1)
        if d == P:
            ok = (inner <= acc_w) & ((inner - 1) * ws + 1 <= sp_w)
        elif d == Q:
            ok = (inner <= acc_w) & ((inner - 1) * hs + 1 <= sp_w)
        elif d == C:
            ok = (tab[:, 0] <= pe) & (inner <= sp_w)
        elif d == K:
            ok = (tab[:, 0] <= pe) & (tab[:, 1] <= acc_w) & (inner <= sp_w)
        elif d == N:
            ok = (inner <= acc_w) & (inner <= sp_w)
        else:  # R, S
            ok = inner <= sp_w
        tables.append(tab[ok])
    return tables


#: The loop ranks of every sampled mapping before its DRAM order is drawn (read-only).
FIXED_RANKS = np.stack([order_to_rank(order) for order in
                        (L0_ORDER, ACC_ORDER, L2_ORDER, DEFAULT_ORDER)]).astype(np.int64)
FIXED_RANKS.setflags(write=False)


def place_factors(temporal: np.ndarray, spatial: np.ndarray, d: int, size: int,
                  rows: np.ndarray, at: slice | np.ndarray = slice(None)) -> None:
    """Write factorisations of dim ``d`` (``rows``: one column per legal slot, as in
    :func:`_dim_tables`) into the mappings ``at`` of ``temporal``/``spatial`` [n, 4, 7], DRAM
    taking the quotient of the dim's ``size``: the one place that knows the slot layout."""
    for i, (block, level) in enumerate(_SLOTS[d]):
        (temporal if block == 0 else spatial)[at, level, d] = rows[:, i]
    temporal[at, 3, d] = size // rows.prod(axis=1)


def draw_mappings(layer: Layer, n: int, rng: np.random.Generator,
                  tables: list[np.ndarray] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random legal mappings of ``layer`` ignoring buffer sizes (no rejection).

    Each dim's factorisation is uniform over ``tables[d]`` (default: all factorisations over the
    dim's legal slots); the DRAM loop order is a uniform random permutation.
    """
    if tables is None:
        tables = [factor_table(size, len(_SLOTS[d])) for d, size in enumerate(layer.dims)]
    temporal = np.ones((n, NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial = np.ones((n, NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    for d, size in enumerate(layer.dims):
        place_factors(temporal, spatial, d, size, tables[d][rng.integers(len(tables[d]), size=n)])
    rank = np.broadcast_to(FIXED_RANKS, (n, NUM_LEVELS, NUM_DIMS)).copy()
    rank[:, 3] = rng.permuted(np.broadcast_to(np.arange(NUM_DIMS), (n, NUM_DIMS)), axis=1)
    return temporal, spatial, rank


def fits(layer: Layer, hw: Hardware, temporal: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """Boolean [n]: spatial factors <= pe_dim and both tiles fit ``hw`` (batched model)."""
    n = temporal.shape[0]
    dims = torch.tensor([layer.dims], dtype=torch.float64).expand(n, NUM_DIMS)
    strides = torch.tensor([layer.strides], dtype=torch.float64).expand(n, 2)
    with torch.no_grad():
        caps = capacities(dims, strides, torch.from_numpy(temporal.astype(np.float64)),
                          torch.from_numpy(spatial.astype(np.float64)))
    acc_words = caps["o1"].numpy()
    sp_words = (caps["w2"] + caps["i2"]).numpy()
    return ((spatial[:, 1, C] <= hw.pe_dim) & (spatial[:, 2, K] <= hw.pe_dim)
            & (acc_words <= hw.acc_words_per_bank) & (sp_words <= hw.sp_words))


def all_dram_mapping(layer: Layer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mapping with every loop at DRAM (WS order): tiles of one word, fits any hw >= 1 KB."""
    temporal = np.ones((1, NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    temporal[0, 3] = layer.dims
    spatial = np.ones_like(temporal)
    rank = FIXED_RANKS[None].copy()
    rank[0, 3] = order_to_rank("PQNRSCK")
    return temporal, spatial, rank


def sample_mappings(layer: Layer, hw: Hardware, n: int, rng: np.random.Generator, *,
                    max_tries: int = DEFAULT_MAX_TRIES, register_p: bool = True
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random valid mappings of ``layer`` on ``hw``: (temporal, spatial, rank) [m, 4, 7].

    Rejection sampling in at most ``max_tries`` rounds; each round draws enough candidates for
    the acceptance rate seen so far. If fewer than ``n`` valid mappings turn up (tiny hardware,
    huge layer), the all-at-DRAM mapping is appended and a warning logged, so ``m`` is between
    1 and ``n``. The result depends only on ``rng``'s state.

    ``register_p=False`` samples the original's mapspace (``mapspace_real_gemmini.yaml``), which
    has no temporal loop at the registers: P's factorisation table keeps only rows with a
    register factor of 1, so the draw stays uniform over that smaller mapspace.
    """
    positive_int("n", n)
    positive_int("max_tries", max_tries)
    tables = _dim_tables(layer, hw)
    if not register_p:
        tables[P] = tables[P][tables[P][:, 0] == 1]  # column 0 of P's table: register factor
    if any(len(tab) == 0 for tab in tables):  # cannot happen for hw >= 1 word per buffer
        raise ValueError(f"hardware {hw} cannot hold even a one-word tile of layer {layer.name!r}")
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    have = drawn = accepted = 0
    for _ in range(max_tries):
        need = n - have
        rate = (accepted + 1) / (drawn + 2)  # Laplace estimate; optimistic on round one
        batch = int(min(MAX_ROUND, max(need, math.ceil(1.2 * need / rate))))
        t, s, r = draw_mappings(layer, batch, rng, tables)
        ok = fits(layer, hw, t, s)
        drawn += batch
        accepted += int(ok.sum())
        idx = np.flatnonzero(ok)[:need]
        if idx.size:
            found.append((t[idx], s[idx], r[idx]))
            have += idx.size
        if have >= n:
            break
    if have < n:
        log.warning("layer %s on %s: only %d of %d random mappings fit after %d draws; adding "
                    "the all-at-DRAM mapping", layer.name, hw, have, n, drawn)
        found.append(all_dram_mapping(layer))
    temporal, spatial, rank = (np.concatenate(x) for x in zip(*found, strict=True))
    return temporal, spatial, rank


def to_mappings(arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[Mapping]:
    """(temporal, spatial, rank) [m, 4, 7] arrays -> ``m`` :class:`Mapping` objects."""
    temporal, spatial, rank = arrays
    return [Mapping(t, s, r) for t, s, r in zip(temporal, spatial, rank, strict=True)]
