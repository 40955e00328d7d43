"""Import a network from PyTorch (``torch.export``) or ONNX into DOSA's layer encoding.

Every op that does multiply-accumulates becomes a :class:`~dosa.workload.Layer`; identical
layers merge into one with a count. Why these encodings (all MAC-exact, tested against
hand-computed totals):

* **Convolution** (1-D, 2-D): R = kernel width, S = kernel height, P/Q = output width/height,
  N = batch, strides as given; padding only changes the input extent, which the model derives
  from P, R and the stride. G groups are G independent C/G -> K/G convolutions
  (:func:`dosa.workload.grouped_layer`). Dilation != 1 is refused (the model's halo assumes 1).
* **Transposed convolution**: each input pixel scatters a kh x kw x K/G patch. With stride =
  kernel and no padding (the usual 2x upsampling) that is exactly a 1x1 convolution C/G ->
  K/G*kh*kw over the input grid (every tensor's size exact). Otherwise it is the "scatter"
  layer R = kw, S = kh, P/Q = input width/height, unit stride: MACs and weights exact, the
  activations' footprints approximate (noted in the report).
* **Matrix products** (``linear``, ``matmul``/``@``, ``mm``, ``bmm``, two-operand ``einsum``,
  ``scaled_dot_product_attention``): 1x1 convolutions as in the paper's BERT, rows in P, the
  reduction in C, the columns in K. Batch dims shared by both operands (heads, batch of
  attention) are independent products, so they become the count; when the right operand has
  no batch dims (a weight), the batch is folded into the rows, since the weight is reused.
  Attention is two products per head: Q.K^T (P = L, C = E, K = S) and A.V (C = S, K = Ev).

Ops without MACs (activations, pooling, norms, softmax, element-wise, reshapes) are listed in
the import report with their node, op and output shape, never silently dropped; an op that
does MACs but is not supported, or a shape that depends on the data, is refused naming the op
and the node (:class:`~dosa.workload.WorkloadError`).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dosa.workload import Layer, Network, WorkloadError, grouped_layer

logger = logging.getLogger(__name__)

REPORT_COLUMNS: tuple[str, ...] = ("node", "module", "op", "shape", "macs", "layer", "note")

#: Ops (PyTorch aten packet names, lower case; ONNX op types, lower case) that do MACs but have
#: no encoding here: refused by name rather than listed as MAC-free.
UNSUPPORTED_MAC_OPS: frozenset[str] = frozenset({
    "conv3d", "conv_transpose3d", "lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_cell",
    "gru_cell", "bilinear", "_trilinear", "tensordot", "cdist", "chain_matmul", "multi_dot",
    "addbmm", "addr", "outer", "ger", "dot", "vdot", "mv", "addmv", "inner", "kron",
    "_convolution", "cudnn_convolution", "mkldnn_convolution", "conv_tbc", "linalg_vecdot",
    "rnn", "qlinearconv", "qlinearmatmul", "convinteger", "matmulinteger", "attention",
    "multiheadattention", "deformconv",
})


#: Ops that only move or re-view data; the report marks them "layout only" so the ops whose
#: compute DOSA leaves out (activations, norms, softmax, pooling, element-wise) stand out.
_LAYOUT_OPS: frozenset[str] = frozenset({
    "view", "reshape", "_unsafe_view", "transpose", "permute", "t", "select", "slice",
    "squeeze", "unsqueeze", "contiguous", "flatten", "unflatten", "expand", "clone", "getitem",
    "split", "split_with_sizes", "chunk", "cat", "stack", "alias", "detach", "identity",
    "constant", "shape", "gather", "concat", "dropout", "lift_fresh_copy", "_to_copy", "to",
    "type_as", "cast", "unbind", "transpose_copy", "view_copy",
})


@dataclass(frozen=True)
class ImportedNetwork:
    """A network imported from a framework and the report of every op the import saw."""

    network: Network
    report: pd.DataFrame = field(compare=False, repr=False)

    @property
    def skipped(self) -> pd.DataFrame:
        """The ops without MACs (not modelled)."""
        return self.report[self.report["layer"] == ""].reset_index(drop=True)


class _Builder:
    """Collects (layer, report row) pairs and merges identical layers into one with a count."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.rows: list[dict[str, Any]] = []
        self.layers: list[tuple[str, Layer, int]] = []  # (base name, layer, report row)

    def skip(self, node: str, module: str, op: str, shape: Any, short: str,
             note: str = "") -> None:
        """An op without MACs; ``short`` (its lower-case name) tells layout from compute."""
        note = note or ("layout only" if short in _LAYOUT_OPS else "no MACs")
        self.rows.append({"node": node, "module": module, "op": op, "shape": _shape_text(shape),
                          "macs": 0, "layer": "", "note": note})

    def add(self, node: str, module: str, op: str, shape: Any, layer: Layer, macs: int,
            note: str = "") -> None:
        """One MAC op as ``layer``; ``macs`` is the op's own MAC count, checked against it."""
        if layer.macs * layer.count != macs:  # an encoding bug, never the user's input
            raise AssertionError(f"{node}: encoding {layer} has {layer.macs * layer.count} "
                                 f"MACs, the op {macs}")
        self.rows.append({"node": node, "module": module, "op": op, "shape": _shape_text(shape),
                          "macs": macs, "layer": "", "note": note})
        self.layers.append((layer.name, layer, len(self.rows) - 1))

    def build(self, name: str) -> ImportedNetwork:
        if not self.layers:
            raise WorkloadError(f"{self.source}: no op that does MACs (convolution, linear, "
                                "matmul, einsum, attention); nothing for DOSA to map")
        merged: dict[str, Layer] = {}
        used: set[str] = set()
        for base, layer, row in self.layers:
            key = layer.key()
            if key in merged:
                old = merged[key]
                merged[key] = Layer.from_dims(old.name, old.dims, old.Wstride, old.Hstride,
                                              old.count + layer.count)
            else:
                unique = base
                if unique in used:  # a module with several products: name them by node
                    unique = f"{base}.{self.rows[row]['node'].split('/')[-1]}"
                used.add(unique)
                merged[key] = Layer.from_dims(unique, layer.dims, layer.Wstride, layer.Hstride,
                                              layer.count)
            self.rows[row]["layer"] = merged[key].name
        network = Network(name, tuple(merged.values()))
        report = pd.DataFrame(self.rows, columns=list(REPORT_COLUMNS))
        logger.info("imported %s: %d MAC ops -> %d unique layers (%.4g MACs); %d ops without "
                    "MACs listed in the report", name, len(self.layers), len(network),
                    network.total_macs, int((report["layer"] == "").sum()))
        return ImportedNetwork(network, report)


