"""Layers and networks: the paper's "workload".

A layer is a Timeloop ``cnn-layer`` problem (R, S, P, Q, C, K, N plus strides; dilation is always
1). Matmuls are encoded as 1x1 convolutions (R = S = Q = 1). A network is the list of its *unique*
layers, each with the number of times it occurs, so per-network totals are count-weighted sums.

Grouped and depthwise convolutions are exact in this encoding: a convolution of C -> K channels
in G groups is G independent convolutions of C/G -> K/G channels, so it is one layer with C/G,
K/G and ``count`` x G (depthwise: C/G = 1). Its MAC total R S P Q (C/G) K N is preserved.
Dilation is refused: the model's input halo assumes dilation 1 (spec §4.2), so a dilated layer
would be silently mis-scored.

Networks come from YAML (:func:`load_network`), PyTorch (:func:`from_torch`), ONNX and
folders of Timeloop problem files (:mod:`dosa.workload_import`, :mod:`dosa.timeloop`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

logger = logging.getLogger(__name__)

DIMS: tuple[str, ...] = ("R", "S", "P", "Q", "C", "K", "N")
"""Canonical dimension order; array columns and mapping vectors index dims in this order."""

STRIDES: tuple[str, ...] = ("Wstride", "Hstride")
BUILTIN_NETWORKS: tuple[str, ...] = ("resnet50", "bert", "unet", "retinanet")

_LAYER_INT_FIELDS: tuple[str, ...] = (*DIMS, *STRIDES, "count")
_LAYER_KEYS: tuple[str, ...] = ("name", *_LAYER_INT_FIELDS, "groups", "Wdilation", "Hdilation")
_REQUIRED_LAYER_KEYS: tuple[str, ...] = ("name", "C", "K")
_TOP_KEYS: tuple[str, ...] = ("name", "layers")


class WorkloadError(ValueError):
    """A layer or network description is invalid (bad value, bad YAML, unknown network)."""


def _check_positive_int(layer: str, field: str, value: Any) -> None:
    """Reject anything but a positive ``int`` (bools and integral floats included) early.

    Silent coercion would hide typos such as ``C: 3.5`` or ``K: true`` in user YAML files and
    propagate non-integer tile factors into the mapping code.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise WorkloadError(
            f"layer {layer!r}: field {field!r} must be a positive integer, got {value!r}"
        )


