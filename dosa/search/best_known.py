"""Best-known design per workload ("best-known"): a deliberately expensive, run-once search.

The yardstick every method's median network EDP is compared with, inside the Fig. 7 design
space (pe_dim <= 128, scratchpad and accumulator <= 2048 KB; any integer pe_dim and any buffer
size, as DOSA's derived hardware). Network EDP is (Σ count·cycles)·(Σ count·energy), which
does not separate over layers, so mappings are always chosen by *network* EDP. The stages:

1. **Grid.** Every power-of-two hardware point inside the bounds is scored with the heuristic
   mapper, exactly as :func:`dosa.search.grid.grid_search` does (its own batched helper); the
   ``top_points`` best points are kept.
2. **Mappings per point** (:meth:`_Search.optimise`). Per layer a candidate pool: the grid's
   heuristic mapping (the start), the heuristic mapper's candidates, ``random_per_layer``
   random valid mappings (:func:`~dosa.search.sampler.sample_mappings`, ``register_p=True``)
   and the archive of good candidates found on earlier points, all evaluated in one batched
   model call. One mapping per layer is chosen by :func:`coordinate_descent`: each layer in
   turn takes the candidate minimising (C - n_i c_i + n_i c)(E - n_i e_i + n_i e) until a full
   pass changes nothing; it runs from several starts (the given start, per-layer EDP best,
   least cycles, least energy, a sweep of cycles/energy trade-offs) and the best fixed point
   wins (:func:`choose`). Then ``local_steps`` steps of local search: per layer the
   :data:`BEAM` best not yet expanded candidates (by network EDP with the other layers fixed)
   are expanded into every re-factorisation of one dim or of a pair of dims over the legal
   loop slots, every order of their DRAM loops, and :data:`REDRAW_ROWS` random re-draws of
   three dims (:func:`_block_neighbours`, :func:`_redraw_neighbours`); the new fitting
   candidates are evaluated in one batch and the descent re-runs from the current choice.
   Pools keep each layer's cycles/energy Pareto front (on fixed hardware only Pareto-optimal
   candidates can be in a network-EDP optimum) plus its :data:`KEEP_PER_LAYER` best by network
   EDP, so the search keeps a little diversity.
3. **Polish** (:func:`polished_hardware`). The hardware the chosen mappings need - scratchpad
   and accumulator in whole KB, as DOSA's evaluation-mode min-HW, and either the widest
   pe_dim the accumulator bound allows (for given mappings a wider array only adds scratchpad
   bandwidth) or the narrowest the mappings need - replaces the point when the network EDP is
   not worse (ties: the smaller area). Smaller buffers cost less energy per access.
4. **Refinement** (:func:`_refine`). From the ``refine_starts`` best polished designs, a
   pattern search over the scratchpad and accumulator sizes: each neighbour (KB times
   2^(±step)) gets re-optimised mappings (warm-started from the current best) and is polished;
   the best improving neighbour becomes the centre, else the step halves, from 1/2 octave for
   ``rounds`` step sizes. This is what trades one layer's larger tile against every layer's
   access energy, and where the non-power-of-two buffer sizes come from. The winner's
   mappings are re-optimised once more with ``final_local_steps`` local-search steps.

Every stage starts from the previous stage's design, so the result is never worse than the
grid's heuristic best on the same points. Everything is deterministic for a seed (optimisation
call i draws from ``numpy.random.default_rng([seed, i])``). Sample accounting: one *sample* is
one layer-mapping evaluation of the model, so ``samples == model_evals``; the trajectory
records the best network EDP so far against it. ``extra`` holds per kept point its grid,
mapped and polished EDP (``points``), every refinement evaluation (``refinement``) and the
network EDP after each stage (``stage_edp``: grid heuristic, mapping optimised, polished,
refined), so a notebook can show what each stage gained. ``checkpoint_dir`` is accepted for the
common signature but unused: the search takes minutes per workload and its result is committed.

Measured with the defaults on one core (seed 0): see the report in the commit that adds this
module; a full run of the largest network (U-Net) takes about 5 minutes.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dosa.evaluation import network_edp, tile_words_batch
from dosa.hardware import ACC_WORD_BYTES, SP_WORD_BYTES, Hardware
from dosa.mapping import DRAM_ORDERS, NUM_DIMS, NUM_LEVELS, Mapping, order_to_rank
from dosa.model import evaluate
from dosa.search.grid import POINTS_PER_BATCH, score_points
from dosa.search.options import (
    HardwareBounds,
    check_seed,
    config_from_options,
    positive_int,
    positive_number,
)
from dosa.search.result import SearchResult, Trajectory, finish_result
from dosa.search.sampler import _dim_tables, place_factors, sample_mappings, single_threaded
from dosa.search.starts import heuristic_tables
from dosa.workload import Layer, Network, as_network

log = logging.getLogger(__name__)

METHOD = "best-known"
R, S, P, Q, C, K, N = range(NUM_DIMS)

_CANONICAL_DRAM_RANKS = tuple(np.array(order_to_rank(o)) for o in DRAM_ORDERS.values())
#: Relative improvement a descent move must make (guards against float noise cycling).
REL_TOL = 1e-12
#: Cycles/energy trade-off weights of the descent's sweep starts (relative to the totals).
SWEEP = tuple(2.0 ** k for k in range(-6, 7))
#: Candidates expanded per layer and local-search step (best unexpanded by network EDP).
BEAM = 2
#: Random re-draws around each expanded candidate, and how many dims each re-draws.
REDRAW_ROWS = 1000
REDRAW_DIMS = 3
#: Candidates kept per layer besides the Pareto front (best by network EDP).
KEEP_PER_LAYER = 64
#: Candidates per layer an optimisation leaves in the archive besides its Pareto front.
ARCHIVE_PER_LAYER = 8
#: Most moves of the pattern search at one step size.
MAX_MOVES = 8
#: Most DRAM loop orders tried around one mapping (all of them for up to 5 DRAM loops).
MAX_ORDERS = 120
#: Most factorisations tried for one pair of dims around one mapping.
MAX_PAIR_ROWS = 4000


@dataclass(frozen=True)
class BestKnownConfig:
    """All knobs of the best-known search, validated on construction."""

    top_points: int = 8
    random_per_layer: int = 2000
    rounds: int = 4
    refine_starts: int = 2
    local_steps: int = 6
    final_local_steps: int = 12
    max_pe_dim: int = 128
    max_sp_kb: float = 2048.0
    max_acc_kb: float = 2048.0
    #: Area budget in mm² (the area model of every method); None = the bounds above only.
    max_area_mm2: float | None = None

    def __post_init__(self) -> None:
        for name in ("top_points", "random_per_layer", "rounds", "refine_starts", "local_steps",
                     "final_local_steps", "max_pe_dim"):
            positive_int(name, getattr(self, name))
        for name in ("max_sp_kb", "max_acc_kb"):
            positive_number(name, getattr(self, name))
        positive_number("max_area_mm2", self.max_area_mm2, optional=True)
        self.bounds().require_candidates()

    def bounds(self) -> HardwareBounds:
        return HardwareBounds(max_pe_dim=self.max_pe_dim, max_sp_kb=self.max_sp_kb,
                              max_acc_kb=self.max_acc_kb, max_area_mm2=self.max_area_mm2)


# ----------------------------------------------------------------------------------------------
# Candidate pools
# ----------------------------------------------------------------------------------------------
def _canonical_rank(temporal: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Vectorised :meth:`Mapping.canonical` ranks of [m, 4, 7] tables (existing loops first)."""
    key = np.where(temporal > 1, rank, NUM_DIMS + np.arange(NUM_DIMS))
    return np.argsort(np.argsort(key, axis=-1, kind="stable"), axis=-1, kind="stable")