def _shape_text(shape: Any) -> str:
    return "x".join(str(d) for d in shape) if shape is not None else ""


def _prod(values: Sequence[int]) -> int:
    return math.prod(int(v) for v in values)


# --- encodings shared by both front ends -----------------------------------------------------

def conv_layer(name: str, x: Sequence[int], w: Sequence[int], y: Sequence[int],
               strides: Sequence[int], dilations: Sequence[int], groups: int) -> Layer:
    """Layer of a 1-D/2-D convolution from input/weight/output shapes (NC[H]W, K C/G [kh] kw)."""
    spatial = len(w) - 2
    if any(d != 1 for d in dilations):
        raise WorkloadError(f"dilation {tuple(dilations)} is not modelled (the input halo "
                            "would grow); allowed: 1")
    batch = _prod(y[: len(y) - spatial - 1])  # unbatched inputs have no N
    if spatial == 1:
        R, S, P, Q, ws, hs = w[-1], 1, y[-1], 1, strides[-1], 1
    else:
        S, R, Q, P = w[-2], w[-1], y[-2], y[-1]
        hs, ws = strides[-2], strides[-1]
    return grouped_layer(name, C=int(x[len(x) - spatial - 1]), K=int(y[len(y) - spatial - 1]),
                         groups=int(groups), R=int(R), S=int(S), P=int(P), Q=int(Q),
                         N=int(batch), Wstride=int(ws), Hstride=int(hs))


