"""Tests for dosa.workload: built-in networks match the spec tables; user YAML is validated."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dosa.workload import (
    BUILTIN_NETWORKS,
    DIMS,
    Layer,
    Network,
    WorkloadError,
    grouped_layer,
    load_network,
    parse_network,
)

REPO = Path(__file__).resolve().parents[1]

# (unique layers, instances, total MACs) as stated in dosa-spec.md section 2.3 headings.
SPEC_TOTALS = {
    "resnet50": (24, 54, 4.09e9),
    "bert": (5, 6, 0.757e9),
    "unet": (23, 23, 167.3e9),
    "retinanet": (22, 27, 3.32e9),
}


def write_yaml(tmp_path: Path, data: object, name: str = "net.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# --- built-in networks ------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTIN_NETWORKS)
def test_builtin_matches_spec_totals(name: str) -> None:
    net = load_network(name)
    unique, instances, macs = SPEC_TOTALS[name]
    assert net.name == name
    assert len(net.layers) == unique
    assert net.num_instances == instances
    assert net.total_macs == pytest.approx(macs, rel=0.01)


@pytest.mark.parametrize("spelling", ["ResNet50", "BERT", "UNet", "RetinaNet"])
def test_builtin_names_case_insensitive(spelling: str) -> None:
    assert load_network(spelling).name == spelling.lower()


def test_resnet50_spot_rows() -> None:
    net = load_network("resnet50")
    first = net["_outputs_input.2"]
    assert first.dims == (7, 7, 112, 112, 3, 64, 1)
    assert first.strides == (2, 2)
    assert net["_outputs_input.76"].count == 6
    fc = net.layers[-1]
    assert fc.name == "_outputs_3356"
    assert fc.dims == (1, 1, 1, 1, 2048, 1000, 1)


def test_bert_is_matmul_only() -> None:
    net = load_network("bert")
    assert all(layer.is_matmul() for layer in net)
    assert {layer.P for layer in net} == {128}
    assert net["mm_0"].count == 2
    assert net["mm_4"].dims == (1, 1, 128, 1, 768, 3072, 1)


def test_unet_all_stride1_count1_square() -> None:
    net = load_network("unet")
    assert (net.strides_array() == 1).all()
    assert (net.counts_array() == 1).all()
    d = net.dims_array()
    assert (d[:, 0] == d[:, 1]).all() and (d[:, 2] == d[:, 3]).all()
    assert net["4_2_upconv"].dims == (2, 2, 56, 56, 1024, 512, 1)


def test_retinanet_strides_from_table() -> None:
    net = load_network("retinanet")
    strided = {layer.name for layer in net if layer.strides != (1, 1)}
    assert strided == {"p6", "p7"}
    assert net["p6"].strides == (2, 2)
    assert net["p3_2"].count == 2


def test_builtin_yaml_has_spec_citation() -> None:
    import dosa

    for name in BUILTIN_NETWORKS:
        text = (Path(dosa.__file__).parent / "networks" / f"{name}.yaml").read_text()
        assert "unique_layers.yaml" in text and "layer_count.yaml" in text


def test_example_tiny_net_loads() -> None:
    net = load_network(REPO / "examples" / "tiny_net.yaml")
    assert net.name == "tiny_net"
    assert len(net) == 2
    conv, fc = net.layers
    assert conv.strides == (2, 2) and conv.R == conv.S == 3
    assert fc.is_matmul()


# --- arrays / frame / round trip --------------------------------------------------------------


def test_dims_array_shapes_and_order() -> None:
    net = load_network("resnet50")
    d = net.dims_array()
    assert d.shape == (24, 7) and d.dtype == np.int64
    assert net.strides_array().shape == (24, 2)
    assert net.counts_array().shape == (24,)
    assert DIMS == ("R", "S", "P", "Q", "C", "K", "N")
    # Row 0 is the 7x7 stem conv: columns follow DIMS.
    assert d[0].tolist() == [7, 7, 112, 112, 3, 64, 1]
    assert int((d.prod(axis=1) * net.counts_array()).sum()) == net.total_macs


def test_to_frame_columns() -> None:
    df = load_network("bert").to_frame()
    assert list(df.columns) == ["layer", *DIMS, "Wstride", "Hstride", "count"]
    assert len(df) == 5 and df["count"].sum() == 6


def test_yaml_round_trip() -> None:
    net = load_network("retinanet")
    again = parse_network(yaml.safe_load(net.to_yaml()), "round-trip")
    assert again == net


def test_layer_key_and_from_dims() -> None:
    layer = Layer.from_dims("x", [3, 3, 14, 14, 256, 256, 1], Wstride=2, Hstride=2, count=3)
    assert layer.key() == "3_3_14_14_256_256_1_2_2"
    assert layer.macs == 9 * 14 * 14 * 256 * 256
    with pytest.raises(WorkloadError, match="7 entries"):
        Layer.from_dims("y", [1, 2, 3])


def test_layer_rejects_bool_and_float() -> None:
    with pytest.raises(WorkloadError, match="'K' must be a positive integer"):
        Layer("b", C=1, K=True)
    with pytest.raises(WorkloadError, match="'C' must be a positive integer"):
        Layer("f", C=4.0, K=1)


def test_network_requires_layers() -> None:
    with pytest.raises(WorkloadError, match="no layers"):
        Network("empty", ())


# --- user YAML validation ---------------------------------------------------------------------


def test_user_defaults_applied_and_name_from_stem(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 8, "K": 16}]}, "my_net.yaml")
    net = load_network(str(path))
    assert net.name == "my_net"
    layer = net.layers[0]
    assert layer.dims == (1, 1, 1, 1, 8, 16, 1)
    assert layer.strides == (1, 1) and layer.count == 1


def test_unknown_layer_key_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 8, "K": 16, "Hstrides": 2}]})
    with pytest.raises(WorkloadError) as exc:
        load_network(path)
    msg = str(exc.value)
    assert "'Hstrides'" in msg and "'l0'" in msg and "Hstride" in msg and str(path) in msg


def test_unknown_top_key_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 8, "K": 16}], "batch": 4})
    with pytest.raises(WorkloadError, match="'batch'"):
        load_network(path)


def test_zero_channel_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 0, "K": 16}]})
    with pytest.raises(WorkloadError) as exc:
        load_network(path)
    msg = str(exc.value)
    assert "'C'" in msg and "'l0'" in msg and "positive integer" in msg and str(path) in msg


def test_negative_stride_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 4, "K": 4, "Wstride": -1}]})
    with pytest.raises(WorkloadError, match="'Wstride' must be a positive integer"):
        load_network(path)


def test_float_value_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 4, "K": 4, "P": 3.5}]})
    with pytest.raises(WorkloadError, match="'P' must be a positive integer, got 3.5"):
        load_network(path)


def test_missing_c_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "K": 4}]})
    with pytest.raises(WorkloadError, match="'l0'.*missing required key.*'C'"):
        load_network(path)


def test_missing_layer_name_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"C": 4, "K": 4}]})
    with pytest.raises(WorkloadError, match="index 0.*'name'"):
        load_network(path)


@pytest.mark.parametrize("layers", [[], None])
def test_empty_or_missing_layers_rejected(tmp_path: Path, layers: object) -> None:
    data = {"name": "x"} if layers is None else {"name": "x", "layers": layers}
    path = write_yaml(tmp_path, data)
    with pytest.raises(WorkloadError, match="layers"):
        load_network(path)


def test_non_mapping_layer_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, {"layers": [{"name": "l0", "C": 4, "K": 4}, [1, 2, 3]]})
    with pytest.raises(WorkloadError, match="index 1 must be a mapping"):
        load_network(path)


def test_non_mapping_top_level_rejected(tmp_path: Path) -> None:
    path = write_yaml(tmp_path, [{"name": "l0", "C": 4, "K": 4}])
    with pytest.raises(WorkloadError, match="top level must be a mapping"):
        load_network(path)


def test_duplicate_layer_names_rejected(tmp_path: Path) -> None:
    layer = {"name": "dup", "C": 4, "K": 4}
    path = write_yaml(tmp_path, {"layers": [layer, dict(layer, K=8)]})
    with pytest.raises(WorkloadError, match="duplicate layer name 'dup'"):
        load_network(path)


def test_invalid_yaml_rejected(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("layers: [unclosed\n")
    with pytest.raises(WorkloadError, match="invalid YAML"):
        load_network(path)


def test_missing_file_lists_builtins(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(WorkloadError) as exc:
        load_network(missing)
    msg = str(exc.value)
    assert "does not exist" in msg
    for name in BUILTIN_NETWORKS:
        assert name in msg
    with pytest.raises(WorkloadError, match="resnet50, bert, unet, retinanet"):
        load_network("vgg16")


# --- YAML reading: one clear error per bad file ------------------------------------------------


def test_duplicate_layer_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: n\nlayers:\n  - {name: a, C: 3, C: 5, K: 4}\n")
    with pytest.raises(WorkloadError) as exc:
        load_network(path)
    msg = str(exc.value)
    assert "duplicate key 'C'" in msg and "layer 'a'" in msg and str(path) in msg
    assert "line 3" in msg


def test_duplicate_top_level_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: n\nlayers:\n  - {name: a, C: 3, K: 4}\nname: m\n")
    with pytest.raises(WorkloadError, match="top level: duplicate key 'name'"):
        load_network(path)


def test_yaml_merge_keys_may_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("layers:\n  - &l0 {name: a, C: 3, K: 4}\n  - {<<: *l0, name: b, K: 8}\n")
    net = load_network(path)
    assert net["b"].K == 8 and net["b"].C == 3


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("layers:\n  - {name: caf\u00e9, C: 3, K: 4}\n".encode("latin-1"))
    with pytest.raises(WorkloadError) as exc:
        load_network(path)
    msg = str(exc.value)
    assert str(path) in msg and "UTF-8" in msg


def test_empty_directory_is_not_a_workload(tmp_path: Path) -> None:
    """A folder is read as Timeloop problem files (dosa.timeloop); an empty one is refused."""
    with pytest.raises(WorkloadError) as exc:
        load_network(tmp_path)
    msg = str(exc.value)
    assert "no Timeloop problem files" in msg and "YAML" in msg and "resnet50" in msg
    assert "does not exist" not in msg


def test_directory_of_timeloop_problems_is_a_workload(tmp_path: Path) -> None:
    (tmp_path / "conv.yaml").write_text(
        "problem: {shape: cnn-layer, instance: {R: 3, S: 3, P: 8, Q: 8, C: 4, K: 16}}\n")
    net = load_network(tmp_path)
    assert net.name == tmp_path.name and net.total_macs == 3 * 3 * 8 * 8 * 4 * 16


def test_empty_workload_name_rejected() -> None:
    with pytest.raises(WorkloadError, match="workload is empty; .*resnet50"):
        load_network("")


def test_grouped_and_depthwise_convolutions_are_exact() -> None:
    """G groups = G convolutions of C/G -> K/G: one layer with count x G, same MAC total."""
    net = parse_network({"name": "mobile", "layers": [
        {"name": "dw", "R": 3, "S": 3, "P": 112, "Q": 112, "C": 32, "K": 32, "groups": 32},
        {"name": "g4", "P": 28, "Q": 28, "C": 64, "K": 128, "groups": 4, "count": 2},
        {"name": "pw", "P": 112, "Q": 112, "C": 32, "K": 64, "Wdilation": 1},
    ]})
    dw, g4, pw = net.layers
    assert (dw.C, dw.K, dw.count) == (1, 1, 32)
    assert (g4.C, g4.K, g4.count) == (16, 32, 8)
    # hand-computed MACs: depthwise 3*3*112*112*32; grouped 2 x 28*28*(64/4)*128; pointwise
    assert dw.macs * dw.count == 3 * 3 * 112 * 112 * 32 == 3_612_672
    assert g4.macs * g4.count == 2 * 28 * 28 * 16 * 128 == 3_211_264
    assert net.total_macs == 3_612_672 + 3_211_264 + 112 * 112 * 32 * 64
    assert grouped_layer("x", C=8, K=8, groups=1) == Layer("x", C=8, K=8)


@pytest.mark.parametrize(("layer", "match"), [
    ({"name": "g", "C": 30, "K": 32, "groups": 4}, r"'C' \(30\) must be divisible by groups"),
    ({"name": "g", "C": 32, "K": 30, "groups": 4}, r"'K' \(30\) must be divisible by groups"),
    ({"name": "g", "C": 32, "K": 32, "groups": 0}, "'groups' must be a positive integer"),
    ({"name": "d", "R": 3, "C": 8, "K": 8, "Wdilation": 2}, "'Wdilation' must be 1"),
    ({"name": "d", "C": 8, "K": 8, "Hdilation": 1.5}, "'Hdilation' must be a positive integer"),
])
def test_bad_groups_and_dilation_are_refused(layer: dict, match: str) -> None:
    with pytest.raises(WorkloadError, match=match):
        parse_network({"name": "n", "layers": [layer]})
