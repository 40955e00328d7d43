"""Scoring rows in the published CSV format (evaluate_frame) and whole-network designs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dosa import data
from dosa.evaluation import (
    MAPPING_COLUMN,
    PROBLEM_COLUMNS,
    evaluate_frame,
    evaluate_layers,
    score_network,
)
from dosa.hardware import DOSA_BASE, Hardware, area_model
from dosa.mapping import MappingError, parse_mapping
from dosa.workload import DIMS, Layer, Network

EXAMPLE = "L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1"
EXAMPLE_LAYER = Layer("example", P=56, Q=56, C=64, K=64)
CONV = "L3[WIO] C4 P4 - L2[WI] N1 K16X - L1[O] K4 R3 S3 P7 Q28 C16X - L0[W] N1"
CONV_LAYER = Layer("conv", R=3, S=3, P=28, Q=28, C=64, K=64)
STRIDED = "L3[WIO] Q14 K4 - L2[WI] N1 K16X - L1[O] R7 S7 P8 C3X - L0[W] P14"
STRIDED_LAYER = Layer("conv1", R=7, S=7, P=112, Q=14, C=3, K=64, Wstride=2, Hstride=2)


def row(layer: Layer, mapping: str, hw: Hardware) -> dict[str, object]:
    """One row in the published column format."""
    out: dict[str, object] = {f"prob.{d}": getattr(layer, d) for d in DIMS}
    out |= {"prob.Wstride": layer.Wstride, "prob.Hstride": layer.Hstride,
            "prob.shape": "cnn-layer", MAPPING_COLUMN: mapping}
    out |= hw.to_arch_columns()
    return out


def synthetic_frame() -> pd.DataFrame:
    return pd.DataFrame([
        row(EXAMPLE_LAYER, EXAMPLE, Hardware(16, 28.5, 56)),
        row(CONV_LAYER, CONV, DOSA_BASE),
        row(STRIDED_LAYER, STRIDED, Hardware(64, 512, 256)),
        row(EXAMPLE_LAYER, EXAMPLE, Hardware(32, 1024, 2048)),
    ])


def test_evaluate_frame_synthetic() -> None:
    frame = synthetic_frame()
    for layer, m in ((EXAMPLE_LAYER, EXAMPLE), (CONV_LAYER, CONV), (STRIDED_LAYER, STRIDED)):
        parse_mapping(m).check(layer)
    out = evaluate_frame(frame)
    assert list(out.columns) == ["model.cycle", "model.energy", "model.area"]
    assert out.index.equals(frame.index)
    assert all(out[c].dtype == np.float64 for c in out.columns)
    # the worked example (spec §4.9) on its own min-HW
    assert out.loc[0, "model.cycle"] == 200_704
    assert round(out.loc[0, "model.energy"], 2) == 64.35
    # each row is scored with its own hardware: same mapping, bigger buffers -> more energy
    assert out.loc[3, "model.cycle"] == out.loc[0, "model.cycle"]
    assert out.loc[3, "model.energy"] > out.loc[0, "model.energy"]
    assert out.loc[1, "model.area"] == pytest.approx(DOSA_BASE.area_mm2(), rel=1e-12)
    assert out.loc[2, "model.area"] == pytest.approx(
        float(area_model().predict(64, 512, 256)), rel=1e-12)
    # agrees with the object API
    hws = [Hardware(16, 28.5, 56), DOSA_BASE, Hardware(64, 512, 256), Hardware(32, 1024, 2048)]
    layers = [EXAMPLE_LAYER, CONV_LAYER, STRIDED_LAYER, EXAMPLE_LAYER]
    ref = evaluate_layers(layers, [parse_mapping(r) for r in frame[MAPPING_COLUMN]], hws)
    np.testing.assert_array_equal(out["model.cycle"].to_numpy(), ref.cycles.numpy())
    np.testing.assert_array_equal(out["model.energy"].to_numpy(), ref.energy_uj.numpy())


def test_evaluate_frame_keeps_a_custom_index() -> None:
    frame = synthetic_frame()
    frame.index = [10, 30, 20, 40]
    out = evaluate_frame(frame)
    assert list(out.index) == [10, 30, 20, 40]
    assert out.loc[10, "model.cycle"] == 200_704


@pytest.mark.parametrize("column", ["prob.C", "prob.Wstride", MAPPING_COLUMN, "arch.mem2_depth"])
def test_missing_column_is_named(column: str) -> None:
    frame = synthetic_frame().drop(columns=[column])
    with pytest.raises(ValueError, match=rf"my.csv: missing column\(s\) \['{column}'\]"):
        evaluate_frame(frame, source="my.csv")


@pytest.mark.parametrize(("column", "value"), [("prob.C", 0), ("prob.K", -64), ("prob.P", 2.5),
                                               ("prob.Hstride", np.nan)])
def test_bad_problem_value_names_row_and_column(column: str, value: float) -> None:
    frame = synthetic_frame()
    frame[column] = frame[column].astype(np.float64)
    frame.loc[2, column] = value
    with pytest.raises(ValueError, match=rf"row 2 column {column} must be a positive integer"):
        evaluate_frame(frame)


def test_mapping_that_does_not_factor_the_layer() -> None:
    frame = synthetic_frame()
    frame.loc[1, "prob.K"] = 128
    with pytest.raises(ValueError, match="row 1: mapping factors do not multiply"):
        evaluate_frame(frame)


def test_bad_mapping_string_names_the_row() -> None:
    frame = synthetic_frame()
    frame.loc[3, MAPPING_COLUMN] = EXAMPLE.replace("Q7", "Z7")
    with pytest.raises(ValueError, match="row 3: unknown dimension 'Z'") as info:
        evaluate_frame(frame)
    assert isinstance(info.value.__cause__, MappingError)


@pytest.mark.parametrize("column", ["arch.mem2_depth", "arch.mem1_depth", "arch.pe"])
def test_negative_buffer_size_via_arch_columns(column: str) -> None:
    frame = synthetic_frame()
    frame.loc[0, column] = -frame.loc[0, column]
    with pytest.raises(ValueError, match=f"row 0 column {column} must be a positive number"):
        evaluate_frame(frame)


def test_score_network_is_count_weighted() -> None:
    net = Network("two", (Layer("a", P=56, Q=56, C=64, K=64, count=3),
                          Layer("b", R=3, S=3, P=28, Q=28, C=64, K=64, count=2)))
    hw = Hardware(16, 256, 64)
    mappings = [parse_mapping(EXAMPLE), parse_mapping(CONV)]
    score = score_network(net, mappings, hw)
    per = evaluate_layers(net.layers, mappings, hw)
    cycles = 3 * per.cycles[0].item() + 2 * per.cycles[1].item()
    energy = 3 * per.energy_uj[0].item() + 2 * per.energy_uj[1].item()
    assert score.cycles == pytest.approx(cycles, rel=1e-15)
    assert score.energy_uj == pytest.approx(energy, rel=1e-15)
    assert score.edp == pytest.approx(cycles * energy, rel=1e-15)
    with pytest.raises(MappingError, match="scratchpad tile"):
        score_network(net, mappings, Hardware(16, 8, 64))
    score_network(net, mappings, Hardware(16, 8, 64), check=False)  # unchecked scoring works
    with pytest.raises(ValueError, match="1 mappings for 2 layers"):
        score_network(net, mappings[:1], hw)


@pytest.mark.data
def test_evaluate_frame_first_rows_of_dataset() -> None:
    if not data.available("timeloop"):
        pytest.skip("published Timeloop dataset not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")
    df = data.load_timeloop_dataset().head(200)
    out = evaluate_frame(df)
    assert set(PROBLEM_COLUMNS) <= set(df.columns)
    np.testing.assert_allclose(out["model.cycle"], df["target.cycle"], rtol=2e-2)
    np.testing.assert_allclose(out["model.energy"], df["target.energy"], rtol=0.12)
    np.testing.assert_allclose(out["model.area"], df["target.area"], rtol=0.05)
