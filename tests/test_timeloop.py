"""Tests for dosa.timeloop: Timeloop problem folders in, search results out as Timeloop inputs."""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from dosa.cli import main
from dosa.experiments import search_to_folder
from dosa.hardware import Hardware
from dosa.search.result import SearchResult
from dosa.timeloop import (
    COUNTS_FILE,
    TimeloopError,
    arch_dict,
    export_timeloop,
    load_timeloop_problems,
    read_timeloop_export,
    write_timeloop_problems,
)
from dosa.workload import BUILTIN_NETWORKS, DIMS, Layer, Network, WorkloadError, load_network

BASE_ARCH = """
architecture:
  version: 0.3
  subtree:
  - name: System
    local:
    - name: DRAM
      class: DRAM
      attributes: {instances: 1, word-bits: 8, block_size: 64, shared_bandwidth: 8}
    subtree:
    - name: Chip
      attributes: {technology: 40nm}
      local:
      - name: Scratchpad
        class: SRAM
        attributes: {entries: 131072, depth: 8192, width: 128, instances: 1, meshX: 1,
                     word-bits: 8, n_rdwr_ports: 1, n_banks: 1, shared_bandwidth: 32}
      subtree:
      - name: PECols[0..15]
        local:
        - name: Accumulator
          class: SRAM
          attributes: {entries: 512, depth: 512, width: 32, instances: 16, word-bits: 32,
                       network-word-bits: 16, n_rdwr_ports: 2, n_banks: 2, shared_bandwidth: 2}
        subtree:
        - name: PERows[0..15]
          local:
          - name: Registers
            class: SRAM
            attributes: {depth: 1, width: 8, entries: 1, instances: 256, word-bits: 8,
                         n_rdwr_ports: 2, n_banks: 1}
          - name: MACC
            class: intmac
            attributes: {datawidth: 8, word-bits: 8}
"""

NETWORK = Network("tiny", (
    Layer("conv1", R=3, S=3, P=14, Q=14, C=16, K=32, Wstride=2, Hstride=2, count=2),
    Layer("fc", C=64, K=10),
    Layer("mm.2", P=8, C=32, K=64, count=3),
))


@pytest.fixture(scope="module")
def result_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("search") / "result"
    search_to_folder(NETWORK, "random", 1, {"num_hw": 2, "mappings_per_layer": 5}, out,
                     progress=False)
    return out


def _rewrite_hardware(result_dir: Path, out: Path, hardware: Hardware) -> Path:
    """A copy of the result with another hardware (mappings and scores unchanged)."""
    result = SearchResult.read(result_dir)
    result.hardware = hardware
    result.write(out, NETWORK)
    return out


def _layer_fields(layer: Layer) -> tuple[object, ...]:
    return (layer.name, *layer.dims, layer.Wstride, layer.Hstride, layer.count)


# --- export and read back ---------------------------------------------------------------------

def test_export_round_trip(result_dir: Path, tmp_path: Path) -> None:
    result = SearchResult.read(result_dir)
    hw = result.hardware
    assert hw.sp_kb * 1024 % hw.pe_dim == 0 and hw.acc_kb * 1024 % (4 * hw.pe_dim) == 0
    out = export_timeloop(result_dir, tmp_path / "tl")
    assert out == tmp_path / "tl"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "arch.yaml", "mappings",
                                                     "problems"]
    network, hardware, mappings = read_timeloop_export(out)
    assert [_layer_fields(a) for a in network] == [_layer_fields(b) for b in NETWORK]
    assert network.name == "tl"
    assert hardware == hw
    assert list(mappings) == list(NETWORK.layer_names)
    for layer, mapping in zip(NETWORK, result.mappings, strict=True):
        assert mappings[layer.name] == mapping.canonical()
        assert np.array_equal(mappings[layer.name].rank, mapping.canonical().rank)
        assert mappings[layer.name].to_string() == mapping.to_string()
    readme = (out / "README.md").read_text()
    for layer in NETWORK:
        assert f"timeloop-model ../../arch.yaml ../../problems/{layer.name}.yaml " \
               f"../../mappings/{layer.name}.yaml" in readme
    assert not list(tmp_path.glob(".tl.*"))  # no temporary sibling left


