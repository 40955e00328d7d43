"""Scoring rows in the published CSV format (evaluate_frame) and whole-network designs."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from layers import SAMPLE_LAYERS

from dosa import data
from dosa.evaluation import (
    MAPPING_COLUMN,
    PROBLEM_COLUMNS,
    evaluate_frame,
    evaluate_layers,
    score_network,
    tile_words_batch,
)
from dosa.hardware import DOSA_BASE, Hardware, area_model, hardware_from_arch_columns
from dosa.mapping import Mapping, MappingError, parse_mapping, round_mapping, tile_words
from dosa.workload import DIMS, Layer, Network

EXAMPLE = "L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1"
EXAMPLE_LAYER = Layer("example", P=56, Q=56, C=64, K=64)
CONV = "L3[WIO] C4 P4 - L2[WI] N1 K16X - L1[O] K4 R3 S3 P7 Q28 C16X - L0[W] N1"
CONV_LAYER = Layer("conv", R=3, S=3, P=28, Q=28, C=64, K=64)
STRIDED = "L3[WIO] Q14 K4 - L2[WI] N1 K16X - L1[O] R7 S7 P8 C3X - L0[W] P14"
STRIDED_LAYER = Layer("conv1", R=7, S=7, P=112, Q=14, C=3, K=64, Wstride=2, Hstride=2)
#: CONV's accumulator tile (K4 P7 Q28 = 784 words) needs a 64 KB accumulator at pe_dim 16: on
#: DOSA_BASE (32 KB, 512 words per bank) it is physically impossible.
CONV_HW = Hardware(16, 128, 64)


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
        row(CONV_LAYER, CONV, CONV_HW),
        row(STRIDED_LAYER, STRIDED, Hardware(64, 512, 256)),
        row(EXAMPLE_LAYER, EXAMPLE, Hardware(32, 1024, 2048)),
    ])


def test_evaluate_frame_synthetic() -> None:
    frame = synthetic_frame()
    for layer, m in ((EXAMPLE_LAYER, EXAMPLE), (CONV_LAYER, CONV), (STRIDED_LAYER, STRIDED)):
        parse_mapping(m).check(layer)
    out = evaluate_frame(frame)
    assert list(out.columns) == ["model.cycle", "model.energy", "model.area", "model.valid"]
    assert out.index.equals(frame.index)
    assert all(out[c].dtype == np.float64 for c in out.columns[:3])
    assert out["model.valid"].dtype == bool and out["model.valid"].all()
    # the worked example (spec §4.9) on its own min-HW
    assert out.loc[0, "model.cycle"] == 200_704
    assert round(out.loc[0, "model.energy"], 2) == 64.36  # spec §4.9, pat energies
    # each row is scored with its own hardware: same mapping, bigger buffers -> more energy
    assert out.loc[3, "model.cycle"] == out.loc[0, "model.cycle"]
    assert out.loc[3, "model.energy"] > out.loc[0, "model.energy"]
    assert out.loc[1, "model.area"] == pytest.approx(CONV_HW.area_mm2(), rel=1e-12)
    assert out.loc[2, "model.area"] == pytest.approx(
        float(area_model().predict(64, 512, 256)), rel=1e-12)
    # agrees with the object API
    hws = [Hardware(16, 28.5, 56), CONV_HW, Hardware(64, 512, 256), Hardware(32, 1024, 2048)]
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


# ----------------------------------------------------------------------------------------------
# Physically impossible rows: refused by default, scored and marked with allow_invalid
# ----------------------------------------------------------------------------------------------
#: 25,088-word accumulator tile (L1 K8 P56 Q56) of EXAMPLE_LAYER.
BIG_ACC = "L3[WIO] K2 - L2[WI] N1 K4X - L1[O] K8 C4 P56 Q56 C16X - L0[W] N1"
SPATIAL_K64 = "L3[WIO] Q7 - L2[WI] N1 K64X - L1[O] C4 P56 Q8 C16X - L0[W] N1"
SPATIAL_P_AT_L1 = "L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P14 Q8 C16X P4X - L0[W] N1"
TEMPORAL_K_AT_L0 = "L3[WIO] Q7 K4 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] K2"
#: 16x16 PEs with a 32-byte scratchpad (2 rows of 16 bytes) and 64 KB of accumulator.
TINY_SP = Hardware(16, 32 / 1024, 64)


def impossible_frame(kind: str) -> tuple[pd.DataFrame, str, str]:
    """A valid row 0, then the impossible row 1; the column and reason the error must name."""
    good = row(EXAMPLE_LAYER, EXAMPLE, Hardware(32, 1024, 2048))
    bad = dict(good)
    if kind == "spatial_k64":
        bad = row(EXAMPLE_LAYER, SPATIAL_K64, Hardware(32, 1024, 2048))
        assert bad["arch.pe"] == 1024
        col, reason = MAPPING_COLUMN, r"spatial K64X at L2 exceeds the 32x32 PE array"
    elif kind == "accumulator":
        bad = row(EXAMPLE_LAYER, BIG_ACC, Hardware(16, 256, 8))
        assert bad["arch.mem1_depth"] == 128
        col, reason = MAPPING_COLUMN, (r"accumulator tile of 25088 words overflows one "
                                       r"accumulator bank of 128 words \(allowed: <= 128")
    elif kind == "spatial_p_l1":
        bad = row(EXAMPLE_LAYER, SPATIAL_P_AT_L1, Hardware(16, 256, 64))
        col, reason = MAPPING_COLUMN, r"spatial P4X at L1 \(Accumulator\).*\(allowed: spatial C"
    elif kind == "temporal_k_l0":
        bad = row(EXAMPLE_LAYER, TEMPORAL_K_AT_L0, Hardware(16, 256, 64))
        col, reason = MAPPING_COLUMN, r"temporal loop K2 at L0.*\(allowed: temporal P, Q, N"
    elif kind == "tiny_scratchpad":
        bad = row(EXAMPLE_LAYER, EXAMPLE, TINY_SP)
        sp_bytes = bad["arch.mem2_depth"] * bad["arch.mem2_width"] / 8  # type: ignore[operator]
        assert sp_bytes == 32
        col, reason = MAPPING_COLUMN, r"scratchpad tile of \d+ words overflows the 32-word"
    elif kind == "pe_200":
        bad["arch.pe"] = 200
        col, reason = "arch.pe", r"200 PEs do not form a square.*\(allowed: .*196 \(14x14\)"
    elif kind == "hdilation":
        good |= {"prob.Hdilation": 1, "prob.Wdilation": 1}
        bad = good | {"prob.Hdilation": 2}
        col, reason = "prob.Hdilation", r"dilation 2 is not modelled.*\(allowed: 1\)"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return pd.DataFrame([good, bad]), col, reason


IMPOSSIBLE = ["spatial_k64", "accumulator", "spatial_p_l1", "temporal_k_l0", "tiny_scratchpad",
              "pe_200", "hdilation"]


@pytest.mark.parametrize("kind", IMPOSSIBLE)
def test_impossible_row_is_refused(kind: str) -> None:
    frame, col, reason = impossible_frame(kind)
    with pytest.raises(ValueError, match=rf"^rows.csv: row 1 column {col}: {reason}") as info:
        evaluate_frame(frame, source="rows.csv")
    assert "\n" not in str(info.value)
    assert "(allowed: " in str(info.value)


@pytest.mark.parametrize("kind", IMPOSSIBLE)
def test_allow_invalid_scores_and_marks_the_row(kind: str) -> None:
    frame, col, reason = impossible_frame(kind)
    out = evaluate_frame(frame, source="rows.csv", allow_invalid=True)
    assert list(out["model.valid"]) == [True, False]
    assert out["model.valid"].dtype == bool
    assert out.loc[0, "model.invalid_reason"] == ""
    assert re.match(rf"column {col}: {reason}", out.loc[1, "model.invalid_reason"])
    assert np.isfinite(out[["model.cycle", "model.energy", "model.area"]].to_numpy()).all()


def test_first_impossible_row_is_named_and_all_reasons_are_kept() -> None:
    good = row(EXAMPLE_LAYER, EXAMPLE, Hardware(16, 256, 64))
    both = row(EXAMPLE_LAYER, TEMPORAL_K_AT_L0, TINY_SP)  # two defects in one row
    frame = pd.DataFrame([good, good, both, row(CONV_LAYER, CONV, DOSA_BASE)])
    with pytest.raises(ValueError, match="^frame: row 2 column mapping.mapping: temporal loop K2"):
        evaluate_frame(frame)
    out = evaluate_frame(frame, allow_invalid=True)
    assert list(out["model.valid"]) == [True, True, False, False]
    assert list(out["model.invalid_reason"] != "") == [False, False, True, True]
    reasons = out.loc[2, "model.invalid_reason"].split("; ")  # K2 at L0 also lands in L1's tile
    assert len(reasons) == 3 and "temporal loop K2 at L0" in reasons[0]
    assert "accumulator" in reasons[1] and "scratchpad" in reasons[2]
    assert "accumulator tile of 784 words" in out.loc[3, "model.invalid_reason"]


def test_absent_dilation_columns_mean_dilation_one() -> None:
    frame = synthetic_frame()
    assert "prob.Hdilation" not in frame
    assert evaluate_frame(frame)["model.valid"].all()
    frame["prob.Wdilation"] = [1, 1, 3, 1]  # one column alone is checked too
    with pytest.raises(ValueError, match="row 2 column prob.Wdilation: dilation 3"):
        evaluate_frame(frame)


@pytest.mark.parametrize("breakage", ["bad_string", "bad_factors", "missing_column",
                                      "non_numeric", "zero_dilation"])
def test_structural_errors_raise_even_with_allow_invalid(breakage: str) -> None:
    frame = synthetic_frame()
    if breakage == "bad_string":
        frame.loc[1, MAPPING_COLUMN] = "L3[WIO] Q7"
        match = "row 1: mapping .* has 1 levels"
    elif breakage == "bad_factors":
        frame.loc[1, "prob.K"] = 128
        match = "row 1: mapping factors do not multiply"
    elif breakage == "missing_column":
        frame = frame.drop(columns=["arch.pe"])
        match = r"missing column\(s\) \['arch.pe'\]"
    elif breakage == "non_numeric":
        frame["arch.mem1_depth"] = frame["arch.mem1_depth"].astype(object)
        frame.loc[2, "arch.mem1_depth"] = "lots"
        match = "row 2 column arch.mem1_depth must be a positive number, got 'lots'"
    else:
        frame["prob.Hdilation"] = [1, 0, 1, 1]
        match = "row 1 column prob.Hdilation must be a positive integer"
    with pytest.raises(ValueError, match=match):
        evaluate_frame(frame, allow_invalid=True)


def test_validity_agrees_with_mapping_check() -> None:
    """A row is valid exactly when Mapping.check accepts it on the row's own hardware."""
    rows, expected = [], []
    cases = [(EXAMPLE_LAYER, m) for m in (EXAMPLE, BIG_ACC, SPATIAL_K64, SPATIAL_P_AT_L1,
                                          TEMPORAL_K_AT_L0)]
    cases += [(CONV_LAYER, CONV), (STRIDED_LAYER, STRIDED)]
    sizes = [0.5, 1, 2, 8, 28.5, 64, 128, 512]
    for layer, text in cases:
        for pe in (8, 16, 32, 64):
            for sp in sizes:
                for acc in sizes:
                    r = row(layer, text, Hardware(pe, sp, acc))
                    rows.append(r)
                    pe_dim, sp_kb, acc_kb = hardware_from_arch_columns(pd.DataFrame([r]))[0]
                    hw = Hardware(int(pe_dim), sp_kb, acc_kb)
                    expected.append(parse_mapping(text).is_valid(layer, hw))
    out = evaluate_frame(pd.DataFrame(rows), allow_invalid=True)
    assert 0 < sum(expected) < len(expected)
    np.testing.assert_array_equal(out["model.valid"].to_numpy(), np.array(expected))