def conv_transpose_layer(name: str, x: Sequence[int], w: Sequence[int],
                         strides: Sequence[int], pads: Sequence[int],
                         output_padding: Sequence[int], dilations: Sequence[int],
                         groups: int) -> tuple[Layer, str]:
    """Layer of a transposed convolution (weight C, K/G, [kh,] kw) and its report note."""
    spatial = len(w) - 2
    if any(d != 1 for d in dilations):
        raise WorkloadError(f"dilation {tuple(dilations)} is not modelled; allowed: 1")
    kernel = [int(k) for k in w[2:]]
    grid = [int(v) for v in x[len(x) - spatial:]]
    batch = _prod(x[: len(x) - spatial - 1])
    cin, kout = int(x[len(x) - spatial - 1]), int(w[1]) * int(groups)
    width, height = grid[-1], (grid[-2] if spatial == 2 else 1)
    kw, kh = kernel[-1], (kernel[-2] if spatial == 2 else 1)
    if list(strides) == kernel and not any(pads) and not any(output_padding):
        layer = grouped_layer(name, C=cin, K=kout * kw * kh, groups=int(groups), P=width,
                              Q=height, N=batch)
        return layer, "transposed conv, stride = kernel: exact 1x1 encoding"
    layer = grouped_layer(name, C=cin, K=kout, groups=int(groups), R=kw, S=kh, P=width,
                          Q=height, N=batch)
    return layer, "transposed conv: scatter encoding (MACs, weights exact; activations approx.)"


def matmul_layer(name: str, a: Sequence[int], b: Sequence[int], *,
                 b_is_weight: bool = False) -> Layer:
    """Layer of ``a @ b`` with numpy/torch matmul broadcasting (module docstring)."""
    a, b = list(a), list(b)
    if not a or not b:
        raise WorkloadError("matmul of a scalar has no MACs to map")
    m = a[-2] if len(a) >= 2 else 1
    k = a[-1]
    n = b[-1] if len(b) >= 2 else 1
    if (b[-2] if len(b) >= 2 else b[0]) != k:
        raise WorkloadError(f"matmul shapes {tuple(a)} @ {tuple(b)} do not agree")
    a_batch, b_batch = a[:-2], b[:-2]
    if b_is_weight or _prod(b_batch) == 1:
        rows = _prod(a[:-1])  # the right operand is shared: fold the batch into the rows
        batch_count = _prod(b_batch) if b_batch else 1
        if batch_count != 1:
            raise WorkloadError(f"matmul {tuple(a)} @ {tuple(b)}: a batched weight")
        return Layer(name, P=int(rows), C=int(k), K=int(n))
    width = max(len(a_batch), len(b_batch))
    a_batch = [1] * (width - len(a_batch)) + a_batch
    b_batch = [1] * (width - len(b_batch)) + b_batch
    batch = [max(x, y) for x, y in zip(a_batch, b_batch, strict=True)]
    return Layer(name, P=int(m), C=int(k), K=int(n), count=_prod(batch))


def einsum_layer(name: str, equation: str, shapes: Sequence[Sequence[int]]) -> Layer:
    """Layer of a two-operand einsum contraction: rows of A in P, the summed letters in C,
    columns of B in K, letters of both operands and the output in the count."""
    if len(shapes) != 2:
        raise WorkloadError(f"einsum {equation!r} with {len(shapes)} operands is not supported "
                            "(split it into two-operand contractions); allowed: 2 operands")
    eq = equation.replace(" ", "")
    lhs, _, out = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != 2:
        raise WorkloadError(f"einsum {equation!r}: expected two operands")
    letters = "".join(sorted(set("ABCDEFGHIJKLMNOPQRSTUVWXYZ") - set(eq)))
    spans = [len(shape) - (len(t) - 3) if "..." in t else 0
             for t, shape in zip(terms, shapes, strict=True)]
    ell = letters[: max(spans)]  # broadcast dims of "...", right-aligned as in numpy
    expanded = [t.replace("...", ell[len(ell) - n:]) for t, n in zip(terms, spans, strict=True)]
    if "->" not in eq:  # implicit output: "..." first, then the letters used once, sorted
        counts = {c: sum(t.count(c) for t in expanded) for c in set("".join(expanded))}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        out = out.replace("...", ell)
    size: dict[str, int] = {}
    for term, shape in zip(expanded, shapes, strict=True):
        if len(term) != len(shape):
            raise WorkloadError(f"einsum {equation!r}: operand {term!r} has shape {tuple(shape)}")
        for c, d in zip(term, shape, strict=True):
            size[c] = max(size.get(c, 1), int(d))
    ta, tb = set(expanded[0]), set(expanded[1])
    one_sided = [c for c in (ta ^ tb) if c not in out]
    if one_sided:
        raise WorkloadError(f"einsum {equation!r}: index {one_sided[0]!r} is summed within "
                            "one operand (a reduction, not a contraction); not supported")
    batch = [c for c in ta & tb if c in out]
    summed = [c for c in ta & tb if c not in out]
    rows = [c for c in ta - tb]
    cols = [c for c in tb - ta]
    return Layer(name, P=_prod([size[c] for c in rows]), C=_prod([size[c] for c in summed]),
                 K=_prod([size[c] for c in cols]), count=_prod([size[c] for c in batch]))


