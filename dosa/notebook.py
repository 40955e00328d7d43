"""Checks of the notebooks' papermill parameters.

Papermill injects parameters as plain values (``-p seeds -1`` gives the int ``-1``), so a typo
would otherwise surface deep inside a search as a TypeError. Each check raises a one-line
``ValueError`` naming the parameter and what it accepts, and returns the value to use.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from typing import Any

from dosa.claims import ARTIFACTS_DIR_ENV, RUNS_DIR_ENV
from dosa.workload import BUILTIN_NETWORKS

__all__ = ["MAX_SEED", "PROFILES", "check_profile", "check_seeds", "check_workloads"]

PROFILES: tuple[str, ...] = ("smoke", "full")
#: Seeds feed numpy/torch generators, which accept unsigned 32-bit values.
MAX_SEED = 2**32 - 1


def check_profile(profile: Any) -> str:
    """The run profile must be one of PROFILES.

    A smoke run never writes into the real artifacts or the real run cache: unless
    ``DOSA_ARTIFACTS_DIR`` / ``DOSA_RUNS_DIR`` already point somewhere (``make test`` points
    them into build/), each gets a fresh temporary folder.
    """
    if not isinstance(profile, str) or profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    if profile == "smoke":
        for env in (ARTIFACTS_DIR_ENV, RUNS_DIR_ENV):
            if not os.environ.get(env):
                os.environ[env] = tempfile.mkdtemp(prefix="dosa-smoke-")
    return profile


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes)


def check_seeds(value: Any) -> list[int] | None:
    """``seeds``: None (the profile's default) or a non-empty list of distinct ints in
    [0, MAX_SEED]."""
    if value is None:
        return None
    allowed = (f"seeds must be None or a non-empty list of distinct integers in [0, {MAX_SEED}] "
               f"(e.g. papermill -y 'seeds: [0, 1]'); got {value!r}")
    if not _is_list(value) or not value:
        raise ValueError(allowed)
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ValueError(allowed)
    if len(set(value)) != len(value):
        raise ValueError(allowed)
    return [int(s) for s in value]


def check_workloads(value: Any) -> list[str] | None:
    """``workloads``: None (the profile's default) or a non-empty list of distinct built-in
    network names."""
    if value is None:
        return None
    allowed = (f"workloads must be None or a non-empty list of distinct names from "
               f"{', '.join(BUILTIN_NETWORKS)} (e.g. papermill -y 'workloads: [bert]'); "
               f"got {value!r}")
    if not _is_list(value) or not value:
        raise ValueError(allowed)
    if any(not isinstance(w, str) or w not in BUILTIN_NETWORKS for w in value):
        raise ValueError(allowed)
    if len(set(value)) != len(value):
        raise ValueError(allowed)
    return list(value)