def test_partial_rows_read_back_rounded_up(result_dir: Path, tmp_path: Path) -> None:
    hw = SearchResult.read(result_dir).hardware
    odd = Hardware(hw.pe_dim, hw.sp_kb + 0.3, hw.acc_kb + 0.1)
    src = _rewrite_hardware(result_dir, tmp_path / "odd", odd)
    _, hardware, _ = read_timeloop_export(export_timeloop(src, tmp_path / "tl"))
    pe = hw.pe_dim
    sp = math.ceil(odd.sp_kb * 1024 / pe) * pe / 1024
    acc = math.ceil(odd.acc_kb * 1024 / (4 * pe)) * 4 * pe / 1024
    assert hardware == Hardware(pe, sp, acc)
    assert hardware.sp_kb > odd.sp_kb and hardware.acc_kb > odd.acc_kb


def test_exported_files_parse_and_are_relative(result_dir: Path, tmp_path: Path) -> None:
    out = export_timeloop(result_dir, tmp_path / "tl")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 2 + 2 * len(NETWORK) + 1  # arch, README, problems + counts, mappings
    for path in files:
        text = path.read_text()
        if path.suffix == ".yaml":
            assert yaml.safe_load(text) is not None
        assert str(tmp_path) not in text and str(result_dir) not in text
        assert not re.search(r"(^|[\s'\"(=])/[A-Za-z]", text), path  # no absolute path
    mapping = yaml.safe_load((out / "mappings" / "conv1.yaml").read_text())["mapping"]
    bypass = {e["target"]: (e["keep"], e["bypass"]) for e in mapping if e["type"] == "bypass"}
    assert bypass == {"Registers": (["Weights"], ["Inputs", "Outputs"]),
                      "Accumulator": (["Outputs"], ["Weights", "Inputs"]),
                      "Scratchpad": (["Weights", "Inputs"], ["Outputs"]),
                      "DRAM": (["Weights", "Inputs", "Outputs"], [])}
    kinds = [(e["target"], e["type"]) for e in mapping if e["type"] != "bypass"]
    assert kinds == [("Registers", "temporal"), ("Accumulator", "temporal"),
                     ("Accumulator", "spatial"), ("Scratchpad", "temporal"),
                     ("Scratchpad", "spatial"), ("DRAM", "temporal")]
    for entry in mapping:
        if entry["type"] != "bypass":
            assert [w.split("=")[0] for w in entry["factors"].split()] == list(DIMS)
            assert sorted(entry["permutation"]) == sorted(DIMS)
    problem = yaml.safe_load((out / "problems" / "conv1.yaml").read_text())
    assert problem == {"problem": {"shape": "cnn-layer", "instance": {
        "R": 3, "S": 3, "P": 14, "Q": 14, "C": 16, "K": 32, "N": 1, "Wstride": 2, "Hstride": 2,
        "Wdilation": 1, "Hdilation": 1}}}
    counts = yaml.safe_load((out / "problems" / COUNTS_FILE).read_text())
    assert counts == {"3_3_14_14_16_32_1_2_2_1_1": {"count": 2, "name": "conv1"},
                      "1_1_1_1_64_10_1_1_1_1_1": {"count": 1, "name": "fc"},
                      "1_1_8_1_32_64_1_1_1_1_1": {"count": 3, "name": "mm.2"}}


def test_arch_of_base_hardware_is_the_original_yaml() -> None:
    assert arch_dict(Hardware(16, 128, 32)) == yaml.safe_load(BASE_ARCH)


def test_arch_numbers_follow_spec() -> None:
    arch = arch_dict(Hardware(32, 256, 64))
    chip = arch["architecture"]["subtree"][0]["subtree"][0]
    cols = chip["subtree"][0]
    rows = cols["subtree"][0]
    assert (cols["name"], rows["name"]) == ("PECols[0..31]", "PERows[0..31]")
    sp = chip["local"][0]["attributes"]
    assert (sp["depth"], sp["width"], sp["entries"], sp["shared_bandwidth"], sp["instances"]) \
        == (8192, 256, 8192 * 32, 64, 1)
    acc = cols["local"][0]["attributes"]
    assert (acc["depth"], acc["entries"], acc["instances"], acc["width"]) == (512, 512, 32, 32)
    assert rows["local"][0]["attributes"]["instances"] == 32 * 32


# --- export refusals --------------------------------------------------------------------------