def attention_layers(name: str, q: Sequence[int], k: Sequence[int],
                     v: Sequence[int]) -> tuple[Layer, Layer]:
    """Q.K^T and A.V of scaled dot-product attention, one product per batch x head."""
    qb, kb = list(q[:-2]), list(k[:-2])
    width = max(len(qb), len(kb))  # batch dims broadcast right-aligned, as in torch
    qb, kb = [1] * (width - len(qb)) + qb, [1] * (width - len(kb)) + kb
    count = _prod([max(x, y) for x, y in zip(qb, kb, strict=True)])
    length, emb, src, vdim = int(q[-2]), int(q[-1]), int(k[-2]), int(v[-1])
    return (Layer(f"{name}.qk", P=length, C=emb, K=src, count=count),
            Layer(f"{name}.av", P=length, C=src, K=vdim, count=count))


# --- PyTorch ---------------------------------------------------------------------------------

def _static(node_name: str, op: str, shape: Any) -> list[int]:
    """A static shape, or a one-line error when it depends on the data (unbacked SymInt)."""
    dims = list(shape)
    for d in dims:
        if not isinstance(d, int):
            try:
                int(d)
            except Exception:  # torch raises GuardOnDataDependentSymNode and friends
                raise WorkloadError(f"node {node_name!r} ({op}): its shape {tuple(dims)} "
                                    "depends on the data; DOSA needs static shapes") from None
    return [int(d) for d in dims]


def _torch_op(node: Any) -> tuple[str, str]:
    """(packet name in lower case, printable op) of an FX node's target."""
    target = node.target
    packet = getattr(target, "overloadpacket", None)
    short = getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))
    return str(short).lower(), str(target)


def _arg(node: Any, index: int, name: str, default: Any) -> Any:
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _tensor_shape(value: Any, node_name: str, op: str) -> list[int] | None:
    meta = getattr(value, "meta", None)
    val = meta.get("val") if isinstance(meta, dict) else None
    shape = getattr(val, "shape", None)
    return None if shape is None else _static(node_name, op, shape)


def _as_list(value: Any, rank: int) -> list[int]:
    if isinstance(value, int):
        return [value] * rank
    return [int(v) for v in value]


