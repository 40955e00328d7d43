"""Timeloop interop: read a folder of Timeloop problem files as a network; export a search
result as Timeloop inputs.

Reading (:func:`load_timeloop_problems`): every ``*.yaml``/``*.yml`` file of a folder except
``layer_count.yaml`` is one Timeloop ``cnn-layer`` problem, in the v0.3 form
``problem: {shape: cnn-layer, instance: {R: .., ...}}`` or the flat form of the original DOSA
workloads ``problem: {R: .., ..., shape: cnn-layer}``. The layer is named after the file stem,
the network after the folder. Counts come from an optional ``layer_count.yaml`` keyed by
Timeloop's config_str ``R_S_P_Q_C_K_N_Wstride_Hstride_Wdilation_Hdilation`` (spec §2.1, §2.3);
unlike the original, which silently defaulted to 1, a present counts file must name every
problem and nothing else. Everything is strict: an unknown key, a non-integer value, a dilation
(not modelled) or a shape other than cnn-layer is a :class:`~dosa.workload.WorkloadError`
naming the file and the field. A folder of the original DOSA (``dataset/workloads/<wl>/``)
reads as is: its ``unique_layers.yaml`` lists the problems to map, so the element-wise
problems beside them are skipped (logged), and ``layers.yaml`` is an index.

Writing (:func:`export_timeloop`): a ``dosa search`` result folder becomes a folder of Timeloop
v0.3 inputs, complete or absent (built in a temporary sibling, renamed into place)::

    arch.yaml                  the Gemmini-TL architecture of the result's hardware (spec §1.3)
    problems/<layer>.yaml      one problem per unique layer
    problems/layer_count.yaml  counts, keyed by config_str (the problems folder is a workload)
    mappings/<layer>.yaml      the layer's mapping: bypass, temporal and spatial directives
    README.md                  how to run ``timeloop-model`` per layer

:func:`read_timeloop_export` reads such a folder back (network, hardware, mappings).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from dosa.hardware import Hardware
from dosa.workload import BUILTIN_NETWORKS, DIMS, Layer, Network, WorkloadError

if TYPE_CHECKING:  # dosa.mapping imports torch; reading problems must not
    from dosa.mapping import Mapping

log = logging.getLogger(__name__)

__all__ = [
    "ARCH_FILE",
    "COUNTS_FILE",
    "MAPPINGS_DIR",
    "PROBLEMS_DIR",
    "TimeloopError",
    "arch_dict",
    "config_str",
    "export_timeloop",
    "load_timeloop_problems",
    "mapping_dict",
    "problem_dict",
    "read_timeloop_export",
    "write_timeloop_problems",
]

COUNTS_FILE = "layer_count.yaml"
#: The original DOSA's index files: ``unique_layers.yaml`` lists the problems to read (the
#: folder also holds element-wise problems it never maps); ``layers.yaml`` lists every layer.
UNIQUE_FILE = "unique_layers.yaml"
INDEX_FILES = (UNIQUE_FILE, "layers.yaml")
ARCH_FILE = "arch.yaml"
PROBLEMS_DIR = "problems"
MAPPINGS_DIR = "mappings"
README_FILE = "README.md"
YAML_SUFFIXES = (".yaml", ".yml")

#: Keys of a problem instance: the dims, strides and dilations of Timeloop's cnn-layer shape.
INSTANCE_KEYS: tuple[str, ...] = (*DIMS, "Wstride", "Hstride", "Wdilation", "Hdilation")
#: Newer Timeloop problem files call the output channels M.
ALIASES = {"M": "K"}
_REQUIRED = ("C", "K")
_SHAPE = "cnn-layer"
#: Keys a full shape definition may carry besides its name (their content is Timeloop's).
_SHAPE_KEYS = ("name", "dimensions", "coefficients", "data-spaces")
TENSORS = ("Weights", "Inputs", "Outputs")
#: Tensors each level keeps (spec §1.1); the rest bypass it. Level order as dosa.mapping.
KEEP: dict[str, tuple[str, ...]] = {
    "Registers": ("Weights",),
    "Accumulator": ("Outputs",),
    "Scratchpad": ("Weights", "Inputs"),
    "DRAM": TENSORS,
}
#: The one legal spatial fan-out below each level (spec §3.4): C across PERows below the
#: accumulator, K across PECols below the scratchpad.
SPATIAL_DIM = {"Accumulator": "C", "Scratchpad": "K"}


class TimeloopError(ValueError):
    """A result cannot be exported, or an exported folder cannot be read back."""


# ----------------------------------------------------------------------------------------------
# Problems
# ----------------------------------------------------------------------------------------------
def config_str(layer: Layer) -> str:
    """Timeloop's ``R_S_P_Q_C_K_N_Wstride_Hstride_Wdilation_Hdilation`` (dilations are 1)."""
    return f"{layer.key()}_1_1"


