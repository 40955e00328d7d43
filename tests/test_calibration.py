"""Fig. 12 calibration: auto-tiling mappings, workload assignment, EDP improvements.

Data-marked tests check the published numbers recovered in dosa-data §8 (within ~2 %).
"""

from __future__ import annotations

import numpy as np
import pytest

from dosa import data
from dosa.calibration import (
    ACC_ORDER,
    DEFAULT_DRAM_ORDER,
    REGISTER_ORDER,
    assign_workloads,
    auto_tiling_mapping,
    energy_mapping,
    fig12_summary,
    fig12_table,
    parse_auto_tiling,
)
from dosa.evaluation import parse_mapping_column
from dosa.learned import layer_keys
from dosa.mapping import parse_mapping
from dosa.workload import Layer, load_network

needs_data = pytest.mark.skipif(
    not data.available("firesim_test"),
    reason="FireSim test data not available (set DOSA_DATA_DIR to shared/dosa-data)")


def test_auto_tiling_mapping_rounds_down_to_divisors():
    fc = Layer("fc", C=2048, K=1000)
    m = auto_tiling_mapping(fc, "1_1_16_1_896_128_1")
    m.check(fc)
    assert m.spatial[1, 4] == 16 and m.spatial[2, 5] == 10  # K: largest divisor of 1000 <= 16
    assert m.temporal[1, 4] == 32  # 896 // 16 = 56 -> largest divisor of 128 <= 56
    assert m.temporal[1, 5] == 5  # 128 // 16 = 8 -> largest divisor of 100 <= 8
    assert m.temporal[3, 4] == 4 and m.temporal[3, 5] == 20  # DRAM takes the remainder
    assert np.all(m.temporal[0] == 1)
    assert m.order(3) == DEFAULT_DRAM_ORDER and m.order(1) == ACC_ORDER
    assert m.order(0) == REGISTER_ORDER
    conv = Layer("c", R=3, S=3, P=56, Q=56, C=3, K=64)
    m = auto_tiling_mapping(conv, "3_3_23_22_3_16_1")
    m.check(conv)
    assert m.spatial[1, 4] == 3 and m.temporal[1, 2] == 14 and m.temporal[1, 3] == 14


def test_parse_auto_tiling_rejects_bad_strings():
    assert parse_auto_tiling("1_2_3_4_5_6_7") == (1, 2, 3, 4, 5, 6, 7)
    for bad in ("1_2_3", "1_2_3_4_5_6_x", "0_1_1_1_1_1_1"):
        with pytest.raises(ValueError, match="R_S_P_Q_C_K_N"):
            parse_auto_tiling(bad)


def test_energy_mapping_forces_gemmini_orders():
    layer = Layer("l", P=56, Q=56, C=64, K=64)
    m = parse_mapping("L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1")
    e = energy_mapping(m, layer)
    assert e.order(1) == ACC_ORDER and e.order(0) == REGISTER_ORDER
    assert e.order(3) == m.order(3)
    assert np.array_equal(e.temporal, m.temporal) and np.array_equal(e.spatial, m.spatial)


@pytest.mark.data
@needs_data
def test_workload_assignment_finds_every_layer_once():
    for pred in ("analytical", "both", "dnn"):
        frame = data.load_firesim_test(pred)
        blocks = assign_workloads(frame)
        assert sum(len(b) for b in blocks.values()) == len(frame) == 74
        for w, rows in blocks.items():
            net = load_network(w)
            assert list(layer_keys(rows)) == [lay.key() for lay in net.layers]
            assert rows["count"].tolist() == net.counts_array().tolist()
        # the layers shared by ResNet-50 and RetinaNet are assigned once to each
        shared = set(layer_keys(blocks["resnet50"])) & set(layer_keys(blocks["retinanet"]))
        assert len(shared) == 3


@pytest.mark.data
@needs_data
def test_auto_tiling_mappings_of_all_published_rows_are_valid():
    frame = data.load_firesim_test()
    keys = layer_keys(frame)
    for key, tiling in zip(keys, frame["dse.auto_tiling"], strict=True):
        dims = [int(v) for v in key.split("_")]
        layer = Layer.from_dims("x", dims[:7], Wstride=dims[7], Hstride=dims[8])
        m = auto_tiling_mapping(layer, tiling)
        m.check(layer)
        assert m.spatial.max() <= 16
    for m, key in zip(parse_mapping_column(frame["mapping.mapping"].tolist()), keys,
                      strict=True):
        dims = [int(v) for v in key.split("_")]
        layer = Layer.from_dims("x", dims[:7], Wstride=dims[7], Hstride=dims[8])
        energy_mapping(m, layer).check(layer)


@pytest.mark.data
@needs_data
def test_fig12_reproduces_recovered_numbers():
    table = fig12_table()
    got = table.set_index(["predictor", "workload"])["edp_improvement"]
    expected = {  # dosa-data §8 (default energy at 16 / 128 KB / 32 KB)
        ("analytical", "bert"): 0.95, ("analytical", "resnet50"): 1.86,
        ("analytical", "retinanet"): 1.95, ("analytical", "unet"): 0.94,
        ("both", "bert"): 1.72, ("both", "resnet50"): 2.51, ("both", "retinanet"): 1.81,
        ("both", "unet"): 1.08, ("dnn", "bert"): 1.63, ("dnn", "resnet50"): 2.54,
        ("dnn", "retinanet"): 1.81, ("dnn", "unet"): 0.97,
    }
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=0.02), key
    s = fig12_summary(table).set_index(["predictor", "metric"])
    assert s.loc[("both", "edp_improvement"), "mean"] == pytest.approx(1.78, rel=0.01)
    assert s.loc[("both", "edp_improvement"), "geomean"] == pytest.approx(1.70, rel=0.01)
    assert s.loc[("both", "edp_improvement@256/64"), "mean"] == pytest.approx(1.93, rel=0.01)
    assert s.loc[("both", "edp_improvement@256/64"), "geomean"] == pytest.approx(1.85, rel=0.01)
    assert np.all(np.isfinite(table.select_dtypes("number").to_numpy()))


@pytest.mark.data
@needs_data
@pytest.mark.skipif(not data.available("firesim_training"),
                    reason="FireSim training data not available (set DOSA_DATA_DIR)")
def test_learned_search_exports_valid_firesim_designs(tmp_path, monkeypatch) -> None:
    """DOSA with the (tiny, smoke) learned predictor at pe_dim 16 on BERT, end to end."""
    from dosa.calibration import learned_search_table
    from dosa.evaluation import evaluate_frame

    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path))
    table, designs = learned_search_table("smoke", workloads=("bert",))
    assert list(table.workload) == ["bert"]
    row = table.iloc[0]
    assert row.pe_dim == 16
    assert np.isfinite(row.pred_edp_improvement) and row.pred_edp_improvement > 0
    frame = designs["bert"]
    bert = load_network("bert")
    assert len(frame) == len(bert.layers)
    for layer, text in zip(bert.layers, frame["mapping.mapping"], strict=True):
        parse_mapping(text).check(layer)
    rescored = evaluate_frame(frame)
    np.testing.assert_allclose(rescored["model.energy"], frame["target.energy"], rtol=1e-12)
    assert (tmp_path / "models" / "both.pt").is_file()  # the smoke predictor was trained
