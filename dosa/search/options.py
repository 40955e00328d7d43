"""Checks of search options shared by every method, so bad input fails with the same message.

Also the one representation of the hardware bounds (:class:`HardwareBounds`) and of the random
hardware grid of spec §1.2 that the baselines sample from, so DOSA, random search and BO agree
on what "inside the bounds" means.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from dosa.hardware import Hardware, check_pe_dim

T = TypeVar("T")

#: log2 ranges of the random hardware of ``gen_random_hw_config`` (spec §1.2), inclusive:
#: pe_dim 2..128, scratchpad and accumulator 1..2048 KB, all powers of two.
LOG2_PE_RANGE = (1, 7)
LOG2_SP_KB_RANGE = (0, 11)
LOG2_ACC_KB_RANGE = (0, 11)

#: The seeds the original scripts name (spec §1.2; commented out in run_search.py): the
#: faithful baselines use them, so their hardware lists are the original's.
PAPER_SEEDS = (0, 100, 1111, 8888, 99999)

#: Largest seed: numpy's legacy RandomState (used by scikit-optimize) takes 32-bit seeds.
SEED_MAX = 2**32 - 1


def positive_int(name: str, value: object, *, optional: bool = False) -> int | None:
    """``value`` as an int >= 1 (bools and floats rejected); None passes when ``optional``."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def positive_number(name: str, value: object, *, optional: bool = False) -> float | None:
    """``value`` as a finite float > 0; None passes when ``optional``."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def config_from_options(cls: type[T], options: dict[str, Any], what: str) -> T:
    """``cls(**options)`` for a method's options dataclass, refusing unknown option names
    (listing the allowed ones) instead of a TypeError deep inside the search."""
    fields = getattr(cls, "__dataclass_fields__", {})
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"unknown {what} option(s) {unknown}; allowed: {sorted(fields)}")
    return cls(**options)


def check_objective(value: object) -> str:
    """``value`` as one of :data:`dosa.evaluation.OBJECTIVES` (one message for every method)."""
    from dosa.evaluation import OBJECTIVES

    if value not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {value!r}")
    return str(value)


def check_seed(value: object) -> int:
    """``value`` as an int in [0, 2**32 - 1]; one message for every method.

    Negative or huge seeds would otherwise fail deep inside numpy or scikit-optimize (or, for
    floats and bools, silently seed something other than what the user meant).
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) \
            or not 0 <= value <= SEED_MAX:
        raise ValueError(f"seed must be an integer in [0, {SEED_MAX}], got {value!r}")
    return int(value)