def problem_dict(layer: Layer) -> dict[str, Any]:
    """The v0.3 Timeloop problem of ``layer`` (``problem: {shape, instance}``)."""
    instance = {d: getattr(layer, d) for d in DIMS}
    instance |= {"Wstride": layer.Wstride, "Hstride": layer.Hstride,
                 "Wdilation": 1, "Hdilation": 1}
    return {"problem": {"shape": _SHAPE, "instance": instance}}


def _natural_key(text: str) -> list[Any]:
    """``x.2`` before ``x.11``: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _read_yaml(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{path}: not UTF-8 text (byte {exc.start}); expected a YAML "
                            f"{what}") from None
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise WorkloadError(f"{path}: not valid YAML ({reason}); expected a YAML {what}") from None


def _check_value(path: Path, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WorkloadError(f"{path}: field {key!r} must be a positive integer, got {value!r}")
    return value


def _check_shape(path: Path, shape: Any) -> None:
    name = shape.get("name") if isinstance(shape, MappingABC) else shape
    if isinstance(shape, MappingABC):
        unknown = [k for k in shape if k not in _SHAPE_KEYS]
        if unknown:
            raise WorkloadError(f"{path}: field 'shape' has unknown key(s) "
                                f"{', '.join(map(repr, unknown))}; allowed: "
                                f"{', '.join(_SHAPE_KEYS)}")
    if not isinstance(name, str) or name.lower() != _SHAPE:
        raise WorkloadError(f"{path}: field 'shape' must be {_SHAPE} (or {{name: CNN-Layer}}), "
                            f"got {name!r}; only convolution/matmul layers are modelled")


def _parse_problem(path: Path, data: Any) -> Layer:
    """One problem file's content -> a count-1 :class:`Layer` named after the file stem."""
    if not isinstance(data, MappingABC) or "problem" not in data:
        got = type(data).__name__ if not isinstance(data, MappingABC) else list(data)
        raise WorkloadError(f"{path}: expected a Timeloop problem (top-level key 'problem'), "
                            f"got {got!r}")
    extra = [k for k in data if k != "problem"]
    if extra:
        raise WorkloadError(f"{path}: unknown top-level key(s) {', '.join(map(repr, extra))}; "
                            "allowed: problem")
    problem = data["problem"]
    if not isinstance(problem, MappingABC):
        raise WorkloadError(f"{path}: field 'problem' must be a mapping, got "
                            f"{type(problem).__name__}")
    if "instance" in problem:
        allowed: tuple[str, ...] = ("shape", "instance")
        unknown = [k for k in problem if k not in allowed]
        if unknown:
            raise WorkloadError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} in "
                                f"'problem'; allowed: {', '.join(allowed)}")
        instance = problem["instance"]
        if not isinstance(instance, MappingABC):
            raise WorkloadError(f"{path}: field 'instance' must be a mapping, got "
                                f"{type(instance).__name__}")
    else:
        instance = {k: v for k, v in problem.items() if k != "shape"}
    if "shape" in problem:
        _check_shape(path, problem["shape"])
    allowed_keys = (*INSTANCE_KEYS, *ALIASES)
    unknown = [k for k in instance if k not in allowed_keys]
    if unknown:
        raise WorkloadError(f"{path}: unknown field(s) {', '.join(map(repr, unknown))}; "
                            f"allowed: {', '.join(allowed_keys)} (M = K)")
    fields: dict[str, int] = {}
    for key, value in instance.items():
        target = ALIASES.get(key, key)
        if target in fields:
            raise WorkloadError(f"{path}: fields {target!r} and {key!r} both given; "
                                f"{key!r} is an alias of {target!r}, give one")
        fields[target] = _check_value(path, key, value)
    missing = [k for k in _REQUIRED if k not in fields]
    if missing:
        raise WorkloadError(f"{path}: missing required field(s) {', '.join(map(repr, missing))}"
                            " (K may be given as M)")
    for key in ("Wdilation", "Hdilation"):
        if fields.pop(key, 1) != 1:
            raise WorkloadError(f"{path}: field {key!r} must be 1 (dilation is not modelled: "
                                "the input halo would grow); allowed: 1")
    return Layer(path.stem, **fields)


