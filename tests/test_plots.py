"""dosa.plots: what the notebooks print and save must be portable (no absolute paths, one
header row per CSV)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from dosa.claims import ARTIFACTS_DIR_ENV
from dosa.plots import display_path, flatten_columns, save_figure, save_table


@pytest.fixture
def artifacts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "repo" / "artifacts"
    monkeypatch.setenv(ARTIFACTS_DIR_ENV, str(root))
    return root


def test_save_figure_returns_the_file_and_display_path_is_relative(artifacts: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    path = save_figure(fig, "x")
    plt.close(fig)
    assert path == artifacts / "figures" / "x.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert display_path(path) == "artifacts/figures/x.png"


def test_display_path_outside_artifacts_shows_the_name_only(artifacts: Path,
                                                            tmp_path: Path) -> None:
    assert display_path(tmp_path / "elsewhere" / "y.csv") == "y.csv"


def test_flatten_columns_joins_levels() -> None:
    frame = pd.DataFrame({"workload": ["bert"], "config": ["dosa"], "edp": [1.0]})
    wide = frame.pivot_table(index="workload", columns="config", values="edp",
                             aggfunc=["median", "min"]).reset_index()
    flat = flatten_columns(wide)
    assert list(flat.columns) == ["workload", "median_dosa", "min_dosa"]
    assert flatten_columns(frame) is frame


def test_save_table_writes_one_header_row(artifacts: Path) -> None:
    frame = pd.DataFrame({"workload": ["bert", "unet"], "config": ["dosa", "dosa"],
                          "edp": [1.0, 2.0]})
    wide = frame.groupby(["workload", "config"])["edp"].agg(["median", "max"]).unstack("config")
    path = save_table(wide.reset_index(), "t")
    back = pd.read_csv(path)
    assert list(back.columns) == ["workload", "median_dosa", "max_dosa"]
    assert back["workload"].tolist() == ["bert", "unet"]
    assert display_path(path) == "artifacts/tables/t.csv"
