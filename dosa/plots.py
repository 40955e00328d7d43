"""Figure and table helpers for the notebooks: consistent style, atomic writes to artifacts/."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from dosa.claims import ARTIFACTS_DIR_ENV, artifacts_dir  # noqa: E402
from dosa.io import atomic_write_bytes, atomic_write_text  # noqa: E402

PROFILES = ("smoke", "full")


def check_profile(profile: str) -> str:
    """Notebook parameter check: the run profile must be one of PROFILES.

    A smoke run never writes into the real artifacts: unless ``DOSA_ARTIFACTS_DIR`` already
    points somewhere (``make test`` points it into build/), it gets a fresh temporary folder.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if profile == "smoke" and not os.environ.get(ARTIFACTS_DIR_ENV):
        os.environ[ARTIFACTS_DIR_ENV] = tempfile.mkdtemp(prefix="dosa-smoke-")
    return profile


def setup_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid")


def save_figure(fig: plt.Figure, name: str) -> Path:
    """Save ``fig`` as artifacts/figures/<name>.png (atomically) and return the path."""
    path = artifacts_dir() / "figures" / f"{name}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def save_table(frame: pd.DataFrame, name: str, *, index: bool = False) -> Path:
    """Save ``frame`` as artifacts/tables/<name>.csv (atomically) and return the path."""
    path = artifacts_dir() / "tables" / f"{name}.csv"
    atomic_write_text(path, frame.to_csv(index=index))
    return path