def _read_counts(path: Path, by_key: dict[str, Layer]) -> list[Layer]:
    """Layers with the counts of ``path``, in the file's order (module docstring)."""
    data = _read_yaml(path, "layer count file")
    if data is None:
        data = {}
    if not isinstance(data, MappingABC):
        raise WorkloadError(f"{path}: expected a mapping config_str -> {{count, name}}, got "
                            f"{type(data).__name__}")
    out: list[Layer] = []
    for key, entry in data.items():
        if not isinstance(key, str):
            raise WorkloadError(
                f"{path}: key {key!r} is not a config_str "
                "'R_S_P_Q_C_K_N_Wstride_Hstride_Wdilation_Hdilation' (unquoted, YAML reads "
                "1_1_56_... as a number); quote the key")
        if key not in by_key:
            raise WorkloadError(f"{path}: key {key!r} matches no problem file in "
                                f"{path.parent}; each key must be the config_str of one problem")
        if not isinstance(entry, MappingABC) or "count" not in entry:
            raise WorkloadError(f"{path}: entry {key!r} must be a mapping {{count: n, name: "
                                f"...}}, got {entry!r}")
        unknown = [k for k in entry if k not in ("count", "name")]
        if unknown:
            raise WorkloadError(f"{path}: entry {key!r} has unknown key(s) "
                                f"{', '.join(map(repr, unknown))}; allowed: count, name")
        count = _check_value(path, f"{key}.count", entry["count"])
        out.append(dataclasses.replace(by_key[key], count=count))
    missing = [k for k in by_key if k not in data]
    if missing:
        raise WorkloadError(f"{path}: no entry for problem {by_key[missing[0]].name!r} "
                            f"(config_str {missing[0]!r}); every problem needs a count")
    return out


def _unique_layer_files(path: Path) -> list[Path] | None:
    """The problem files ``unique_layers.yaml`` lists (the original DOSA's workload folders,
    which also hold unused element-wise problems), or None when the folder has no such list."""
    index = path / UNIQUE_FILE
    if not index.is_file():
        return None
    names = _read_yaml(index, "list of unique layers")
    if (not isinstance(names, list) or not names
            or not all(isinstance(n, str) and n for n in names)):
        raise WorkloadError(f"{index}: expected a non-empty list of problem names (file stems)")
    files = []
    for n in names:
        found = [path / f"{n}{suffix}" for suffix in YAML_SUFFIXES
                 if (path / f"{n}{suffix}").is_file()]
        if not found:
            raise WorkloadError(f"{index}: lists {n!r} but {path / (n + '.yaml')} does not "
                                "exist")
        files.append(found[0])
    return files