@dataclass(frozen=True)
class HardwareBounds:
    """Hardware limits of a search: ``pe_dim`` fixes the array side, the rest are upper bounds.

    Same fields and the same meaning as the bounds of :class:`dosa.search.dosa_gd.DosaConfig`
    (``feasible`` has DosaConfig.feasible's semantics), so the baselines and DOSA honour a
    bound identically. Area is the shipped area model's (:meth:`Hardware.area_mm2`). Values are
    validated and normalised (ints for the array sizes, floats for the rest) on construction.
    """

    pe_dim: int | None = None
    max_pe_dim: int | None = None
    max_sp_kb: float | None = None
    max_acc_kb: float | None = None
    max_area_mm2: float | None = None

    def __post_init__(self) -> None:
        if self.pe_dim is not None:
            object.__setattr__(self, "pe_dim", check_pe_dim(self.pe_dim, "pe_dim"))
        object.__setattr__(self, "max_pe_dim",
                           positive_int("max_pe_dim", self.max_pe_dim, optional=True))
        for name in ("max_sp_kb", "max_acc_kb", "max_area_mm2"):
            object.__setattr__(self, name,
                               positive_number(name, getattr(self, name), optional=True))
        if self.pe_dim is not None and self.max_pe_dim is not None \
                and self.pe_dim > self.max_pe_dim:
            raise ValueError(f"pe_dim={self.pe_dim} exceeds max_pe_dim={self.max_pe_dim}")

    def excludes_grid_points(self) -> bool:
        """Whether an upper bound rules out a point of the grid (a fixed pe_dim alone does not).

        Bounds that exclude nothing leave the searches' random draws exactly as without them.
        """
        return len(self.candidates()) < grid_size(self.pe_dim)

    def feasible(self, hw: Hardware) -> bool:
        """Does ``hw`` honour the bounds (and hold at least one accumulator word per row of
        the array, without which no mapping fits — only possible for a fixed pe_dim > 256)?"""
        return (hw.acc_words_per_bank >= 1
                and (self.max_pe_dim is None or hw.pe_dim <= self.max_pe_dim)
                and (self.pe_dim is None or hw.pe_dim == self.pe_dim)
                and (self.max_sp_kb is None or hw.sp_kb <= self.max_sp_kb)
                and (self.max_acc_kb is None or hw.acc_kb <= self.max_acc_kb)
                and (self.max_area_mm2 is None or hw.area_mm2() <= self.max_area_mm2))

    def candidates(self) -> list[Hardware]:
        """The points of the random hardware grid (spec §1.2) inside the bounds.

        pe_dim 2^1..2^7 (or the fixed ``pe_dim``), scratchpad and accumulator 2^0..2^11 KB;
        ordered by pe_dim, then scratchpad, then accumulator. Possibly empty.
        """
        return list(_grid_candidates(self))

    def require_candidates(self) -> list[Hardware]:
        """:meth:`candidates`, or a ValueError naming the bounds when none fits.

        Searches call it before any work, so an impossible request fails at once.
        """
        found = self.candidates()
        if not found:
            pe = f"pe_dim {self.pe_dim}" if self.pe_dim is not None else "pe_dim 2..128"
            raise ValueError(f"no hardware of the search grid ({pe}, sp_kb and acc_kb 1..2048 "
                             f"KB, powers of two) satisfies the bounds ({self})")
        return found

    def to_dict(self) -> dict[str, Any]:
        """The five fields, for a result's config."""
        return asdict(self)

    def __str__(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.to_dict().items())


def grid_size(pe_dim: int | None = None) -> int:
    """Number of grid points: 7 x 12 x 12, or 12 x 12 with a fixed ``pe_dim``."""
    sizes = [r[1] - r[0] + 1 for r in (LOG2_PE_RANGE, LOG2_SP_KB_RANGE, LOG2_ACC_KB_RANGE)]
    return math.prod(sizes[1:] if pe_dim is not None else sizes)


def grid_hardware(log2_pe: int | None, log2_sp: int, log2_acc: int,
                  pe_dim: int | None = None) -> Hardware:
    """The grid point with these log2 coordinates (``pe_dim`` overrides ``log2_pe``)."""
    pe = int(pe_dim) if pe_dim is not None else 2 ** int(log2_pe)  # type: ignore[arg-type]
    return Hardware(pe, float(2 ** int(log2_sp)), float(2 ** int(log2_acc)))


@lru_cache(maxsize=64)
def _grid_candidates(bounds: HardwareBounds) -> tuple[Hardware, ...]:
    # At most 7 x 12 x 12 = 1008 points; ``feasible`` per point keeps the semantics identical
    # to DosaConfig.feasible (same scalar area call) and takes well under a second. Cached per
    # bounds because BO and random search both ask.
    pes: list[int | None] = ([None] if bounds.pe_dim is not None
                             else list(range(LOG2_PE_RANGE[0], LOG2_PE_RANGE[1] + 1)))
    sps = range(LOG2_SP_KB_RANGE[0], LOG2_SP_KB_RANGE[1] + 1)
    accs = range(LOG2_ACC_KB_RANGE[0], LOG2_ACC_KB_RANGE[1] + 1)
    points = (grid_hardware(p, s, a, bounds.pe_dim)
              for p, s, a in itertools.product(pes, sps, accs))
    return tuple(hw for hw in points if bounds.feasible(hw))
