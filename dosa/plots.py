"""Figure and table helpers for the notebooks: consistent style, atomic writes to artifacts/.

No backend is forced here: headless scripts get matplotlib's own default (Agg), and a Jupyter
kernel keeps its inline backend, so executed notebooks hold their figures.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from dosa.claims import artifacts_dir, display_path
from dosa.io import atomic_write_bytes, atomic_write_text

__all__ = ["display_path", "flatten_columns", "save_figure", "save_table", "setup_style"]

log = logging.getLogger(__name__)


def setup_style() -> None:
    """One seaborn theme for every notebook figure."""
    sns.set_theme(context="notebook", style="whitegrid")


def save_figure(fig: plt.Figure, name: str) -> Path:
    """Save ``fig`` as artifacts/figures/<name>.png (atomically) and return the path.

    The figure stays open so the notebook can still display it (``plt.show()``).
    """
    path = artifacts_dir() / "figures" / f"{name}.png"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    log.info("wrote %s", path)
    return path


def flatten_columns(frame: pd.DataFrame, sep: str = "_") -> pd.DataFrame:
    """A copy of ``frame`` whose MultiIndex columns are joined into single strings.

    A CSV of MultiIndex columns gets a multi-row header that other tools misread.
    """
    if not isinstance(frame.columns, pd.MultiIndex):
        return frame
    out = frame.copy()
    out.columns = [sep.join(str(part) for part in col if str(part) != "") for col in frame.columns]
    return out


def save_table(frame: pd.DataFrame, name: str, *, index: bool = False) -> Path:
    """Save ``frame`` as artifacts/tables/<name>.csv (atomically) and return the path.

    MultiIndex columns are flattened first (see :func:`flatten_columns`).
    """
    path = artifacts_dir() / "tables" / f"{name}.csv"
    atomic_write_text(path, flatten_columns(frame).to_csv(index=index))
    log.info("wrote %s", path)
    return path