def load_timeloop_problems(folder: str | os.PathLike[str], *, name: str | None = None
                           ) -> Network:
    """Read a folder of Timeloop problem files as a :class:`Network` (module docstring).

    ``name`` defaults to the folder's name. Layers follow ``layer_count.yaml``'s order when
    it exists, else file names in natural order (``x.2`` before ``x.11``). Hidden files are
    skipped; any other file or folder that is not a ``*.yaml``/``*.yml`` problem is an error.
    """
    path = Path(folder)
    if not path.is_dir():
        what = "is a file" if path.exists() else "does not exist"
        raise WorkloadError(f"{path}: {what}; expected a folder of Timeloop problem YAML files")
    files: list[Path] = []
    unique = _unique_layer_files(path)
    for entry in sorted(path.iterdir(), key=lambda p: _natural_key(p.name)):
        if entry.name.startswith(".") or entry.name in (COUNTS_FILE, *INDEX_FILES):
            continue
        if unique is not None:
            if entry not in unique:
                log.info("%s: not listed in %s, ignored", entry, UNIQUE_FILE)
            continue
        if not entry.is_file() or entry.suffix.lower() not in YAML_SUFFIXES:
            kind = "folder" if entry.is_dir() else "file"
            raise WorkloadError(f"{entry}: unexpected {kind} in a Timeloop problem folder; "
                                f"allowed: *.yaml/*.yml problems and {COUNTS_FILE}")
        files.append(entry)
    files = unique if unique is not None else files
    if not files:
        raise WorkloadError(f"{path}: no Timeloop problem files (*.yaml, *.yml) in the folder; "
                            "a workload is a folder of Timeloop problems, a YAML or ONNX file, "
                            f"or a built-in network ({', '.join(BUILTIN_NETWORKS)})")
    by_key: dict[str, Layer] = {}
    source: dict[str, Path] = {}
    stems: dict[str, Path] = {}
    for file in files:
        if file.stem in stems:
            raise WorkloadError(f"{stems[file.stem]} and {file}: two problem files for layer "
                                f"{file.stem!r}; layer names (file stems) must be unique")
        stems[file.stem] = file
        layer = _parse_problem(file, _read_yaml(file, "Timeloop problem"))
        key = config_str(layer)
        if key in by_key:
            raise WorkloadError(f"{source[key]} and {file}: the same problem (config_str "
                                f"{key!r}); keep one file and give its count in {COUNTS_FILE}")
        by_key[key], source[key] = layer, file
    counts = path / COUNTS_FILE
    if counts.is_file():
        layers = _read_counts(counts, by_key)
    else:
        log.info("%s: no %s, every layer counts once", path, COUNTS_FILE)
        layers = list(by_key.values())
    network_name = name if name is not None else path.resolve().name
    try:
        return Network(network_name, tuple(layers))
    except WorkloadError as exc:
        raise WorkloadError(f"{path}: {exc}") from None


def _dump(path: Path, data: Any) -> None:
    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=False),
                    encoding="utf-8")


def _check_layer_names(network: Network) -> None:
    """Layer names become file names: refuse those that cannot round-trip as file stems."""
    stems = {COUNTS_FILE.rsplit(".", 1)[0]}
    keys: dict[str, str] = {}
    for layer in network:
        name = layer.name
        if (name.startswith(".") or any(c in name for c in "/\\\0")
                or name.rsplit(".", 1)[-1].lower() in {"yaml", "yml"}):
            raise TimeloopError(f"layer {name!r}: cannot be a file name (no leading '.', no "
                                "'/' or '\\', no .yaml/.yml ending); rename the layer")
        if name in stems:
            raise TimeloopError(f"layer {name!r}: the name is reserved for {COUNTS_FILE}; "
                                "rename the layer")
        key = config_str(layer)
        if key in keys:
            raise TimeloopError(f"layers {keys[key]!r} and {name!r} are the same Timeloop "
                                f"problem (config_str {key!r}), which {COUNTS_FILE} cannot "
                                "hold twice; merge them into one layer with the summed count")
        keys[key] = name


def write_timeloop_problems(network: Network, folder: str | os.PathLike[str]) -> Path:
    """Write ``network`` as a Timeloop problem folder (one file per layer + ``layer_count.yaml``)
    that :func:`load_timeloop_problems` reads back; ``folder`` must be new or empty."""
    _check_layer_names(network)
    path = Path(folder)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise TimeloopError(f"{path}: exists and is not an empty folder; expected a new or "
                            "empty folder")
    path.mkdir(parents=True, exist_ok=True)
    for layer in network:
        _dump(path / f"{layer.name}.yaml", problem_dict(layer))
    _dump(path / COUNTS_FILE, {config_str(layer): {"count": layer.count, "name": layer.name}
                               for layer in network})
    return path


