"""Loop-nest mappings of one layer onto the Gemmini-TL hierarchy.

A mapping gives, for each memory level (L0 registers, L1 accumulator, L2 scratchpad, L3 DRAM),
the temporal and spatial tiling factor of every problem dim and the order of the temporal loops.
It is stored as three small integer arrays so that batches of mappings turn into model tensors
without per-mapping Python work:

* ``temporal[j, d]`` and ``spatial[j, d]``: factors at level j (0 = L0 ... 3 = L3), dim d in
  R, S, P, Q, C, K, N order;
* ``rank[j, d]``: loop-order key of dim d at level j, 0 = innermost ... 6 = outermost (a
  permutation of 0..6 per level). Loops with factor 1 do not exist, so their rank is irrelevant.

The published string form (spec §3.2) lists each level outermost first, temporal loops outermost
first, factor-1 loops omitted (an empty level is written ``N1``), spatial words (suffix X/Y) last:
``L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from dosa.hardware import Hardware
from dosa.workload import DIMS, Layer

NUM_LEVELS = 4
NUM_DIMS = len(DIMS)
LEVEL_NAMES = ("Registers", "Accumulator", "Scratchpad", "DRAM")
LEVEL_TENSORS = ("W", "O", "WI", "WIO")  # what each level holds (fixed bypass pattern)
DIM_INDEX = {d: i for i, d in enumerate(DIMS)}
R, S, P, Q, C, K, N = range(NUM_DIMS)

#: Legal spatial fan-outs of Gemmini-TL: C across PE rows (below the accumulator, level 1) and
#: K across PE columns (below the scratchpad, level 2).
SPATIAL_LEGAL = {(1, C), (2, K)}
#: Temporal loops the single-entry weight register (L0) allows: weight-irrelevant P, Q, N.
L0_TEMPORAL_LEGAL = (P, Q, N)
#: Gemmini's fixed accumulator loop order (innermost first), spec §1.4.
ACC_ORDER = "PQNCRSK"
#: The three canonical DRAM loop orders searched at rounding (innermost first), spec §5.7.
DRAM_ORDERS = {"WS": "PQNRSCK", "IS": "KRSPQCN", "OS": "RSCKPQN"}
DEFAULT_ORDER = "RSPQCKN"


_RANK_IDENTITY = np.tile(np.arange(NUM_DIMS), (NUM_LEVELS, 1))


class MappingError(ValueError):
    """A mapping string or factor table that is not a legal Gemmini-TL mapping."""


def order_to_rank(order: str) -> tuple[int, ...]:
    """'PQNCRSK' (innermost first) -> rank key per dim in R..N order."""
    if sorted(order) != sorted(DIMS):
        raise MappingError(f"loop order {order!r} must be a permutation of {''.join(DIMS)}")
    return tuple(order.index(d) for d in DIMS)


def rank_to_order(rank: Sequence[int]) -> str:
    return "".join(DIMS[d] for d in np.argsort(np.asarray(rank), kind="stable"))


@dataclass(frozen=True, eq=False)
class Mapping:
    """One layer's mapping: factor tables [4, 7] and loop ranks [4, 7] (level 0 = L0)."""

    temporal: np.ndarray
    spatial: np.ndarray
    rank: np.ndarray

    def __post_init__(self) -> None:
        # Hot (the grid screen builds ~10^5 of them): integer arrays skip the float checks,
        # and the rank check is one sort; the loops below only word the error.
        for name in ("temporal", "spatial", "rank"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != (NUM_LEVELS, NUM_DIMS):
                raise MappingError(f"{name} must have shape (4, 7), got {arr.shape}")
            if arr.dtype.kind not in "iu" and (
                    not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))):
                raise MappingError(f"{name} must hold integers, got {arr.tolist()}")
            arr = arr.astype(np.int64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        for name in ("temporal", "spatial"):
            arr = getattr(self, name)
            if arr.min() < 1:
                j, d = map(int, np.argwhere(arr < 1)[0])
                raise MappingError(f"{name} factor of {DIMS[d]} at L{j} must be >= 1, "
                                   f"got {arr[j, d]}")
        if not np.array_equal(np.sort(self.rank, axis=1), _RANK_IDENTITY):
            for j in range(NUM_LEVELS):
                if sorted(self.rank[j].tolist()) != list(range(NUM_DIMS)):
                    raise MappingError(f"rank of L{j} must be a permutation of 0..6, "
                                       f"got {self.rank[j].tolist()}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mapping):
            return NotImplemented
        return self.to_string() == other.to_string()

    def __hash__(self) -> int:
        return hash(self.to_string())

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_factors(cls, temporal: Sequence[Sequence[int]], spatial: Sequence[Sequence[int]],
                     orders: Sequence[str] = (DEFAULT_ORDER,) * NUM_LEVELS) -> Mapping:
        """Build from factor tables and per-level loop orders (innermost-first strings)."""
        if len(orders) != NUM_LEVELS:
            raise MappingError(f"need {NUM_LEVELS} loop orders, got {len(orders)}")
        rank = np.array([order_to_rank(o) for o in orders])
        return cls(np.asarray(temporal), np.asarray(spatial), rank)

    def order(self, level: int) -> str:
        """Innermost-first loop order of a level (all 7 dims)."""
        return rank_to_order(self.rank[level])

    def with_order(self, level: int, order: str) -> Mapping:
        rank = self.rank.copy()
        rank[level] = order_to_rank(order)
        return Mapping(self.temporal, self.spatial, rank)

    def canonical(self) -> Mapping:
        """The same loop nest with the order of factor-1 loops normalised as the string form
        has it (loops that exist innermost-first, then the absent ones in DIMS order).

        The analytical model ignores where a factor-1 loop sits, but a learned predictor sees
        the raw ranks; searching and re-scoring in this form keeps both equal to what a
        ``to_string``/``parse_mapping`` round trip (a result file) gives.
        """
        rank = np.empty_like(self.rank)
        for j in range(NUM_LEVELS):
            inner = [int(d) for d in np.argsort(self.rank[j], kind="stable")
                     if self.temporal[j, d] > 1]
            inner += [d for d in range(NUM_DIMS) if d not in inner]
            rank[j, inner] = np.arange(NUM_DIMS)
        return Mapping(self.temporal, self.spatial, rank)

    def dims_product(self) -> np.ndarray:
        return (self.temporal * self.spatial).prod(axis=0)

    # -- string form --------------------------------------------------------------------------
    def to_string(self) -> str:
        parts = []
        for j in reversed(range(NUM_LEVELS)):
            words = [f"{DIMS[d]}{self.temporal[j, d]}"
                     for d in reversed(np.argsort(self.rank[j], kind="stable"))
                     if self.temporal[j, d] > 1]
            if not words:
                words = ["N1"]
            words += [f"{DIMS[d]}{self.spatial[j, d]}X" for d in range(NUM_DIMS)
                      if self.spatial[j, d] > 1]
            parts.append(f"L{j}[{LEVEL_TENSORS[j]}] " + " ".join(words))
        return " - ".join(parts)

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"Mapping({self.to_string()!r})"

    # -- validity -----------------------------------------------------------------------------
    def check(self, layer: Layer, hardware: Hardware | None = None) -> None:
        """Raise MappingError unless this is a legal Gemmini-TL mapping of ``layer``.

        Legal (spec §3.5): perfect factorisation of every dim; spatial factors only for C at
        L1 and K at L2, each <= pe_dim; temporal loops at L0 only for P, Q, N; and, given a
        hardware instance, tiles that fit the accumulator bank and the scratchpad.
        """
        dims = np.array(layer.dims)
        prod = self.dims_product()
        bad = np.nonzero(prod != dims)[0]
        if bad.size:
            d = int(bad[0])
            raise MappingError(
                f"factors of {DIMS[d]} multiply to {prod[d]} but layer {layer.name!r} has "
                f"{DIMS[d]}={dims[d]} (perfect factorisation required); mapping {self}")
        for j, d in zip(*np.nonzero(self.spatial > 1), strict=True):
            if (int(j), int(d)) not in SPATIAL_LEGAL:
                raise MappingError(f"spatial factor {DIMS[d]}{self.spatial[j, d]}X at L{j} is "
                                   "not legal: only C at L1 and K at L2 may be spatial")
        for d in np.nonzero(self.temporal[0] > 1)[0]:
            if int(d) not in L0_TEMPORAL_LEGAL:
                raise MappingError(f"temporal loop {DIMS[d]}{self.temporal[0, d]} at L0 is not "
                                   "legal: registers allow only P, Q, N loops")
        if hardware is None:
            return
        for name, value in (("C", self.spatial[1, C]), ("K", self.spatial[2, K])):
            if value > hardware.pe_dim:
                raise MappingError(f"spatial {name}={value} exceeds pe_dim={hardware.pe_dim}")
        acc_words, sp_words = tile_words(self, layer)
        if acc_words > hardware.acc_words_per_bank:
            raise MappingError(f"accumulator tile of {acc_words} words exceeds the "
                               f"{hardware.acc_words_per_bank:g} words of one bank")
        if sp_words > hardware.sp_words:
            raise MappingError(f"scratchpad tile of {sp_words} words exceeds the "
                               f"{hardware.sp_words:g}-word scratchpad")

    def is_valid(self, layer: Layer, hardware: Hardware | None = None) -> bool:
        try:
            self.check(layer, hardware)
        except MappingError:
            return False
        return True


def tile_words(mapping: Mapping, layer: Layer) -> tuple[int, int]:
    """(accumulator words per bank, scratchpad words) the mapping needs; exact integers."""
    t = mapping.temporal.copy()
    t[1] *= t[0]  # register loops are folded into the accumulator tile
    s = mapping.spatial
    f1 = t[1] * s[1]
    f2 = f1 * t[2] * s[2]
    acc = int(f1[P] * f1[Q] * f1[K] * f1[N])
    w2 = int(f2[R] * f2[S] * f2[C] * f2[K])
    ws, hs = layer.strides
    pin, qin = f2[P] // (s[1, P] * s[2, P]), f2[Q] // (s[1, Q] * s[2, Q])
    rin, sin = t[1, R] * t[2, R], t[1, S] * t[2, S]
    i2 = int(f2[C] * f2[N] * s[1:3, P].prod() * s[1:3, Q].prod()
             * ((pin - 1) * ws + rin) * ((qin - 1) * hs + sin))
    return acc, w2 + i2


# ----------------------------------------------------------------------------------------------
# Parsing
# ----------------------------------------------------------------------------------------------
_LEVEL_RE = re.compile(r"^L(\d+)\[([A-Z]*)\]$")
_WORD_RE = re.compile(r"^([A-Z])(\d+)([XY]?)$")


def parse_mapping(text: str) -> Mapping:
    """Parse the published mapping string (spec §3.2). Round-trips exactly with ``to_string``."""
    if not isinstance(text, str) or not text.strip():
        raise MappingError(f"mapping string must be a non-empty str, got {text!r}")
    levels = text.strip().split(" - ")
    if len(levels) != NUM_LEVELS:
        raise MappingError(f"mapping {text!r} has {len(levels)} levels separated by ' - '; "
                           f"expected {NUM_LEVELS} (L3, L2, L1, L0)")
    temporal = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    rank = np.zeros((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    for pos, level_text in enumerate(levels):
        words = level_text.split()
        expected = NUM_LEVELS - 1 - pos
        head = _LEVEL_RE.match(words[0]) if words else None
        if head is None:
            raise MappingError(f"level {pos + 1} of {text!r} must start with 'L<j>[<tensors>]', "
                               f"got {words[0] if words else ''!r}")
        if int(head.group(1)) != expected:
            raise MappingError(f"unknown or misplaced level {words[0]!r} in {text!r}: levels "
                               "must be L3, L2, L1, L0 in that order")
        listed: list[int] = []
        for word in words[1:]:
            m = _WORD_RE.match(word)
            if m is None:
                raise MappingError(f"malformed loop {word!r} at L{expected} in {text!r}: expected "
                                   "<dim><factor>[X|Y] with dim one of " + ",".join(DIMS))
            dim, factor, spatial_mark = m.group(1), int(m.group(2)), m.group(3)
            if dim not in DIM_INDEX:
                raise MappingError(f"unknown dimension {dim!r} in {word!r} at L{expected}; "
                                   f"allowed: {', '.join(DIMS)}")
            if factor < 1:
                raise MappingError(f"factor of {word!r} at L{expected} must be >= 1")
            d = DIM_INDEX[dim]
            if spatial_mark:
                if spatial[expected, d] != 1:
                    raise MappingError(f"spatial {dim} given twice at L{expected} in {text!r}")
                spatial[expected, d] = factor
            else:
                if d in listed:
                    raise MappingError(f"temporal {dim} given twice at L{expected} in {text!r}")
                listed.append(d)
                temporal[expected, d] = factor
        # Written outermost first: innermost-first order is the reverse, then the unlisted dims.
        inner_first = [d for d in reversed(listed) if temporal[expected, d] > 1]
        inner_first += [d for d in range(NUM_DIMS) if d not in inner_first]
        for r, d in enumerate(inner_first):
            rank[expected, d] = r
    return Mapping(temporal, spatial, rank)


# ----------------------------------------------------------------------------------------------
# Rounding real-valued factors to a valid mapping (spec §5.6)
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def divisors(n: int) -> tuple[int, ...]:
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


def nearest_divisor(value: float, n: int, *, round_down: bool = False) -> int:
    """Divisor of n nearest to value (ties go up); ``round_down``: the largest divisor <= value."""
    divs = divisors(n)
    if round_down:
        below = [d for d in divs if d <= value]
        return below[-1] if below else 1
    idx = int(np.searchsorted(divs, value))
    if idx == 0:
        return divs[0]
    if idx >= len(divs):
        return divs[-1]
    lo, hi = divs[idx - 1], divs[idx]
    return lo if value - lo < hi - value else hi


def round_mapping(temporal: np.ndarray, spatial: np.ndarray, rank: np.ndarray, layer: Layer,
                  *, round_down: bool = False, max_spatial: int | None = None) -> Mapping:
    """Snap real-valued factors [4, 7] to a valid mapping of ``layer``.

    Greedy and innermost-first as in DOSA (spec §5.6): spatial factors first (L0..L2), then
    temporal factors of L0..L2, each snapped to a divisor of what the dim has left; DRAM (L3)
    absorbs the remainder. Only legal coordinates (C/K spatial at L1/L2, P/Q/N at L0) are kept;
    the others are set to 1. ``max_spatial`` bounds the spatial factors (e.g. a fixed pe_dim).
    """
    temporal = np.asarray(temporal, dtype=np.float64)
    spatial = np.asarray(spatial, dtype=np.float64)
    if not (np.all(np.isfinite(temporal)) and np.all(np.isfinite(spatial))):
        raise MappingError("cannot round a mapping with non-finite factors")
    dims = layer.dims
    left = list(dims)
    t_out = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    s_out = np.ones((NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    for j, d in sorted(SPATIAL_LEGAL):
        value = spatial[j, d]
        if max_spatial is not None:
            value = min(value, max_spatial)
        s = nearest_divisor(max(1.0, value), left[d], round_down=round_down)
        if max_spatial is not None and s > max_spatial:
            s = nearest_divisor(max_spatial, left[d], round_down=True)
        s_out[j, d] = s
        left[d] //= s
    for j in range(NUM_LEVELS - 1):
        for d in range(NUM_DIMS):
            if j == 0 and d not in L0_TEMPORAL_LEGAL:
                continue
            value = max(1.0, float(temporal[j, d]))
            t = nearest_divisor(value if round_down else float(np.round(value)), left[d],
                                round_down=round_down)
            t_out[j, d] = t
            left[d] //= t
    t_out[3] = left
    return Mapping(t_out, s_out, np.asarray(rank, dtype=np.int64))


def stack_mappings(mappings: Sequence[Mapping]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mapping objects -> model tensors (temporal, spatial, rank), each [B, 4, 7]."""
    temporal = torch.from_numpy(np.stack([m.temporal for m in mappings]).astype(np.float64))
    spatial = torch.from_numpy(np.stack([m.spatial for m in mappings]).astype(np.float64))
    rank = torch.from_numpy(np.stack([m.rank for m in mappings]).copy())
    return temporal, spatial, rank