def _keys(temporal: np.ndarray, spatial: np.ndarray, rank: np.ndarray) -> list[bytes]:
    """One identity per row (factors + canonical ranks): equal keys = the same loop nest."""
    rows = np.concatenate([temporal.reshape(len(temporal), -1), spatial.reshape(len(temporal), -1),
                           rank.reshape(len(temporal), -1)], axis=1).astype(np.int64)
    return [r.tobytes() for r in rows]


@dataclass
class _Pool:
    """One layer's candidates (canonical, distinct) and their cycles/energy on the current hw."""

    temporal: np.ndarray
    spatial: np.ndarray
    rank: np.ndarray
    cycles: np.ndarray
    energy: np.ndarray

    def mapping(self, i: int) -> Mapping:
        return Mapping(self.temporal[i], self.spatial[i], self.rank[i])

    def take(self, idx: np.ndarray) -> _Pool:
        return _Pool(self.temporal[idx], self.spatial[idx], self.rank[idx], self.cycles[idx],
                     self.energy[idx])

    def __len__(self) -> int:
        return len(self.temporal)


def _stack(mappings: Sequence[Mapping]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(np.stack([getattr(m, f) for m in mappings]).astype(np.int64)
                 for f in ("temporal", "spatial", "rank"))  # type: ignore[return-value]


def _fits(layer: Layer, hw: Hardware, temporal: np.ndarray, spatial: np.ndarray) -> np.ndarray:
    """Boolean [m]: Mapping.check's hardware rules (exact integer tile sizes)."""
    acc, sp = tile_words_batch(temporal, spatial, np.array([layer.strides] * len(temporal)))
    return ((spatial[:, 1, C] <= hw.pe_dim) & (spatial[:, 2, K] <= hw.pe_dim)
            & (acc <= hw.acc_words_per_bank) & (sp <= hw.sp_words))


def _evaluate_rows(network: Network, hw: Hardware, layer_idx: np.ndarray, temporal: np.ndarray,
                   spatial: np.ndarray, rank: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cycles and energy (µJ) of rows of mixed layers on ``hw`` in one batched model call."""
    if len(layer_idx) == 0:
        return np.zeros(0), np.zeros(0)
    dims = torch.from_numpy(network.dims_array().astype(np.float64)[layer_idx])
    strides = torch.from_numpy(network.strides_array().astype(np.float64)[layer_idx])
    hw_t = torch.tensor([hw.as_tuple()], dtype=torch.float64).expand(len(layer_idx), 3)
    with torch.no_grad():
        out = evaluate(dims, strides, torch.from_numpy(temporal.astype(np.float64)),
                       torch.from_numpy(spatial.astype(np.float64)), torch.from_numpy(rank),
                       hw_t)
    cycles, energy = out.cycles.numpy(), out.energy_uj.numpy()
    if not (np.all(np.isfinite(cycles)) and np.all(np.isfinite(energy))):
        raise FloatingPointError(f"model returned non-finite cycles/energy on {hw}")
    return cycles, energy


def _build_pools(network: Network, hw: Hardware,
                 tables: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
                 ) -> tuple[list[_Pool], int]:
    """Fitting, distinct, canonical candidates per layer, evaluated on ``hw``; (pools, evals)."""
    kept = []
    for layer, (t, s, r) in zip(network, tables, strict=True):
        ok = _fits(layer, hw, t, s)
        t, s = t[ok], s[ok]
        r = _canonical_rank(t, r[ok])
        rows = np.concatenate([x.reshape(len(x), -1) for x in (t, s, r)], axis=1)
        first = np.sort(np.unique(rows, axis=0, return_index=True)[1])  # first occurrences
        kept.append((t[first], s[first], r[first]))
    sizes = [len(t) for t, _, _ in kept]
    layer_idx = np.repeat(np.arange(len(network)), sizes)
    cat = [np.concatenate([k[i] for k in kept]) for i in range(3)]
    cycles, energy = _evaluate_rows(network, hw, layer_idx, *cat)
    pools, lo = [], 0
    for (t, s, r), n in zip(kept, sizes, strict=True):
        pools.append(_Pool(t, s, r, cycles[lo:lo + n], energy[lo:lo + n]))
        lo += n
    return pools, int(len(cycles))


def pareto_front(cycles: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Indices (sorted by cycles, then energy) of the candidates no other one dominates.

    Of exact duplicates in (cycles, energy) only the first is kept.
    """
    order = np.lexsort((energy, cycles))
    best = np.minimum.accumulate(energy[order])
    keep = np.ones(len(order), dtype=bool)
    keep[1:] = energy[order][1:] < best[:-1]
    return order[keep]


# ----------------------------------------------------------------------------------------------
# Choosing one mapping per layer by network EDP
# ----------------------------------------------------------------------------------------------
def coordinate_descent(counts: np.ndarray, cycles: Sequence[np.ndarray],
                       energy: Sequence[np.ndarray], start: Sequence[int],
                       max_passes: int = 10_000) -> tuple[np.ndarray, float, int]:
    """One candidate per layer minimising network EDP by coordinate descent, from ``start``.

    Each layer in turn takes the candidate minimising (C_other + n_i c)(E_other + n_i e) when it
    beats the current one by more than a relative :data:`REL_TOL`; passes repeat until one
    changes nothing (a fixed point: no single-layer change lowers the network EDP). The EDP never
    increases. Returns (choice per layer, network EDP, passes made).
    """
    counts = np.asarray(counts, dtype=np.float64)
    sel = np.array(start, dtype=np.int64)
    cur_c = np.array([c[i] for c, i in zip(cycles, sel, strict=True)], dtype=np.float64)
    cur_e = np.array([e[i] for e, i in zip(energy, sel, strict=True)], dtype=np.float64)
    passes = 0
    while passes < max_passes:
        passes += 1
        changed = False
        for i, n in enumerate(counts):
            other_c = float(counts @ cur_c - n * cur_c[i])
            other_e = float(counts @ cur_e - n * cur_e[i])
            value = (other_c + n * cycles[i]) * (other_e + n * energy[i])
            k = int(np.argmin(value))
            if value[k] < value[sel[i]] * (1 - REL_TOL):
                sel[i] = k
                cur_c[i], cur_e[i] = cycles[i][k], energy[i][k]
                changed = True
        if not changed:
            break
    return sel, float(network_edp(counts, cur_c, cur_e)), passes


def _starts(counts: np.ndarray, cycles: Sequence[np.ndarray], energy: Sequence[np.ndarray],
            given: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Distinct descent starts: ``given`` ones, per-layer EDP best, least cycles, least energy,
    and per-layer argmin of c/C + w·e/E over the trade-off sweep (C, E: the EDP-best totals)."""
    edp_best = np.array([int(np.argmin(c * e)) for c, e in zip(cycles, energy, strict=True)])
    tot_c = float(sum(n * c[i] for n, c, i in zip(counts, cycles, edp_best, strict=True)))
    tot_e = float(sum(n * e[i] for n, e, i in zip(counts, energy, edp_best, strict=True)))
    cands = [np.asarray(g, dtype=np.int64) for g in given] + [
        edp_best,
        np.array([int(np.argmin(c)) for c in cycles]),
        np.array([int(np.argmin(e)) for e in energy]),
    ]
    cands += [np.array([int(np.argmin(c / tot_c + w * e / tot_e))
                        for c, e in zip(cycles, energy, strict=True)]) for w in SWEEP]
    out, seen = [], set()
    for s in cands:
        key = s.tobytes()
        if key not in seen:
            seen.add(key)
            out.append(s)
    return out


def choose(counts: np.ndarray, pools: Sequence[_Pool], given: Sequence[Sequence[int]]
           ) -> tuple[np.ndarray, float]:
    """Best coordinate-descent fixed point over :func:`_starts`; ties go to the earlier start."""
    cycles = [p.cycles for p in pools]
    energy = [p.energy for p in pools]
    best: tuple[np.ndarray, float] | None = None
    for start in _starts(counts, cycles, energy, given):
        sel, edp, _ = coordinate_descent(counts, cycles, energy, start)
        if best is None or edp < best[1]:
            best = (sel, edp)
    assert best is not None
    return best


# ----------------------------------------------------------------------------------------------
# Local moves
# ----------------------------------------------------------------------------------------------
def _dram_orders(temporal: np.ndarray, rank: np.ndarray, rng: np.random.Generator
                 ) -> list[np.ndarray]:
    """DRAM rank rows to try for one mapping: every order of its existing DRAM loops (at most
    :data:`MAX_ORDERS`, else the canonical three, adjacent swaps and random orders)."""
    existing = [int(d) for d in np.argsort(rank[3], kind="stable") if temporal[3, d] > 1]
    absent = [d for d in range(NUM_DIMS) if d not in existing]
    if math.factorial(len(existing)) <= MAX_ORDERS:
        perms = [list(p) for p in itertools.permutations(existing)]
    else:
        perms = [[d for d in np.argsort(r, kind="stable") if d in existing]
                 for r in _CANONICAL_DRAM_RANKS]
        for x in range(len(existing) - 1):
            p = list(existing)
            p[x], p[x + 1] = p[x + 1], p[x]
            perms.append(p)
        perms += [list(rng.permutation(existing)) for _ in range(MAX_ORDERS - len(perms))]
    out = []
    for p in perms:
        row = np.empty(NUM_DIMS, dtype=np.int64)
        row[p + absent] = np.arange(NUM_DIMS)
        out.append(row)
    return out


def _block_neighbours(layer: Layer, hw: Hardware, temporal: np.ndarray, spatial: np.ndarray,
                      rank: np.ndarray, rng: np.random.Generator, max_rows: int = MAX_PAIR_ROWS
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fitting mappings that differ from one mapping in the factorisation of one dim or of a
    pair of dims (every factorisation over the dims' legal slots that passes the sampler's
    per-dim size checks; at most ``max_rows`` random ones per dim or pair), keeping its loop
    orders, plus its factors under every order of its DRAM loops (:func:`_dram_orders`)."""
    tables = _dim_tables(layer, hw)
    dims = layer.dims
    blocks_t, blocks_s = [], []

    active = [d for d in range(NUM_DIMS) if dims[d] > 1]
    groups: list[tuple[int, ...]] = [(d,) for d in active]
    groups += list(itertools.combinations(active, 2))
    for group in groups:
        sizes = [len(tables[d]) for d in group]
        total = math.prod(sizes)
        if total > max_rows:
            flat = np.sort(rng.choice(total, size=max_rows, replace=False))
        else:
            flat = np.arange(total)
        idx = np.unravel_index(flat, sizes)
        t = np.broadcast_to(temporal, (len(flat), NUM_LEVELS, NUM_DIMS)).copy()
        s = np.broadcast_to(spatial, (len(flat), NUM_LEVELS, NUM_DIMS)).copy()
        for d, ix in zip(group, idx, strict=True):
            place_factors(t, s, d, dims[d], tables[d][ix])
        blocks_t.append(t)
        blocks_s.append(s)
    t = np.concatenate(blocks_t) if blocks_t else np.zeros((0, NUM_LEVELS, NUM_DIMS), np.int64)
    s = np.concatenate(blocks_s) if blocks_s else np.zeros_like(t)
    r = np.broadcast_to(rank, t.shape).copy()
    orders = _dram_orders(temporal, rank, rng)
    r_o = np.broadcast_to(rank, (len(orders), NUM_LEVELS, NUM_DIMS)).copy()
    r_o[:, 3] = np.stack(orders)
    t = np.concatenate([t, np.broadcast_to(temporal, r_o.shape)])
    s = np.concatenate([s, np.broadcast_to(spatial, r_o.shape)])
    r = np.concatenate([r, r_o])
    ok = _fits(layer, hw, t, s)
    return t[ok], s[ok], r[ok]


def _redraw_neighbours(layer: Layer, hw: Hardware, temporal: np.ndarray, spatial: np.ndarray,
                       rank: np.ndarray, rng: np.random.Generator, n: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random fitting mappings near one mapping: each re-draws the factorisation of
    :data:`REDRAW_DIMS` random dims (uniformly from the sampler's tables) and, for half of
    them, the order of the DRAM loops; the rest of the mapping is kept."""
    tables = _dim_tables(layer, hw)
    active = [d for d in range(NUM_DIMS) if layer.dims[d] > 1]
    t = np.broadcast_to(temporal, (n, NUM_LEVELS, NUM_DIMS)).copy()
    s = np.broadcast_to(spatial, (n, NUM_LEVELS, NUM_DIMS)).copy()
    r = np.broadcast_to(rank, (n, NUM_LEVELS, NUM_DIMS)).copy()
    if active:
        keys = rng.random((n, len(active)))
        chosen = np.argsort(keys, axis=1)[:, :min(REDRAW_DIMS, len(active))]
        for col, d in enumerate(active):
            rows = np.flatnonzero((chosen == col).any(axis=1))
            place_factors(t, s, d, layer.dims[d],
                          tables[d][rng.integers(len(tables[d]), size=len(rows))], at=rows)
    flip = rng.random(n) < 0.5
    r[flip, 3] = rng.permuted(np.broadcast_to(np.arange(NUM_DIMS), (int(flip.sum()), NUM_DIMS)),
                              axis=1)
    ok = _fits(layer, hw, t, s)
    return t[ok], s[ok], r[ok]


# ----------------------------------------------------------------------------------------------
# Hardware
# ----------------------------------------------------------------------------------------------
def needed_words(network: Network, mappings: Sequence[Mapping]) -> tuple[int, int, int]:
    """(largest spatial fan-out, accumulator words per bank, scratchpad words) the mappings use."""
    t, s, _ = _stack(mappings)
    acc, sp = tile_words_batch(t, s, network.strides_array())
    spatial = int(max(s[:, 1, C].max(), s[:, 2, K].max()))
    return spatial, int(acc.max()), int(sp.max())


def polished_hardware(network: Network, mappings: Sequence[Mapping], hw: Hardware,
                      cfg: BestKnownConfig) -> list[Hardware]:
    """Smaller hardware that still holds ``mappings`` (which must fit ``hw``) within the bounds.

    Buffers in whole KB, as DOSA's evaluation-mode min-HW (never above ``hw``'s own sizes, so
    non-integer bounds are honoured); pe_dim either the largest the bounds (area included)
    allow for the needed accumulator bank or the smallest the mappings need (DOSA's min-HW).
    Returns the distinct candidates, ``hw`` itself excluded.
    """
    spatial, acc_words, sp_words = needed_words(network, mappings)
    sp_kb = min(float(max(1, math.ceil(sp_words * SP_WORD_BYTES / 1024 - 1e-9))), hw.sp_kb)

    def acc_kb(pe: int) -> float:
        return float(max(1, math.ceil(pe * acc_words * ACC_WORD_BYTES / 1024 - 1e-9)))

    bounds = cfg.bounds()
    largest = next((pe for pe in range(cfg.max_pe_dim, max(spatial, 1) - 1, -1)
                    if acc_kb(pe) <= cfg.max_acc_kb
                    and bounds.feasible(Hardware(pe, sp_kb, acc_kb(pe)))), None)
    needed = max(spatial, 2) if max(spatial, 2) <= cfg.max_pe_dim else spatial
    out = []
    for pe in dict.fromkeys(p for p in (largest, needed, hw.pe_dim) if p is not None):
        acc = acc_kb(pe) if pe != hw.pe_dim else min(acc_kb(pe), hw.acc_kb)
        if acc > cfg.max_acc_kb:
            continue
        cand = Hardware(pe, sp_kb, acc)
        if cand != hw and bounds.feasible(cand):
            out.append(cand)
    return out


# ----------------------------------------------------------------------------------------------
# The search
# ----------------------------------------------------------------------------------------------
@dataclass
class _Design:
    edp: float
    hardware: Hardware
    mappings: list[Mapping]


_EMPTY = (np.zeros((0, NUM_LEVELS, NUM_DIMS), np.int64),) * 3


@dataclass(frozen=True)
class LocalMoves:
    """How wide one local-search step looks: candidates expanded per layer, random re-draws
    around each, and factorisations tried per dim or pair of dims. The best-known search uses
    the module's wide defaults; DOSA's budgeted refinement (:func:`refine_design`) narrow ones."""

    beam: int = BEAM
    redraw_rows: int = REDRAW_ROWS
    pair_rows: int = MAX_PAIR_ROWS


class _Search:
    """State shared by the stages: network, config, archive of good candidates, accounting."""

    def __init__(self, network: Network, cfg: BestKnownConfig, seed: int, bar: Any,
                 moves: LocalMoves = LocalMoves()) -> None:
        self.network = network
        self.cfg = cfg
        self.seed = seed
        self.moves = moves
        self.counts = network.counts_array().astype(np.float64)
        self.evals = 0
        self.calls = 0
        self.traj = Trajectory()
        self.bar = bar
        #: Per layer, every candidate that was on a Pareto front at the end of an optimisation
        #: (insertion-ordered, so deterministic): warm candidates for the next hardware.
        self.archive: list[dict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray]]] = [
            {} for _ in network]

    def record(self, edp: float) -> None:
        self.traj.record(self.evals, edp)

    def score(self, hw: Hardware, mappings: Sequence[Mapping]) -> float:
        t, s, r = _stack(mappings)
        cyc, en = _evaluate_rows(self.network, hw, np.arange(len(self.network)), t, s, r)
        self.evals += len(cyc)
        return float(network_edp(self.counts, cyc, en))

    def _archived(self, li: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = list(self.archive[li].values())
        if not rows:
            return _EMPTY
        return tuple(np.stack(x) for x in zip(*rows, strict=True))  # type: ignore[return-value]

    def optimise(self, hw: Hardware, start: Sequence[Mapping] | None,
                 local_steps: int | None = None) -> _Design:
        """Mappings for ``hw``: candidate pools, descent, local search (module docstring).

        ``start`` mappings that fit ``hw`` are candidates and a descent start, so the result is
        never worse than ``start`` when all of it fits.
        """
        net, cfg = self.network, self.cfg
        rng = np.random.default_rng([self.seed, self.calls])
        self.calls += 1
        tables, start_fits = [], []
        for li, layer in enumerate(net):
            parts = [self._archived(li), heuristic_tables(layer, hw),
                     sample_mappings(layer, hw, cfg.random_per_layer, rng, register_p=True)]
            fits = start is not None and bool(
                _fits(layer, hw, start[li].temporal[None], start[li].spatial[None])[0])
            if fits:
                parts.insert(0, _stack([start[li]]))  # type: ignore[index]
            start_fits.append(fits)
            tables.append(tuple(np.concatenate(x) for x in zip(*parts, strict=True)))
        pools, n = _build_pools(net, hw, tables)
        self.evals += n
        given = []
        if start is not None:  # a fitting start is row 0 of its pool (first occurrences kept)
            given = [[0 if ok else int(np.argmin(p.cycles * p.energy))
                      for ok, p in zip(start_fits, pools, strict=True)]]
        sel, edp = choose(self.counts, pools, given)
        pools, sel = self._prune_all(pools, sel)
        expanded: list[set[bytes]] = [set() for _ in net]
        seen = [set(_keys(p.temporal, p.spatial, p.rank)) for p in pools]
        for _ in range(cfg.local_steps if local_steps is None else local_steps):
            new_rows = []
            for li, (layer, pool) in enumerate(zip(net, pools, strict=True)):
                order = np.argsort(self._marginal(pools, sel, li), kind="stable")
                keys = _keys(pool.temporal[order], pool.spatial[order], pool.rank[order])
                sources = [int(i) for i, k in zip(order, keys, strict=True)
                           if k not in expanded[li]][:self.moves.beam]
                if not sources:
                    new_rows.append(_EMPTY)
                    continue
                found = []
                for i in sources:
                    expanded[li].add(_keys(pool.temporal[i:i + 1], pool.spatial[i:i + 1],
                                           pool.rank[i:i + 1])[0])
                    args = (layer, hw, pool.temporal[i], pool.spatial[i], pool.rank[i], rng)
                    found.append(_block_neighbours(*args, self.moves.pair_rows))
                    found.append(_redraw_neighbours(*args, self.moves.redraw_rows))
                t, s, r = (np.concatenate(x) for x in zip(*found, strict=True))
                r = _canonical_rank(t, r)
                idx, fresh = [], set()
                for j, k in enumerate(_keys(t, s, r)):
                    if k not in seen[li] and k not in fresh:
                        fresh.add(k)
                        idx.append(j)
                seen[li].update(fresh)
                new_rows.append((t[idx], s[idx], r[idx]))
            sizes = [len(t) for t, _, _ in new_rows]
            if sum(sizes) == 0:
                break
            layer_idx = np.repeat(np.arange(len(net)), sizes)
            cat = [np.concatenate([x[i] for x in new_rows]) for i in range(3)]
            cyc, en = _evaluate_rows(net, hw, layer_idx, *cat)
            self.evals += len(cyc)
            lo = 0
            for li, ((t, s, r), m) in enumerate(zip(new_rows, sizes, strict=True)):
                p = pools[li]
                pools[li] = _Pool(np.concatenate([p.temporal, t]), np.concatenate([p.spatial, s]),
                                  np.concatenate([p.rank, r]),
                                  np.concatenate([p.cycles, cyc[lo:lo + m]]),
                                  np.concatenate([p.energy, en[lo:lo + m]]))
                lo += m
            sel, edp = choose(self.counts, pools, [sel])
            pools, sel = self._prune_all(pools, sel)
        for li, p in enumerate(pools):
            keep = np.union1d(pareto_front(p.cycles, p.energy),
                              np.argsort(self._marginal(pools, sel, li),
                                         kind="stable")[:ARCHIVE_PER_LAYER])
            for k, row in zip(_keys(p.temporal[keep], p.spatial[keep], p.rank[keep]),
                              zip(p.temporal[keep], p.spatial[keep], p.rank[keep], strict=True),
                              strict=True):
                self.archive[li].setdefault(k, row)
        mappings = [p.mapping(int(i)) for p, i in zip(pools, sel, strict=True)]
        self.record(edp)
        return _Design(edp, hw, mappings)

    def _marginal(self, pools: Sequence[_Pool], sel: np.ndarray, li: int) -> np.ndarray:
        """Network EDP with layer ``li``'s choice replaced by each of its candidates."""
        cur_c = np.array([p.cycles[i] for p, i in zip(pools, sel, strict=True)])
        cur_e = np.array([p.energy[i] for p, i in zip(pools, sel, strict=True)])
        n = self.counts[li]
        other_c = float(self.counts @ cur_c - n * cur_c[li])
        other_e = float(self.counts @ cur_e - n * cur_e[li])
        return (other_c + n * pools[li].cycles) * (other_e + n * pools[li].energy)

    def _prune_all(self, pools: list[_Pool], sel: np.ndarray
                   ) -> tuple[list[_Pool], np.ndarray]:
        """Keep per layer its Pareto front and its :data:`KEEP_PER_LAYER` best candidates by
        :meth:`_marginal` (the choice among them); returns the pools and the choice in them."""
        out, new_sel = [], []
        for li, (p, i) in enumerate(zip(pools, sel, strict=True)):
            value = self._marginal(pools, sel, li)
            keep = np.union1d(pareto_front(p.cycles, p.energy),
                              np.argsort(value, kind="stable")[:KEEP_PER_LAYER])
            keep = np.union1d(keep, [int(i)])
            out.append(p.take(keep))
            new_sel.append(int(np.flatnonzero(keep == i)[0]))
        return out, np.array(new_sel, dtype=np.int64)

    def polish(self, design: _Design) -> _Design:
        """The best of ``design`` and its mappings on :func:`polished_hardware` (ties: the
        smaller area)."""
        best = design
        for hw in polished_hardware(self.network, design.mappings, design.hardware, self.cfg):
            edp = self.score(hw, design.mappings)
            if edp < best.edp or (edp == best.edp and hw.area_mm2() < best.hardware.area_mm2()):
                best = _Design(edp, hw, design.mappings)
        self.record(best.edp)
        return best


def _grid_stage(search: _Search, hws: list[Hardware]
                ) -> list[tuple[float, Hardware, list[Mapping]]]:
    """Heuristic-mapper network EDP of every grid point (feasible ones), grid order."""
    scored = []
    for lo in range(0, len(hws), POINTS_PER_BATCH):
        chunk = hws[lo:lo + POINTS_PER_BATCH]
        for hw, (edp, mappings, n) in zip(chunk, score_points(search.network, chunk),
                                          strict=True):
            search.evals += n
            if math.isfinite(edp):
                scored.append((edp, hw, mappings))
                search.record(edp)
        search.bar.update(len(chunk))
    return scored


def _cap_neighbours(hw: Hardware, step: float, cfg: BestKnownConfig) -> list[Hardware]:
    """Pattern-search neighbours of ``hw``: its scratchpad or its accumulator KB times
    2^(±step), in whole KB, inside the bounds, distinct. (pe_dim is not searched here: for
    given mappings a wider array only adds scratchpad bandwidth, so :func:`polished_hardware`
    already takes the widest the bounds allow, and narrower ones lost on every workload.)"""
    f = 2.0 ** step
    sp = [max(1.0, min(cfg.max_sp_kb, float(round(hw.sp_kb * x)))) for x in (1 / f, f)]
    acc = [max(1.0, min(cfg.max_acc_kb, float(round(hw.acc_kb * x)))) for x in (1 / f, f)]
    out = ([Hardware(hw.pe_dim, s, hw.acc_kb) for s in sp]
           + [Hardware(hw.pe_dim, hw.sp_kb, a) for a in acc])
    bounds = cfg.bounds()
    return [h for h in dict.fromkeys(out) if h != hw and bounds.feasible(h)]


def _pattern_search(search: _Search, best: _Design, done: dict[tuple[int, float, float], _Design],
                    tried: list[dict[str, Any]], start: int, max_evals: int | None = None,
                    cost: int = 0) -> _Design:
    """Pattern search over one design's scratchpad/accumulator/pe_dim: each neighbour
    (:func:`_cap_neighbours`) gets re-optimised mappings (warm-started from the current best)
    and is polished; the best improving neighbour becomes the centre, else the step halves,
    from 2^-1 octave for ``rounds`` step sizes. ``done`` shares evaluated points between runs.
    With ``max_evals``, a neighbour is optimised only while the search's model evaluations
    plus the last optimisation's cost (at first ``cost``) stay within it: costs vary little
    between neighbours, so the search ends close to ``max_evals`` and rarely past it."""
    def spent() -> bool:
        return max_evals is not None and search.evals + cost > max_evals

    for k in range(search.cfg.rounds):
        step = 0.5 ** (k + 1)
        for _ in range(MAX_MOVES):
            found = None
            for hw in _cap_neighbours(best.hardware, step, search.cfg):
                design = done.get(hw.as_tuple())
                if design is None and spent():
                    break
                if design is None:
                    before = search.evals
                    design = search.polish(search.optimise(hw, best.mappings))
                    cost = search.evals - before
                    done[hw.as_tuple()] = design
                    tried.append({"start": start, **hw.to_dict(), "step_octaves": step,
                                  "edp": design.edp})
                if design.edp < best.edp * (1 - 1e-9) and (found is None
                                                          or design.edp < found.edp):
                    found = design
            search.bar.set_postfix(best_edp=f"{best.edp:.4g}", step=f"{step:g}")
            if found is None:
                break
            best = found
            done.setdefault(best.hardware.as_tuple(), best)
        if spent():
            break
    return best


def _refine(search: _Search, designs: Sequence[_Design]) -> tuple[_Design, list[dict[str, Any]]]:
    """Pattern search from each of the ``refine_starts`` best designs of distinct hardware,
    then an intensive re-optimisation (``final_local_steps``) of the winner's mappings."""
    per_hw: dict[Hardware, _Design] = {}
    for d in sorted(designs, key=lambda d: d.edp):  # stable: earlier points win ties
        per_hw.setdefault(d.hardware, d)
    done = {hw.as_tuple(): d for hw, d in per_hw.items()}
    starts = list(per_hw.values())[:search.cfg.refine_starts]
    tried: list[dict[str, Any]] = []
    results = [_pattern_search(search, d, done, tried, i) for i, d in enumerate(starts)]
    best = min(results, key=lambda d: d.edp)
    final = search.polish(search.optimise(best.hardware, best.mappings,
                                          local_steps=search.cfg.final_local_steps))
    tried.append({"start": "final", **best.hardware.to_dict(), "edp": final.edp})
    return (final if final.edp < best.edp else best), tried


#: DOSA's refinement (:func:`refine_design`): random candidates per layer and optimisation,
#: local-search steps, and narrow local moves, so one optimisation costs a few hundred network
#: evaluations instead of thousands (chosen by hand from three settings, tried on the seed-0
#: designs of notebook 08's screened configuration).
REFINE_RANDOM_PER_LAYER = 100
REFINE_LOCAL_STEPS = 1
REFINE_MOVES = LocalMoves(beam=1, redraw_rows=200, pair_rows=100)


def refinement_config(bounds: HardwareBounds) -> BestKnownConfig:
    """The configuration of :func:`refine_design` inside DOSA's hardware ``bounds`` (a bound
    DOSA leaves open is the baselines' design space: pe_dim 128, 2,048 KB buffers)."""
    base = BestKnownConfig()
    return BestKnownConfig(
        random_per_layer=REFINE_RANDOM_PER_LAYER, local_steps=REFINE_LOCAL_STEPS,
        max_pe_dim=bounds.max_pe_dim if bounds.max_pe_dim is not None else base.max_pe_dim,
        max_sp_kb=bounds.max_sp_kb if bounds.max_sp_kb is not None else base.max_sp_kb,
        max_acc_kb=bounds.max_acc_kb if bounds.max_acc_kb is not None else base.max_acc_kb,
        max_area_mm2=bounds.max_area_mm2)


def refine_design(network: Network, hardware: Hardware, mappings: Sequence[Mapping],
                  cfg: BestKnownConfig, seed: int, max_evals: int, *, edp: float | None = None
                  ) -> tuple[float, Hardware, list[Mapping], int, list[tuple[int, float]]]:
    """Exact fixed-hardware refinement of one design with at most about ``max_evals``
    layer-mapping evaluations: the best-known search's stages 2-4 (mapping optimisation warm-
    started from ``mappings``, polish, pattern search over the buffer sizes) with
    :data:`REFINE_MOVES`. Never worse than the given design, whose mappings must fit
    ``hardware``. Returns (EDP, hardware, mappings, evaluations, [(evaluations, EDP)] at each
    improvement, the best so far). The first optimisation always runs; the pattern search
    stops before a neighbour that would take the total past ``max_evals``. ``edp`` is the
    design's EDP where the caller has it (DOSA does), which saves scoring it again."""
    search = _Search(network, cfg, seed, tqdm(disable=True), REFINE_MOVES)
    best = _Design(search.score(hardware, mappings) if edp is None else edp, hardware,
                   list(mappings))
    search.record(best.edp)
    before = search.evals
    first = search.polish(search.optimise(hardware, best.mappings))
    best = first if first.edp < best.edp else best
    refined = _pattern_search(search, best, {best.hardware.as_tuple(): best}, [], 0,
                              max_evals=max_evals, cost=search.evals - before)
    best = refined if refined.edp < best.edp else best
    return best.edp, best.hardware, best.mappings, search.evals, list(search.traj.points)


def best_known_search(network: Network | str, seed: int = 0, *, progress: bool = False,
                      checkpoint_dir: str | Path | None = None, **options: Any) -> SearchResult:
    """The best-known design of ``network`` under the hardware bounds ("best-known").

    Options are the fields of :class:`BestKnownConfig` (unknown ones are refused): see the
    module docstring for the procedure. Deterministic in ``seed``.
    """
    seed = check_seed(seed)
    network = as_network(network)
    cfg = config_from_options(BestKnownConfig, options, "best-known")
    del checkpoint_dir
    t0 = time.perf_counter()
    hws = cfg.bounds().candidates()
    bar = tqdm(total=len(hws) + cfg.top_points, disable=not progress, unit="point",
               desc=f"best-known {network.name}")
    search = _Search(network, cfg, seed, bar)
    try:
        with single_threaded():
            scored = _grid_stage(search, hws)
            if not scored:
                raise ValueError(f"no grid point within the bounds can hold network "
                                 f"{network.name!r} with the heuristic mapper")
            ranked = sorted(range(len(scored)), key=lambda i: (scored[i][0], i))
            kept = [scored[i] for i in ranked[:cfg.top_points]]
            points, designs = [], []
            for grid_edp, hw, mappings in kept:
                mapped = search.optimise(hw, mappings)
                polished = search.polish(mapped)
                designs.append(polished)
                points.append({**hw.to_dict(), "grid_edp": grid_edp, "mapped_edp": mapped.edp,
                               "polished_edp": polished.edp,
                               "polished_hardware": polished.hardware.to_dict()})
                bar.update(1)
                bar.set_postfix(best_edp=f"{min(d.edp for d in designs):.4g}")
                log.info("best-known %s point %s: grid %.4g, mapped %.4g, polished %.4g",
                         network.name, hw, grid_edp, mapped.edp, polished.edp)
            stages = {"grid_heuristic": kept[0][0],
                      "mapping_optimised": min(p["mapped_edp"] for p in points),
                      "polished": min(d.edp for d in designs)}
            best, refined = _refine(search, designs)
            stages["refined"] = best.edp
    finally:
        bar.close()
    extra = {
        "points": points,
        "refinement": refined,
        "stage_edp": stages,
        "grid_points": len(hws), "grid_feasible": len(scored),
        "sample_accounting": "1 per layer-mapping model evaluation (samples == model_evals)",
    }
    log.info("best-known %s: grid %.4g -> mapped %.4g -> polished %.4g -> refined %.4g (%s)",
             network.name, stages["grid_heuristic"], stages["mapping_optimised"],
             stages["polished"], stages["refined"], best.hardware)
    result = finish_result(method=METHOD, seed=seed, network=network, hardware=best.hardware,
                           mappings=best.mappings, samples=search.evals,
                           model_evals=search.evals, wall_s=time.perf_counter() - t0,
                           trajectory=search.traj, config=asdict(cfg), extra=extra)
    if not math.isclose(result.edp, best.edp, rel_tol=1e-9):
        raise AssertionError(f"exact re-score {result.edp} != search score {best.edp}")
    return result