# ----------------------------------------------------------------------------------------------
# Architecture
# ----------------------------------------------------------------------------------------------
def arch_dict(hardware: Hardware) -> dict[str, Any]:
    """The Gemmini-TL Timeloop v0.3 architecture of ``hardware`` (spec §1.1, §1.3).

    The numbers come from :meth:`Hardware.to_arch_columns`, the one place that applies §1.3;
    ``Hardware(16, 128, 32)`` gives the original base ``arch.yaml``.
    """
    col = hardware.to_arch_columns()
    pe = hardware.pe_dim
    dram = {"name": "DRAM", "class": "DRAM",
            "attributes": {"instances": 1, "word-bits": 8, "block_size": 64,
                           "shared_bandwidth": 8}}
    scratchpad = {"name": "Scratchpad", "class": "SRAM", "attributes": {
        "entries": col["arch.mem2_entries"], "depth": col["arch.mem2_depth"],
        "width": col["arch.mem2_width"], "instances": col["arch.mem2_instances"],
        "meshX": col["arch.mem2_meshX"], "word-bits": col["arch.mem2_word-bits"],
        "n_rdwr_ports": col["arch.mem2_n_rdwr_ports"], "n_banks": col["arch.mem2_n_banks"],
        "shared_bandwidth": col["arch.mem2_shared_bandwidth"]}}
    accumulator = {"name": "Accumulator", "class": "SRAM", "attributes": {
        "entries": col["arch.mem1_entries"], "depth": col["arch.mem1_depth"],
        "width": col["arch.mem1_width"], "instances": col["arch.mem1_instances"],
        "word-bits": col["arch.mem1_word-bits"],
        "network-word-bits": col["arch.mem1_network-word-bits"],
        "n_rdwr_ports": col["arch.mem1_n_rdwr_ports"], "n_banks": col["arch.mem1_n_banks"],
        "shared_bandwidth": col["arch.mem1_shared_bandwidth"]}}
    registers = {"name": "Registers", "class": "SRAM", "attributes": {
        "depth": 1, "width": 8, "entries": 1, "instances": col["arch.pe"], "word-bits": 8,
        "n_rdwr_ports": 2, "n_banks": 1}}
    macc = {"name": "MACC", "class": "intmac", "attributes": {"datawidth": 8, "word-bits": 8}}
    rows = {"name": f"PERows[0..{pe - 1}]", "local": [registers, macc]}
    cols = {"name": f"PECols[0..{pe - 1}]", "local": [accumulator], "subtree": [rows]}
    chip = {"name": "Chip", "attributes": {"technology": "40nm"}, "local": [scratchpad],
            "subtree": [cols]}
    system = {"name": "System", "local": [dram], "subtree": [chip]}
    return {"architecture": {"version": 0.3, "subtree": [system]}}


def _range_size(path: Path, name: Any, prefix: str) -> int:
    m = re.fullmatch(rf"{prefix}\[0\.\.(\d+)\]", str(name))
    if m is None:
        raise TimeloopError(f"{path}: expected subtree '{prefix}[0..<pe_dim-1>]', got {name!r}")
    return int(m.group(1)) + 1


def _hardware_from_arch(path: Path, data: Any) -> Hardware:
    """Inverse of :func:`arch_dict`: the capacities Timeloop sees (spec §1.3 inverse)."""
    try:
        system = data["architecture"]["subtree"][0]
        chip = system["subtree"][0]
        cols = chip["subtree"][0]
        rows = cols["subtree"][0]
        local = {c["name"]: c["attributes"]
                 for level in (chip, cols, rows) for c in level["local"]}
        sp, acc, reg = local["Scratchpad"], local["Accumulator"], local["Registers"]
        pe = _range_size(path, rows["name"], "PERows")
        pe_cols = _range_size(path, cols["name"], "PECols")
        sp_bits = sp["depth"] * sp["width"] * sp["instances"]
        acc_bits = acc["depth"] * acc["width"] * acc["instances"]
        reg_instances = reg["instances"]
    except (KeyError, IndexError, TypeError) as exc:
        raise TimeloopError(f"{path}: not a Gemmini-TL v0.3 architecture (missing {exc})"
                            ) from None
    if pe_cols != pe or reg_instances != pe * pe or acc["instances"] != pe:
        raise TimeloopError(f"{path}: inconsistent PE array: PERows {pe}, PECols {pe_cols}, "
                            f"Registers instances {reg_instances}, Accumulator instances "
                            f"{acc['instances']}; expected pe_dim, pe_dim, pe_dim², pe_dim")
    return Hardware(pe, sp_bits / 8 / 1024, acc_bits / 8 / 1024)