def test_export_refuses_non_empty_out(result_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tl"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(TimeloopError, match="out_dir .* not empty"):
        export_timeloop(result_dir, out)
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()
    assert export_timeloop(result_dir, out) == out  # an empty folder is fine


def test_export_refuses_file_out(result_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="out_dir .* existing file"):
        export_timeloop(result_dir, tmp_path / "f")


@pytest.mark.parametrize("kind", ["missing", "empty", "damaged"])
def test_export_refuses_non_result(kind: str, result_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    if kind != "missing":
        src.mkdir()
    if kind == "damaged":
        (src / "result.json").write_text((result_dir / "result.json").read_text())
        (src / "mappings.csv").write_text("layer\nx\n")
    with pytest.raises(TimeloopError, match="result_dir"):
        export_timeloop(src, tmp_path / "tl")
    assert not (tmp_path / "tl").exists()


def test_export_refuses_illegal_mappings(result_dir: Path, tmp_path: Path) -> None:
    src = _rewrite_hardware(result_dir, tmp_path / "small", Hardware(1, 0.001, 0.001))
    with pytest.raises(TimeloopError, match="mapping is illegal"):
        export_timeloop(src, tmp_path / "tl")
    assert not (tmp_path / "tl").exists()


def test_failed_export_leaves_nothing(result_dir: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import dosa.timeloop

    def boom(mapping: object) -> dict[str, object]:
        raise OSError("disk full")

    monkeypatch.setattr(dosa.timeloop, "mapping_dict", boom)
    with pytest.raises(OSError, match="disk full"):
        export_timeloop(result_dir, tmp_path / "tl")
    assert list(tmp_path.iterdir()) == []


def test_read_export_refuses_changed_bypass(result_dir: Path, tmp_path: Path) -> None:
    out = export_timeloop(result_dir, tmp_path / "tl")
    path = out / "mappings" / "fc.yaml"
    path.write_text(path.read_text().replace("keep:\n  - Outputs", "keep:\n  - Inputs", 1))
    with pytest.raises(TimeloopError, match="fc.yaml: Accumulator keeps"):
        read_timeloop_export(out)
    path.unlink()
    with pytest.raises(TimeloopError, match="no mapping file for layer 'fc'"):
        read_timeloop_export(out)


@pytest.mark.parametrize("layer,message", [
    (Layer("layer_count", C=1, K=1), "reserved"),
    (Layer("a/b", C=1, K=1), "file name"),
    (Layer(".hidden", C=1, K=1), "file name"),
])
def test_unwritable_layer_names(layer: Layer, message: str, tmp_path: Path) -> None:
    with pytest.raises(TimeloopError, match=message):
        write_timeloop_problems(Network("n", (layer,)), tmp_path / "p")


def test_same_problem_twice_is_refused(tmp_path: Path) -> None:
    net = Network("n", (Layer("a", C=4, K=4), Layer("b", C=4, K=4)))
    with pytest.raises(TimeloopError, match="'a' and 'b' are the same Timeloop problem"):
        write_timeloop_problems(net, tmp_path / "p")


# --- reading problem folders ------------------------------------------------------------------

def _write(folder: Path, name: str, data: object) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("network", BUILTIN_NETWORKS)
def test_builtin_network_round_trip(network: str, tmp_path: Path) -> None:
    net = load_network(network)
    folder = write_timeloop_problems(net, tmp_path / network)
    back = load_timeloop_problems(folder)
    assert back.name == network
    assert back.total_macs == net.total_macs
    assert [_layer_fields(a) for a in back] == [_layer_fields(b) for b in net]


def test_both_problem_forms_and_m_alias(tmp_path: Path,
                                        caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "work"
    _write(folder, "b11.yaml", {"problem": {"R": 3, "S": 3, "P": 28, "Q": 28, "C": 64, "K": 64,
                                            "N": 1, "Wstride": 2, "Hstride": 2, "Wdilation": 1,
                                            "Hdilation": 1, "shape": "cnn-layer"}})
    _write(folder, "b2.yml", {"problem": {"shape": {"name": "CNN-Layer"},
                                          "instance": {"C": 8, "M": 16, "P": 7}}})
    _write(folder, "a.yaml", {"problem": {"instance": {"C": 2, "K": 3}}})
    with caplog.at_level(logging.INFO, logger="dosa.timeloop"):
        net = load_timeloop_problems(folder)
    assert "no layer_count.yaml" in caplog.text
    assert net.name == "work"
    assert net.layer_names == ("a", "b2", "b11")  # natural file order without a counts file
    assert net["b11"].dims == (3, 3, 28, 28, 64, 64, 1) and net["b11"].strides == (2, 2)
    assert net["b2"].dims == (1, 1, 7, 1, 8, 16, 1)
    assert net["a"].dims == (1, 1, 1, 1, 2, 3, 1)
    assert [layer.count for layer in net] == [1, 1, 1]


def test_layer_count_gives_counts_and_order(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    _write(folder, "x.yaml", {"problem": {"C": 2, "K": 3}})
    _write(folder, "y.yaml", {"problem": {"C": 4, "K": 5, "P": 2}})
    _write(folder, COUNTS_FILE, {"1_1_2_1_4_5_1_1_1_1_1": {"count": 4, "name": "y"},
                                 "1_1_1_1_2_3_1_1_1_1_1": {"count": 2}})
    net = load_timeloop_problems(folder)
    assert [(layer.name, layer.count) for layer in net] == [("y", 4), ("x", 2)]
    assert net.total_macs == 4 * 2 * 4 * 5 + 2 * 2 * 3


@pytest.mark.parametrize("counts,message", [
    ({"1_1_1_1_2_3_1_1_1_1_1": {"count": 2}}, r"no entry for problem 'y'"),
    ({"1_1_1_1_2_3_1_1_1_1_1": {"count": 2}, "1_1_1_1_4_5_1_1_1_1_1": {"count": 1},
      "1_1_1_1_9_9_1_1_1_1_1": {"count": 1}}, r"key '1_1_1_1_9_9_1_1_1_1_1' matches no problem"),
    ({"1_1_1_1_2_3_1_1_1_1_1": {"count": 0}, "1_1_1_1_4_5_1_1_1_1_1": {"count": 1}},
     r"'1_1_1_1_2_3_1_1_1_1_1.count' must be a positive integer"),
    ({"1_1_1_1_2_3_1_1_1_1_1": {"count": 1, "repeat": 2}, "1_1_1_1_4_5_1_1_1_1_1": {"count": 1}},
     r"unknown key\(s\) 'repeat'"),
    ({"1_1_1_1_2_3_1_1_1_1_1": 3}, r"must be a mapping \{count: n"),
    ("1_1_1_1_2_3_1_1_1_1_1: {count: 1}\n", r"not a config_str .* quote the key"),
    ("- a\n", r"expected a mapping config_str"),
])
def test_bad_layer_count(counts: object, message: str, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    _write(folder, "x.yaml", {"problem": {"C": 2, "K": 3}})
    _write(folder, "y.yaml", {"problem": {"C": 4, "K": 5}})
    _write(folder, COUNTS_FILE, counts)
    with pytest.raises(WorkloadError, match=message) as err:
        load_timeloop_problems(folder)
    assert COUNTS_FILE in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("content,message", [
    ({"problem": {"C": 2, "K": 3, "Kx": 4}}, r"unknown field\(s\) 'Kx'; allowed: R, S"),
    ({"problem": {"C": 0, "K": 3}}, r"field 'C' must be a positive integer, got 0"),
    ({"problem": {"C": 3.5, "K": 3}}, r"field 'C' must be a positive integer, got 3.5"),
    ({"problem": {"C": True, "K": 3}}, r"field 'C' must be a positive integer, got True"),
    ({"problem": {"C": "3", "K": 3}}, r"field 'C' must be a positive integer, got '3'"),
    ({"problem": {"C": 2, "K": 3, "Wdilation": 2}}, r"field 'Wdilation' must be 1 .*allowed: 1"),
    ({"problem": {"instance": {"C": 2, "K": 3, "Hdilation": 3}}}, r"field 'Hdilation' must be 1"),
    ({"problem": {"C": 2, "K": 3, "shape": "matmul"}}, r"field 'shape' must be cnn-layer"),
    ({"problem": {"shape": {"name": "Conv1D"}, "instance": {"C": 2, "K": 3}}},
     r"field 'shape' must be cnn-layer"),
    ({"problem": {"instance": {"C": 2, "K": 3, "M": 3}}}, r"fields 'K' and 'M' both given"),
    ({"problem": {"K": 3}}, r"missing required field\(s\) 'C'"),
    ({"problem": {"instance": {"C": 2, "K": 3}, "R": 3}}, r"unknown key\(s\) 'R' in 'problem'"),
    ({"problem": {"C": 2, "K": 3}, "mapper": {}}, r"unknown top-level key\(s\) 'mapper'"),
    ({"layers": []}, r"expected a Timeloop problem"),
    ("problem: [C: 2\n", r"not valid YAML"),
])
def test_bad_problem_file(content: object, message: str, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    _write(folder, "ok.yaml", {"problem": {"C": 5, "K": 5}})
    _write(folder, "bad.yaml", content)
    with pytest.raises(WorkloadError, match=message) as err:
        load_timeloop_problems(folder)
    assert "bad.yaml" in str(err.value) and "\n" not in str(err.value)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="does not exist"):
        load_timeloop_problems(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WorkloadError, match="no Timeloop problem files"):
        load_timeloop_problems(empty)
    _write(empty, COUNTS_FILE, {})
    with pytest.raises(WorkloadError, match="no Timeloop problem files"):
        load_timeloop_problems(empty)
    other = tmp_path / "other"
    _write(other, "a.yaml", {"problem": {"C": 2, "K": 3}})
    _write(other, "notes.txt", "hello")
    with pytest.raises(WorkloadError, match=r"notes.txt: unexpected file .* allowed: \*.yaml"):
        load_timeloop_problems(other)
    (other / "notes.txt").unlink()
    _write(other, ".hidden", "ignored")
    assert load_timeloop_problems(other).layer_names == ("a",)


def test_same_problem_in_two_files(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    _write(folder, "mm_0.yaml", {"problem": {"P": 128, "C": 768, "K": 768}})
    _write(folder, "mm_3.yaml", {"problem": {"instance": {"P": 128, "C": 768, "M": 768}}})
    with pytest.raises(WorkloadError, match=r"mm_0.yaml and .*mm_3.yaml: the same problem"):
        load_timeloop_problems(folder)


def test_same_stem_in_two_files(tmp_path: Path) -> None:
    folder = tmp_path / "work"
    _write(folder, "a.yaml", {"problem": {"C": 2, "K": 3}})
    _write(folder, "a.yml", {"problem": {"C": 4, "K": 3}})
    with pytest.raises(WorkloadError, match=r"two problem files for layer 'a'"):
        load_timeloop_problems(folder)


# --- CLI --------------------------------------------------------------------------------------

def test_cli_export(result_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tl"
    assert main(["export-timeloop", str(result_dir), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert (out / "arch.yaml").is_file()


@pytest.mark.parametrize("case", ["missing-result", "non-empty-out"])
def test_cli_export_failures(case: str, result_dir: Path, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    src, out = result_dir, tmp_path / "tl"
    if case == "missing-result":
        src = tmp_path / "nope"
    else:
        out.mkdir()
        (out / "x").write_text("")
    assert main(["export-timeloop", str(src), str(out)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dosa export-timeloop: error: ")
    assert ("result_dir" if case == "missing-result" else "out_dir") in lines[0]


def test_original_dosa_workload_folder(tmp_path: Path) -> None:
    """The original's dataset/workloads/bert layout: flat problems, unique_layers.yaml,
    layers.yaml (an index with a duplicate layer), layer_count.yaml and element-wise
    problems that are never mapped; the listed problems and their counts are read."""
    folder = tmp_path / "bert"
    folder.mkdir()
    shapes = {"mm_0": (768, 768), "mm_1": (64, 128), "mm_2": (128, 64), "mm_3": (768, 768),
              "mm_4": (768, 3072), "mm_5": (3072, 768)}
    for stem, (c, k) in shapes.items():
        (folder / f"{stem}.yaml").write_text(
            f"problem:\n  C: {c}\n  Hdilation: 1\n  Hstride: 1\n  K: {k}\n  N: 1\n  P: 128\n"
            "  Q: 1\n  R: 1\n  S: 1\n  Wdilation: 1\n  Wstride: 1\n")
    (folder / "mm_1_ews.yaml").write_text(
        "problem:\n  instance: {S: 128}\n  shape: {name: elementwise, dimensions: [S]}\n")
    (folder / "unique_layers.yaml").write_text("- mm_0\n- mm_1\n- mm_2\n- mm_4\n- mm_5\n")
    (folder / "layers.yaml").write_text("".join(f"- {s}\n" for s in shapes))
    counts = {"mm_0": 2, "mm_1": 1, "mm_2": 1, "mm_4": 1, "mm_5": 1}
    (folder / "layer_count.yaml").write_text("".join(
        f"'1_1_128_1_{shapes[s][0]}_{shapes[s][1]}_1_1_1_1_1':\n  count: {n}\n  name: {s}\n"
        for s, n in counts.items()))
    net = load_network(folder)
    assert {lay.name: lay.count for lay in net} == counts
    assert net.total_macs == 128 * (2 * 768 * 768 + 64 * 128 + 128 * 64 + 2 * 768 * 3072)
    assert net.total_macs == load_network("bert").total_macs
    (folder / "unique_layers.yaml").write_text("- mm_0\n- mm_9\n")
    with pytest.raises(WorkloadError, match="lists 'mm_9'"):
        load_network(folder)