def import_torch(model: Any, example_inputs: Any, name: str | None = None) -> ImportedNetwork:
    """Trace ``model`` with ``torch.export`` on ``example_inputs`` and encode its MAC ops.

    ``example_inputs`` is a tensor or a tuple of positional arguments; the shapes of the
    import are those of these inputs (batch size included).
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise WorkloadError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    name = name or type(model).__name__
    try:
        program = torch.export.export(model, args)
    except Exception as exc:  # torch's own errors: data-dependent control flow or shapes, ...
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise WorkloadError(f"{name}: torch.export cannot trace the model "
                            f"({type(exc).__name__}: {lines[0] if lines else ''}); DOSA needs "
                            "a model whose shapes do not depend on the data") from None
    builder = _Builder(name)
    for node in program.graph.nodes:
        if node.op != "call_function":
            continue
        _torch_node(builder, node)
    return builder.build(name)


def _module_path(node: Any) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return re.sub(r"^L__self__\.?", "", str(path)).replace("_modules['", "").replace("']", "")


def _torch_node(builder: _Builder, node: Any) -> None:
    short, op = _torch_op(node)
    if "higher_order" in op or type(node.target).__name__ == "HigherOrderOperator":
        raise WorkloadError(f"node {node.name!r} ({op}): data-dependent control flow is not "
                            "supported; DOSA needs one static graph")
    module = _module_path(node)
    base = module or node.name
    val = node.meta.get("val")
    out = _static(node.name, op, val.shape) if hasattr(val, "shape") else None

    def shape(i: int, key: str) -> list[int]:
        got = _tensor_shape(_arg(node, i, key, None), node.name, op)
        if got is None:
            raise WorkloadError(f"node {node.name!r} ({op}): operand {key!r} has no shape")
        return got

    def transposed(x: list[int], w: list[int], positions: tuple[int, ...]) -> None:
        """A transposed conv; ``positions`` of stride, padding, output_padding, dilation,
        groups in the op's signature (aten.convolution and conv_transpose differ)."""
        rank = len(w) - 2
        names = ("stride", "padding", "output_padding", "dilation")
        defaults = (1, 0, 0, 1)
        lists = [_as_list(_arg(node, i, n, d), rank)
                 for i, n, d in zip(positions[:4], names, defaults, strict=True)]
        layer, note = conv_transpose_layer(base, x, w, *lists, _arg(node, positions[4],
                                                                    "groups", 1))
        builder.add(node.name, module, op, out, layer, _prod(x) * _prod(w[1:]), note)

    try:
        if short in ("conv1d", "conv2d", "convolution"):
            x, w = shape(0, "input"), shape(1, "weight")
            if len(w) > 4:
                raise WorkloadError("3-D convolution is not supported; allowed: 1-D, 2-D")
            if short == "convolution" and _arg(node, 6, "transposed", False):
                transposed(x, w, (3, 4, 7, 5, 8))
                return
            rank = len(w) - 2
            groups = _arg(node, 8 if short == "convolution" else 6, "groups", 1)
            layer = conv_layer(base, x, w, out, _as_list(_arg(node, 3, "stride", 1), rank),
                               _as_list(_arg(node, 5, "dilation", 1), rank), groups)
            builder.add(node.name, module, op, out, layer, _prod(out) * _prod(w[1:]))
        elif short in ("conv_transpose1d", "conv_transpose2d"):
            transposed(shape(0, "input"), shape(1, "weight"), (3, 4, 5, 7, 6))
        elif short == "linear":
            x, w = shape(0, "input"), shape(1, "weight")
            layer = matmul_layer(base, x, w[::-1], b_is_weight=True)
            builder.add(node.name, module, op, out, layer, _prod(x) * w[0])
        elif short in ("matmul", "mm", "bmm"):
            a, b = shape(0, "self"), shape(1, "other")
            layer = matmul_layer(base, a, b)
            builder.add(node.name, module, op, out, layer, _prod(out) * a[-1])
        elif short in ("addmm", "baddbmm"):
            a, b = shape(1, "mat1"), shape(2, "mat2")
            layer = matmul_layer(base, a, b)
            builder.add(node.name, module, op, out, layer, _prod(out) * a[-1])
        elif short == "einsum":
            equation = _arg(node, 0, "equation", "")
            operands = _arg(node, 1, "tensors", [])
            shapes = [_tensor_shape(t, node.name, op) or [] for t in operands]
            if len(shapes) == 1:
                builder.skip(node.name, module, op, out, short, "single-operand einsum: no MACs")
                return
            layer = einsum_layer(base, equation, shapes)
            builder.add(node.name, module, op, out, layer, layer.macs * layer.count)
        elif short == "scaled_dot_product_attention":
            q, k, v = shape(0, "query"), shape(1, "key"), shape(2, "value")
            qk, av = attention_layers(base, q, k, v)
            builder.add(node.name, module, op + " (Q.K^T)", out, qk, qk.macs * qk.count)
            builder.add(node.name, module, op + " (A.V)", out, av, av.macs * av.count)
        elif short in UNSUPPORTED_MAC_OPS or short.startswith("linalg_"):
            raise WorkloadError(f"op {short} does MACs but has no DOSA encoding; supported: "
                                "conv1d/2d (groups), conv_transpose1d/2d, linear, matmul, mm, "
                                "bmm, addmm, baddbmm, einsum, scaled_dot_product_attention")
        else:
            builder.skip(node.name, module, op, out, short)
    except WorkloadError as exc:
        if str(exc).startswith("node "):
            raise
        raise WorkloadError(f"node {node.name!r} ({op}{', module ' + module if module else ''})"
                            f": {exc}") from None


# --- ONNX ------------------------------------------------------------------------------------