# ----------------------------------------------------------------------------------------------
# Mappings
# ----------------------------------------------------------------------------------------------
def _factors(values: Any) -> str:
    return " ".join(f"{d}={int(v)}" for d, v in zip(DIMS, values, strict=True))


def mapping_dict(mapping: Mapping) -> dict[str, Any]:
    """The Timeloop v0.3 ``mapping:`` of a :class:`dosa.mapping.Mapping` (spec §3.4).

    Bypass directives first, then per level (Registers .. DRAM) a temporal directive with all
    seven factors and the full permutation, innermost first (factor-1 loops in the canonical
    place), and the spatial directives of the accumulator (C across PERows) and scratchpad
    (K across PECols).
    """
    from dosa.mapping import LEVEL_NAMES

    mapping = mapping.canonical()
    out: list[dict[str, Any]] = []
    for level in LEVEL_NAMES:
        keep = list(KEEP[level])
        out.append({"target": level, "type": "bypass", "keep": keep,
                    "bypass": [t for t in TENSORS if t not in keep]})
    for j, level in enumerate(LEVEL_NAMES):
        out.append({"target": level, "type": "temporal",
                    "factors": _factors(mapping.temporal[j]),
                    "permutation": mapping.order(j)})
        if level in SPATIAL_DIM:
            dim = SPATIAL_DIM[level]
            out.append({"target": level, "type": "spatial",
                        "factors": _factors(mapping.spatial[j]),
                        "permutation": dim + "".join(d for d in DIMS if d != dim)})
    return {"mapping": out}


