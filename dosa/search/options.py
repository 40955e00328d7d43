"""Checks of search options shared by every method, so bad input fails with the same message."""

from __future__ import annotations

import math

import numpy as np


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
