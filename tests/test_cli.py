"""``dosa evaluate --csv IN --out OUT`` through :func:`dosa.cli.main`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dosa import data
from dosa.cli import main
from dosa.hardware import DOSA_BASE, Hardware
from dosa.workload import DIMS, Layer

EXAMPLE = "L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1"
CONV = "L3[WIO] C4 P4 - L2[WI] N1 K16X - L1[O] K4 R3 S3 P7 Q28 C16X - L0[W] N1"
MODEL_COLUMNS = ["model.cycle", "model.energy", "model.area"]


def _row(layer: Layer, mapping: str, hw: Hardware) -> dict[str, object]:
    out: dict[str, object] = {f"prob.{d}": getattr(layer, d) for d in DIMS}
    out |= {"prob.Wstride": layer.Wstride, "prob.Hstride": layer.Hstride,
            "mapping.mapping": mapping, "target.cycle": 1.0}
    return out | hw.to_arch_columns()


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    rows = [_row(Layer("ex", P=56, Q=56, C=64, K=64), EXAMPLE, Hardware(16, 28.5, 56)),
            _row(Layer("conv", R=3, S=3, P=28, Q=28, C=64, K=64), CONV, DOSA_BASE)]
    path = tmp_path / "in.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def real_csv(tmp_path: Path) -> Path:
    """The first 50 rows of the published Timeloop dataset."""
    if not data.available("timeloop"):
        pytest.skip("published Timeloop dataset not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")
    path = tmp_path / "real.csv"
    data.load_timeloop_dataset().head(50).to_csv(path, index=False)
    return path


def test_evaluate_synthetic_csv(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.csv"
    assert main(["evaluate", "--csv", str(synthetic_csv), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    original = pd.read_csv(synthetic_csv)
    assert list(frame.columns) == list(original.columns) + MODEL_COLUMNS
    assert len(frame) == 2
    pd.testing.assert_frame_equal(frame[original.columns], original)
    assert frame.loc[0, "model.cycle"] == 200_704
    assert round(frame.loc[0, "model.energy"], 2) == 64.35
    assert frame.loc[1, "model.area"] == pytest.approx(DOSA_BASE.area_mm2(), rel=1e-9)
    assert (frame[MODEL_COLUMNS] > 0).all().all()


def test_evaluate_replaces_stale_model_columns(synthetic_csv: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    second = tmp_path / "second.csv"
    assert main(["evaluate", "--csv", str(synthetic_csv), "--out", str(first)]) == 0
    stale = pd.read_csv(first)
    stale["model.cycle"] = -1.0
    stale.to_csv(first, index=False)
    assert main(["evaluate", "--csv", str(first), "--out", str(second)]) == 0
    frame = pd.read_csv(second)
    assert list(frame.columns).count("model.cycle") == 1
    assert frame.loc[0, "model.cycle"] == 200_704


@pytest.mark.data
def test_evaluate_real_rows(real_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(real_csv), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 50
    lat = np.abs(frame["model.cycle"] / frame["target.cycle"] - 1)
    en = np.abs(frame["model.energy"] / frame["target.energy"] - 1)
    area = np.abs(frame["model.area"] / frame["target.area"] - 1)
    assert lat.mean() < 1e-3 and en.mean() < 5e-3 and area.max() < 0.05


def test_missing_column_exit_code_and_no_output(synthetic_csv: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.csv"
    pd.read_csv(synthetic_csv).drop(columns=["prob.K"]).to_csv(broken, index=False)
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "dosa evaluate: error:" in err
    assert "prob.K" in err and str(broken) in err
    assert not out.exists()
    assert set(tmp_path.iterdir()) == {broken, synthetic_csv}  # no temporary files either


@pytest.mark.parametrize("breakage", ["zero_c", "bad_factors", "bad_string", "negative_sp"])
def test_failures_never_write_out(synthetic_csv: Path, tmp_path: Path, breakage: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(synthetic_csv)
    if breakage == "zero_c":
        frame.loc[1, "prob.C"] = 0
        expected = "prob.C"
    elif breakage == "bad_factors":
        frame.loc[0, "prob.P"] = 28
        expected = "do not multiply"
    elif breakage == "bad_string":
        frame.loc[0, "mapping.mapping"] = "L3[WIO] Q7"
        expected = "1 levels"
    else:
        frame.loc[1, "arch.mem2_depth"] = -8
        expected = "row 1 column arch.mem2_depth must be a positive number"
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(src), "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_existing_out_is_left_untouched_on_failure(synthetic_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(synthetic_csv)
    frame.loc[0, "prob.C"] = 0
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    out.write_text("previous result\n")
    assert main(["evaluate", "--csv", str(src), "--out", str(out)]) == 2
    assert out.read_text() == "previous result\n"


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_requires_both_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--csv", "x.csv"])
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err