@dataclass(frozen=True)
class Layer:
    """One unique layer of a network, with how many times it repeats (``count``).

    Everything after ``name`` is keyword-only (``Layer("fc", C=2048, K=1000)``): positional
    dims are too easy to transpose. ``C`` and ``K`` have no default because there is no
    sensible one.
    """

    name: str
    _: KW_ONLY
    R: int = 1
    S: int = 1
    P: int = 1
    Q: int = 1
    C: int
    K: int
    N: int = 1
    Wstride: int = 1
    Hstride: int = 1
    count: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise WorkloadError(f"layer name must be a non-empty string, got {self.name!r}")
        for f in _LAYER_INT_FIELDS:
            value = getattr(self, f)
            _check_positive_int(self.name, f, value)
            # Normalise numpy integers to plain int so hashing/equality/YAML dumping behave.
            object.__setattr__(self, f, int(value))

    @property
    def dims(self) -> tuple[int, ...]:
        """Problem dimensions in canonical :data:`DIMS` order."""
        return tuple(getattr(self, d) for d in DIMS)

    @property
    def strides(self) -> tuple[int, int]:
        """``(Wstride, Hstride)``."""
        return (self.Wstride, self.Hstride)

    @property
    def macs(self) -> int:
        """Multiply-accumulates of a single instance of this layer."""
        return math.prod(self.dims)

    def key(self) -> str:
        """Identity string ``R_S_P_Q_C_K_N_Wstride_Hstride`` (DOSA's config_str minus dilation).

        Two layers with the same key are the same problem regardless of name or count.
        """
        return "_".join(str(v) for v in (*self.dims, self.Wstride, self.Hstride))

    def is_matmul(self) -> bool:
        """True for matmul-as-1x1-conv layers (R = S = Q = 1, unit stride)."""
        return self.R == self.S == self.Q == 1 and self.strides == (1, 1)

    @classmethod
    def from_dims(
        cls,
        name: str,
        dims: Sequence[int],
        Wstride: int = 1,
        Hstride: int = 1,
        count: int = 1,
    ) -> Layer:
        """Build a layer from a 7-sequence in :data:`DIMS` order."""
        if len(dims) != len(DIMS):
            raise WorkloadError(
                f"layer {name!r}: dims must have {len(DIMS)} entries {DIMS}, got {len(dims)}"
            )
        return cls(
            name,
            **dict(zip(DIMS, dims, strict=True)),
            Wstride=Wstride,
            Hstride=Hstride,
            count=count,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with every field (the YAML layer format)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def grouped_layer(name: str, *, C: int, K: int, groups: int = 1, count: int = 1,
                  **dims: int) -> Layer:
    """The layer of a convolution with ``C`` input and ``K`` output channels in ``groups``
    groups: C/G -> K/G channels, repeated ``count`` x G times (module docstring).

    ``dims`` are the other :class:`Layer` fields (R, S, P, Q, N, Wstride, Hstride).
    """
    _check_positive_int(name, "groups", groups)
    for field, value in (("C", C), ("K", K)):
        _check_positive_int(name, field, value)
        if value % groups:
            raise WorkloadError(f"layer {name!r}: field {field!r} ({value}) must be divisible "
                                f"by groups ({groups})")
    _check_positive_int(name, "count", count)
    return Layer(name, C=C // groups, K=K // groups, count=count * groups, **dims)


@dataclass(frozen=True)
class Network:
    """A named network: its unique layers, each carrying its repeat count."""

    name: str
    layers: tuple[Layer, ...]

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise WorkloadError(f"network {self.name!r} has no layers")
        seen: set[str] = set()
        for layer in layers:
            if not isinstance(layer, Layer):
                raise WorkloadError(
                    f"network {self.name!r}: layers must be Layer objects, got {type(layer)!r}"
                )
            if layer.name in seen:
                raise WorkloadError(f"network {self.name!r}: duplicate layer name {layer.name!r}")
            seen.add(layer.name)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, item: int | str) -> Layer:
        """Index by position or by layer name."""
        if isinstance(item, str):
            for layer in self.layers:
                if layer.name == item:
                    return layer
            raise KeyError(f"network {self.name!r} has no layer {item!r}")
        return self.layers[item]

    @property
    def layer_names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    @property
    def total_macs(self) -> int:
        """Count-weighted MACs of the whole network (one inference)."""
        return sum(layer.count * layer.macs for layer in self.layers)

    @property
    def num_instances(self) -> int:
        """Number of layer instances (sum of counts)."""
        return sum(layer.count for layer in self.layers)

    def dims_array(self) -> np.ndarray:
        """``[L, 7]`` int64 array of dims in :data:`DIMS` order, one row per unique layer."""
        return np.array([layer.dims for layer in self.layers], dtype=np.int64)

    def strides_array(self) -> np.ndarray:
        """``[L, 2]`` int64 array of ``(Wstride, Hstride)``."""
        return np.array([layer.strides for layer in self.layers], dtype=np.int64)

    def counts_array(self) -> np.ndarray:
        """``[L]`` int64 array of repeat counts (weights for network-level totals)."""
        return np.array([layer.count for layer in self.layers], dtype=np.int64)

    def to_frame(self) -> pd.DataFrame:
        """One row per unique layer: ``layer, R..N, Wstride, Hstride, count``."""
        rows = [{"layer": layer.name, **layer.to_dict()} for layer in self.layers]
        cols = ["layer", *_LAYER_INT_FIELDS]
        return pd.DataFrame(rows, columns=cols)

    def to_dict(self) -> dict[str, Any]:
        """The YAML network format; :func:`parse_network` round-trips it."""
        return {"name": self.name, "layers": [layer.to_dict() for layer in self.layers]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def parse_network(data: Any, source: str = "<data>") -> Network:
    """Validate a parsed YAML document and build a :class:`Network`.

    Strict on purpose: unknown keys and non-integer values are errors, because a silently
    ignored typo (``Hstrides: 2``) would change every downstream latency/energy number.
    ``source`` (usually the file path) is included in every error message.
    """
    if not isinstance(data, Mapping):
        raise WorkloadError(
            f"{source}: top level must be a mapping with a 'layers' list, got {type(data).__name__}"
        )
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        raise WorkloadError(
            f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
            f"allowed keys: {', '.join(_TOP_KEYS)}"
        )
    name = data.get("name")
    if name is None:
        name = Path(source).stem
    if not isinstance(name, str) or not name:
        raise WorkloadError(f"{source}: network 'name' must be a non-empty string, got {name!r}")
    raw_layers = data.get("layers")
    if raw_layers is None:
        raise WorkloadError(f"{source}: missing required key 'layers'")
    if not isinstance(raw_layers, list):
        raise WorkloadError(f"{source}: 'layers' must be a list, got {type(raw_layers).__name__}")
    if not raw_layers:
        raise WorkloadError(f"{source}: 'layers' is empty; a network needs at least one layer")

    layers: list[Layer] = []
    for i, raw in enumerate(raw_layers):
        if not isinstance(raw, Mapping):
            raise WorkloadError(
                f"{source}: layer at index {i} must be a mapping, got {type(raw).__name__}"
            )
        label = repr(raw["name"]) if "name" in raw else f"at index {i}"
        unknown = [k for k in raw if k not in _LAYER_KEYS]
        if unknown:
            raise WorkloadError(
                f"{source}: layer {label}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"allowed keys: {', '.join(_LAYER_KEYS)}"
            )
        missing = [k for k in _REQUIRED_LAYER_KEYS if k not in raw]
        if missing:
            raise WorkloadError(
                f"{source}: layer {label}: missing required key(s) {', '.join(map(repr, missing))}"
            )
        if not isinstance(raw["name"], str) or not raw["name"]:
            raise WorkloadError(
                f"{source}: layer at index {i}: 'name' must be a non-empty string, "
                f"got {raw['name']!r}"
            )
        fields_ = {str(k): v for k, v in raw.items()}
        try:
            for key in ("Wdilation", "Hdilation"):
                if key in fields_:
                    _check_positive_int(fields_["name"], key, fields_[key])
                    if fields_.pop(key) != 1:
                        raise WorkloadError(
                            f"layer {fields_['name']!r}: field {key!r} must be 1 (dilation is not "
                            "modelled: the input halo would grow); allowed: 1")
            layers.append(grouped_layer(**fields_))
        except WorkloadError as exc:
            raise WorkloadError(f"{source}: {exc}") from None
    try:
        return Network(name, tuple(layers))
    except WorkloadError as exc:
        raise WorkloadError(f"{source}: {exc}") from None


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    """A YAML mapping repeats a key (raised by :class:`_UniqueKeyLoader`)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys in a mapping.

    PyYAML silently keeps the last of ``{C: 3, C: 5}``; in a workload that hides a typo and
    changes every result, so a repeated key is an error naming the key and its layer.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" merges are allowed to be overridden
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: SafeLoader reports it below
                continue
            if duplicate:
                raise _DuplicateKeyError(
                    None, None,
                    f"{_mapping_label(node)}: duplicate key {key!r}; each key may appear once "
                    f"(line {key_node.start_mark.line + 1})",
                    key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _mapping_label(node: yaml.MappingNode) -> str:
    """``layer 'x'`` for a layer mapping, ``top level`` for the network, else its line."""
    scalars = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    if "layers" in scalars:
        return "top level"
    name = scalars.get("name")
    if isinstance(name, yaml.ScalarNode):
        return f"layer {name.value!r}"
    return f"mapping at line {node.start_mark.line + 1}"


def _read_workload_file(path: Path, name_or_path: str | os.PathLike[str]) -> str:
    """Text of a user workload file, with one-line errors that name the file."""
    if not str(name_or_path).strip():  # Path("") is ".", which would read as "a directory"
        raise WorkloadError(
            f"workload is empty; expected a YAML workload file or one of the built-in "
            f"networks: {', '.join(BUILTIN_NETWORKS)}"
        )
    if not path.is_file():
        raise WorkloadError(
            f"{name_or_path!s} is not a built-in network and the file {str(path)!r} does "
            f"not exist; built-in networks: {', '.join(BUILTIN_NETWORKS)}"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadError(
            f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); expected a UTF-8 "
            f"YAML workload file"
        ) from None
    except OSError as exc:
        raise WorkloadError(f"{path}: cannot read the workload file ({exc.strerror})") from None


def load_network(name_or_path: str | os.PathLike[str]) -> Network:
    """Load a built-in network by name (case-insensitive), a YAML file, an ONNX file
    (``*.onnx``, :func:`dosa.workload_import.import_onnx`) or a folder of Timeloop problem
    files (:func:`dosa.timeloop.load_timeloop_problems`).

    Built-in names win over same-named files in the working directory, so ``"bert"`` always
    means the paper's BERT.
    """
    text: str
    source: str
    builtin = str(name_or_path).lower() if isinstance(name_or_path, str) else None
    if builtin in BUILTIN_NETWORKS:
        res = resources.files("dosa").joinpath("networks", f"{builtin}.yaml")
        text = res.read_text(encoding="utf-8")
        source = f"{builtin}.yaml (built-in)"
        logger.debug("loading built-in network %s", builtin)
    else:
        path = Path(name_or_path)
        if str(name_or_path).strip() and path.is_dir():
            from dosa.timeloop import load_timeloop_problems

            return load_timeloop_problems(path)
        if path.suffix.lower() == ".onnx":
            from dosa.workload_import import import_onnx

            return import_onnx(path).network
        text = _read_workload_file(path, name_or_path)
        source = str(path)
        logger.debug("loading network file %s", path)
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # safe: a SafeLoader subclass
    except _DuplicateKeyError as exc:
        raise WorkloadError(f"{source}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise WorkloadError(f"{source}: invalid YAML: {exc}") from None
    if isinstance(data, Mapping) and "name" not in data and builtin in BUILTIN_NETWORKS:
        data = {"name": builtin, **data}
    net = parse_network(data, source)
    logger.info(
        "loaded network %s: %d unique layers, %d instances, %.4g MACs",
        net.name,
        len(net.layers),
        net.num_instances,
        net.total_macs,
    )
    return net


def as_network(network: Network | str | os.PathLike[str]) -> Network:
    """``network`` itself, or the network a built-in name / YAML path names (:func:`load_network`).

    Lets the search functions take ``"bert"`` as well as a :class:`Network`, as the CLI does.
    """
    if isinstance(network, Network):
        return network
    if isinstance(network, str | os.PathLike):
        return load_network(network)
    raise TypeError("network must be a Network, a built-in network name or a YAML path, got "
                    f"{type(network).__name__}")


def from_torch(model: Any, example_inputs: Any, name: str | None = None) -> Network:
    """The network of a PyTorch module traced on ``example_inputs`` (``torch.export``).

    :func:`dosa.workload_import.import_torch` gives the import report as well.
    """
    from dosa.workload_import import import_torch

    return import_torch(model, example_inputs, name).network