def test_tile_words_batch_matches_tile_words() -> None:
    rng = np.random.default_rng(0)
    layers, temporal, spatial = [], [], []
    for layer in SAMPLE_LAYERS:
        for _ in range(20):
            m = round_mapping(rng.uniform(1, 8, (4, 7)), rng.uniform(1, 32, (4, 7)),
                              np.tile(np.arange(7), (4, 1)), layer)
            layers.append(layer)
            temporal.append(m.temporal)
            spatial.append(m.spatial)
    strides = np.array([lay.strides for lay in layers])
    acc, sp = tile_words_batch(np.stack(temporal), np.stack(spatial), strides)
    for i, layer in enumerate(layers):
        m = parse_mapping(Mapping(temporal[i], spatial[i], np.tile(np.arange(7), (4, 1)))
                          .to_string())
        assert (acc[i], sp[i]) == tile_words(m, layer)


@pytest.mark.data
def test_all_published_rows_are_physically_possible() -> None:
    if not data.available("timeloop"):
        pytest.skip("published Timeloop dataset not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")
    df = data.load_timeloop_dataset()
    assert len(df) == 72_700
    assert {"prob.Hdilation", "prob.Wdilation"} <= set(df.columns)
    out = evaluate_frame(df, source="timeloop")  # raises on the first impossible row
    assert out["model.valid"].all()