def _parse_factors(path: Path, text: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for word in str(text).split():
        m = re.fullmatch(r"([A-Z])=(\d+)", word)
        if m is None or ALIASES.get(m.group(1), m.group(1)) not in DIMS:
            raise TimeloopError(f"{path}: bad factor {word!r}; expected <dim>=<int> with dim "
                                f"one of {', '.join(DIMS)}")
        out[ALIASES.get(m.group(1), m.group(1))] = int(m.group(2))
    return out


def _mapping_from_dict(path: Path, data: Any) -> Mapping:
    """Inverse of :func:`mapping_dict` (partial permutations are completed outermost)."""
    from dosa.mapping import LEVEL_NAMES, NUM_DIMS, MappingError
    from dosa.mapping import Mapping as _Mapping

    entries = data.get("mapping") if isinstance(data, MappingABC) else None
    if not isinstance(entries, list):
        raise TimeloopError(f"{path}: expected a Timeloop mapping (top-level list 'mapping')")
    temporal = np.ones((len(LEVEL_NAMES), NUM_DIMS), dtype=np.int64)
    spatial = np.ones_like(temporal)
    rank = np.tile(np.arange(NUM_DIMS), (len(LEVEL_NAMES), 1))
    for entry in entries:
        if not isinstance(entry, MappingABC) or entry.get("target") not in LEVEL_NAMES:
            raise TimeloopError(f"{path}: directive {entry!r} must target one of "
                                f"{', '.join(LEVEL_NAMES)}")
        level, kind = entry["target"], entry.get("type")
        j = LEVEL_NAMES.index(level)
        if kind == "bypass":
            if sorted(entry.get("keep") or []) != sorted(KEEP[level]):
                raise TimeloopError(f"{path}: {level} keeps {entry.get('keep')!r}; the Gemmini-TL"
                                    f" model needs keep {list(KEEP[level])!r}")
            continue
        if kind not in ("temporal", "spatial"):
            raise TimeloopError(f"{path}: directive type {kind!r} at {level}; allowed: bypass, "
                                "temporal, spatial")
        table = temporal if kind == "temporal" else spatial
        for d, value in _parse_factors(path, entry.get("factors", "")).items():
            table[j, DIMS.index(d)] = value
        if kind == "temporal" and "permutation" in entry:
            perm = [ALIASES.get(c, c) for c in str(entry["permutation"])]
            if any(c not in DIMS for c in perm) or len(set(perm)) != len(perm):
                raise TimeloopError(f"{path}: permutation {entry['permutation']!r} at {level} "
                                    f"must list distinct dims of {''.join(DIMS)}")
            order = perm + [d for d in DIMS if d not in perm]
            rank[j] = [order.index(d) for d in DIMS]
    try:
        return _Mapping(temporal, spatial, rank)
    except MappingError as exc:
        raise TimeloopError(f"{path}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# Export and read back
# ----------------------------------------------------------------------------------------------
def _result_network(result_dir: Path, workload: str) -> Network:
    """The network stored beside a result's mappings (one ``mappings.csv`` row per layer)."""
    import pandas as pd

    from dosa.search.result import MAPPINGS_FILE

    frame = pd.read_csv(result_dir / MAPPINGS_FILE)
    ints = (*DIMS, "Wstride", "Hstride", "count")
    layers = [Layer(str(row["layer"]), **{k: int(row[k]) for k in ints})
              for row in frame.to_dict("records")]
    return Network(workload, tuple(layers))


def _readme(result: Any, network: Network) -> str:
    hw = result.hardware
    lines = [
        f"# Timeloop inputs for {network.name}",
        "",
        f"Exported by `dosa export-timeloop` from a `dosa search` result (method {result.method},"
        f" seed {result.seed}). Hardware: Gemmini-TL with a {hw.pe_dim}x{hw.pe_dim} PE array, "
        f"{hw.sp_kb:g} KB scratchpad, {hw.acc_kb:g} KB accumulator (capacities are rounded up "
        "to whole rows in `arch.yaml`).",
        "",
        "* `arch.yaml` - the Timeloop v0.3 architecture.",
        "* `problems/<layer>.yaml` - one `cnn-layer` problem per unique layer; "
        "`problems/layer_count.yaml` - how often each occurs (keyed by config_str).",
        "* `mappings/<layer>.yaml` - the searched mapping of that layer.",
        "",
        "Evaluate each layer from this folder (Timeloop writes its stats into the working "
        "directory, so use one directory per layer):",
        "",
        "```sh",
    ]
    for layer in network:
        name = shlex.quote(layer.name)
        out = shlex.quote(f"out/{layer.name}")
        lines.append(f"mkdir -p {out} && (cd {out} && timeloop-model ../../arch.yaml "
                     f"../../problems/{name}.yaml ../../mappings/{name}.yaml)")
    lines += [
        "```",
        "",
        "Network totals weight each layer by its count: cycles = sum(count x cycles), "
        "energy = sum(count x energy), EDP = cycles x energy.",
        "",
        "| layer | count | dosa cycles | dosa energy (uJ) |",
        "|---|---|---|---|",
    ]
    for layer, cycles, energy in zip(network, result.layer_cycles, result.layer_energy_uj,
                                     strict=True):
        lines.append(f"| {layer.name} | {layer.count} | {cycles:.6g} | {energy:.6g} |")
    return "\n".join(lines) + "\n"


def export_timeloop(result_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str]
                    ) -> Path:
    """Write a ``dosa search`` result as Timeloop inputs into ``out_dir``; return ``out_dir``.

    ``out_dir`` must be new or an empty folder; it is built in a temporary sibling and renamed
    into place, so it is complete or absent. Refused (:class:`TimeloopError` or
    :class:`dosa.io.OutputPathError`, both ValueErrors): a ``result_dir`` that is not a
    result folder, mappings that are illegal on the result's hardware, layers that cannot be
    Timeloop files (see :func:`write_timeloop_problems`).
    """
    from dosa.io import check_output_dir
    from dosa.mapping import MappingError
    from dosa.search.result import ResultError, SearchResult

    out = check_output_dir(out_dir, "out_dir")
    if out.is_dir() and any(out.iterdir()):
        raise TimeloopError(f"out_dir {str(out)!r}: folder exists and is not empty; expected a "
                            "new or empty folder")
    src = Path(result_dir)
    if not src.is_dir():
        what = "is a file" if src.exists() else "does not exist"
        raise TimeloopError(f"result_dir {str(src)!r}: {what}; expected a dosa search result "
                            "folder (result.json, mappings.csv)")
    try:
        result = SearchResult.read(src)
        network = _result_network(src, result.workload)
    except (ResultError, KeyError, TypeError, ValueError) as exc:
        reason = " ".join(str(exc).split())
        raise TimeloopError(f"result_dir {str(src)!r}: not a readable dosa search result "
                            f"({reason})") from None
    if len(result.mappings) != len(network):
        raise TimeloopError(f"result_dir {str(src)!r}: {len(result.mappings)} mappings for "
                            f"{len(network)} layers")
    for layer, mapping in zip(network, result.mappings, strict=True):
        try:
            mapping.check(layer, result.hardware)
        except MappingError as exc:
            raise TimeloopError(f"result_dir {str(src)!r}: layer {layer.name!r}: mapping is "
                                f"illegal on {result.hardware}: {exc}") from None
    try:
        _check_layer_names(network)
    except TimeloopError as exc:
        raise TimeloopError(f"result_dir {str(src)!r}: {exc}") from None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        _dump(tmp / ARCH_FILE, arch_dict(result.hardware))
        write_timeloop_problems(network, tmp / PROBLEMS_DIR)
        (tmp / MAPPINGS_DIR).mkdir()
        for layer, mapping in zip(network, result.mappings, strict=True):
            _dump(tmp / MAPPINGS_DIR / f"{layer.name}.yaml", mapping_dict(mapping))
        (tmp / README_FILE).write_text(_readme(result, network), encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.is_dir():
            out.rmdir()  # empty (checked above); fails, leaving it alone, if filled meanwhile
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote Timeloop inputs for %d layers to %s", len(network), out)
    return out


def read_timeloop_export(out_dir: str | os.PathLike[str]
                         ) -> tuple[Network, Hardware, dict[str, Mapping]]:
    """Read a folder written by :func:`export_timeloop`: (network, hardware, mappings by layer).

    The network is :func:`load_timeloop_problems` of ``problems/`` named after ``out_dir``;
    the hardware holds the capacities ``arch.yaml`` gives Timeloop (the result's own sizes
    when they are whole rows, else rounded up); every mapping is checked legal on it.
    """
    from dosa.mapping import MappingError

    root = Path(out_dir)
    if not (root / ARCH_FILE).is_file():
        raise TimeloopError(f"{root}: no {ARCH_FILE}; expected a folder written by "
                            "export_timeloop")
    arch = _read_yaml(root / ARCH_FILE, "Timeloop architecture")
    hardware = _hardware_from_arch(root / ARCH_FILE, arch)
    network = load_timeloop_problems(root / PROBLEMS_DIR, name=root.resolve().name)
    mapping_dir = root / MAPPINGS_DIR
    files = {p.stem: p for p in mapping_dir.glob("*.yaml")} if mapping_dir.is_dir() else {}
    extra = sorted(set(files) - set(network.layer_names))
    if extra:
        raise TimeloopError(f"{mapping_dir / (extra[0] + '.yaml')}: no problem of that name in "
                            f"{root / PROBLEMS_DIR}")
    mappings: dict[str, Mapping] = {}
    for layer in network:
        path = files.get(layer.name)
        if path is None:
            raise TimeloopError(f"{mapping_dir}: no mapping file for layer {layer.name!r}")
        mapping = _mapping_from_dict(path, _read_yaml(path, "Timeloop mapping"))
        try:
            mapping.check(layer, hardware)
        except MappingError as exc:
            raise TimeloopError(f"{path}: {exc}") from None
        mappings[layer.name] = mapping
    return network, hardware, mappings