def import_onnx(path: str | os.PathLike[str], name: str | None = None) -> ImportedNetwork:
    """Read an ONNX file, infer its shapes (ONNX shape inference) and encode its MAC ops."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError as exc:  # pragma: no cover - onnx is a core dependency
        raise WorkloadError(f"reading ONNX needs the onnx package ({exc})") from None
    src = Path(path)
    if not src.is_file():
        raise WorkloadError(f"{src}: ONNX file does not exist")
    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise WorkloadError(f"{src}: not an ONNX model ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:120]})") from None
    if not model.graph.node:
        raise WorkloadError(f"{src}: not an ONNX model (no graph nodes)")
    try:
        model = shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise WorkloadError(f"{src}: ONNX shape inference failed "
                            f"({' '.join(str(exc).split())[:200]})") from None
    graph = model.graph
    shapes: dict[str, list[Any] | None] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        tensor = info.type.tensor_type
        if tensor.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else
                                 (d.dim_param or "?") for d in tensor.shape.dim]
    for init in graph.initializer:
        shapes[init.name] = list(init.dims)
    weights = {init.name for init in graph.initializer}
    builder = _Builder(str(src))
    for i, node in enumerate(graph.node):
        _onnx_node(builder, node, i, shapes, weights)
    return builder.build(name or src.stem)


def _onnx_node(builder: _Builder, node: Any, index: int, shapes: dict[str, Any],
               weights: set[str]) -> None:
    from onnx import helper

    op = node.op_type
    short = op.lower()
    node_name = node.name or f"{op}_{index}"
    # torch's exporter names nodes "/module/path/Op_3": the module path names the layer
    parts = [p for p in node_name.split("/") if p]
    module = ".".join(parts[:-1])
    base = module or (parts[-1] if parts else node_name)
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    def shape(name: str, role: str) -> list[int]:
        got = shapes.get(name)
        if got is None:
            raise WorkloadError(f"{role} {name!r} has no inferred shape")
        bad = [d for d in got if not isinstance(d, int) or d <= 0]
        if bad:
            raise WorkloadError(f"{role} {name!r} has a symbolic or unknown dim {bad[0]!r} "
                                f"(shape {tuple(got)}); export the model with fixed shapes")
        return [int(d) for d in got]

    out_shape = shapes.get(node.output[0]) if node.output else None
    try:
        if short == "conv":
            x, w = shape(node.input[0], "input"), shape(node.input[1], "weight")
            if len(w) > 4:
                raise WorkloadError("3-D convolution is not supported; allowed: 1-D, 2-D")
            y = shape(node.output[0], "output")
            rank = len(w) - 2
            layer = conv_layer(base, x, w, y, attrs.get("strides", [1] * rank),
                               attrs.get("dilations", [1] * rank), attrs.get("group", 1))
            builder.add(node_name, module, op, y, layer, _prod(y) * _prod(w[1:]))
        elif short == "convtranspose":
            x, w = shape(node.input[0], "input"), shape(node.input[1], "weight")
            if len(w) > 4:
                raise WorkloadError("3-D transposed convolution is not supported")
            rank = len(w) - 2
            pads = attrs.get("pads", [0] * 2 * rank)
            if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET", b"VALID", "VALID"):
                pads = [1]  # SAME_* pads: not the exact 1x1 case
            layer, note = conv_transpose_layer(
                base, x, w, attrs.get("strides", [1] * rank), pads,
                attrs.get("output_padding", [0] * rank), attrs.get("dilations", [1] * rank),
                attrs.get("group", 1))
            builder.add(node_name, module, op, out_shape, layer, _prod(x) * _prod(w[1:]), note)
        elif short == "gemm":
            a, b = shape(node.input[0], "A"), shape(node.input[1], "B")
            if attrs.get("transA", 0):
                a = a[::-1]
            if attrs.get("transB", 0):
                b = b[::-1]
            layer = matmul_layer(base, a, b, b_is_weight=True)
            builder.add(node_name, module, op, out_shape, layer, a[0] * a[1] * b[1])
        elif short == "matmul":
            a, b = shape(node.input[0], "A"), shape(node.input[1], "B")
            y = shape(node.output[0], "output")
            layer = matmul_layer(base, a, b, b_is_weight=node.input[1] in weights)
            builder.add(node_name, module, op, y, layer, _prod(y) * a[-1])
        elif short == "einsum":
            operands = [shape(t, "operand") for t in node.input]
            if len(operands) == 1:
                builder.skip(node_name, module, op, out_shape, short,
                             "single-operand einsum: no MACs")
                return
            equation = attrs["equation"]
            equation = equation.decode() if isinstance(equation, bytes) else equation
            layer = einsum_layer(base, equation, operands)
            builder.add(node_name, module, op, out_shape, layer, layer.macs * layer.count)
        elif short in UNSUPPORTED_MAC_OPS:
            raise WorkloadError(f"op {op} does MACs but has no DOSA encoding; supported: Conv "
                                "(1-D, 2-D, group), ConvTranspose, Gemm, MatMul, Einsum")
        else:
            builder.skip(node_name, module, op, out_shape, short)
    except WorkloadError as exc:
        raise WorkloadError(f"{builder.source}: node {node_name!r} ({op}): {exc}") from None
