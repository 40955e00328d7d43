"""Importing networks from PyTorch and ONNX (:mod:`dosa.workload_import`).

Every MAC total below is written out by hand as a product of literal integers (batch, output
channels, output grid, input channels per group, kernel), never computed by the code under test.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dosa.cli import main
from dosa.workload import Layer, Network, WorkloadError, from_torch, load_network
from dosa.workload_import import REPORT_COLUMNS, ImportedNetwork, import_onnx, import_torch

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::UserWarning",
                                        "ignore::FutureWarning")


# --- helpers ---------------------------------------------------------------------------------

def _t(*shape: int) -> Any:
    return torch.randn(*shape)


def _import(model: nn.Module, *inputs: Any) -> ImportedNetwork:
    torch.manual_seed(0)
    return import_torch(model.eval(), tuple(inputs))


def _export(model: nn.Module, inputs: tuple[Any, ...], path: Path, **kwargs: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), inputs, str(path), dynamo=False, **kwargs)
    return path


def _fields(layer: Layer) -> tuple[int, ...]:
    """(R, S, P, Q, C, K, N, Wstride, Hstride, count)."""
    return (*layer.dims, layer.Wstride, layer.Hstride, layer.count)


def _shape_set(net: Network) -> list[tuple[int, ...]]:
    return sorted(_fields(layer) for layer in net)


def _keys(net: Network) -> list[tuple[str, int]]:
    return sorted((layer.key(), layer.count) for layer in net)


def _check_report(imp: ImportedNetwork) -> None:
    report = imp.report
    assert list(report.columns) == list(REPORT_COLUMNS)
    assert int(report["macs"].sum()) == imp.network.total_macs
    mac_rows = report[report["layer"] != ""]
    assert (mac_rows["macs"] > 0).all()
    assert set(mac_rows["layer"]) == set(imp.network.layer_names)
    free = report[report["layer"] == ""]
    assert (free["macs"] == 0).all()
    assert set(free["note"]) <= {"no MACs", "layout only", "single-operand einsum: no MACs"}


class Fn(nn.Module):
    """A module that just calls ``fn`` on its inputs (functional ops under test)."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


class MatmulWeight(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(8, 6))

    def forward(self, x: Any) -> Any:
        return x @ self.w


class CrossAttention(nn.Module):
    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 4, batch_first=True)
        self.need_weights = need_weights

    def forward(self, q: Any, kv: Any) -> Any:
        return self.attn(q, kv, kv, need_weights=self.need_weights)[0]


class Mixed(nn.Module):
    """Strided conv, BN, depthwise conv, grouped conv, pooling, attention, softmax, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.gc = nn.Conv2d(8, 16, 1, groups=4)
        self.pool = nn.MaxPool2d(2)
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: Any) -> Any:
        x = F.relu(self.bn(self.stem(x)))           # 2x8x8x8
        x = x + self.dw(x)                           # 2x8x8x8
        x = self.pool(self.gc(x))                    # 2x16x4x4
        t = x.flatten(2).transpose(1, 2)             # 2x16 tokens x16
        a, _ = self.attn(t, t, t, need_weights=False)
        t = torch.softmax(t + a, -1)
        return self.fc(t)                            # 2x16x10


MIXED_INPUT = (2, 3, 16, 16)
MIXED_MACS = (2 * 8 * 8 * 8 * 3 * 3 * 3        # stem: N K Q P C R S
              + 2 * 8 * 8 * 8 * 1 * 3 * 3      # depthwise: C/G = 1
              + 2 * 16 * 8 * 8 * 2 * 1 * 1     # grouped 1x1: C/G = 8/4
              + 2 * 16 * 16 * 48               # in_proj: 32 tokens x 16 -> 48
              + 2 * 2 * 16 * 8 * 16            # Q.K^T: batch x heads, L x E x S
              + 2 * 2 * 16 * 16 * 8            # A.V: batch x heads, L x S x Ev
              + 2 * 16 * 16 * 16               # out_proj
              + 2 * 16 * 16 * 10)              # fc
MIXED_LAYERS = [
    # R, S, P, Q, C, K, N, Wstride, Hstride, count
    (3, 3, 8, 8, 3, 8, 2, 2, 2, 1),
    (3, 3, 8, 8, 1, 1, 2, 1, 1, 8),
    (1, 1, 8, 8, 2, 4, 2, 1, 1, 4),
    (1, 1, 32, 1, 16, 48, 1, 1, 1, 1),
    (1, 1, 16, 1, 8, 16, 1, 1, 1, 4),
    (1, 1, 16, 1, 16, 8, 1, 1, 1, 4),
    (1, 1, 32, 1, 16, 16, 1, 1, 1, 1),
    (1, 1, 32, 1, 16, 10, 1, 1, 1, 1),
]


@pytest.fixture(scope="module")
def mixed_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("onnx") / "mixed.onnx"
    return _export(Mixed(), (torch.randn(*MIXED_INPUT),), path, input_names=["x"])


# --- convolutions ----------------------------------------------------------------------------

def test_strided_conv_padding_one() -> None:
    imp = _import(nn.Conv2d(3, 16, 3, stride=2, padding=1), _t(2, 3, 16, 16))
    (layer,) = imp.network
    assert _fields(layer) == (3, 3, 8, 8, 3, 16, 2, 2, 2, 1)
    assert imp.network.total_macs == 2 * 16 * 8 * 8 * 3 * 3 * 3
    _check_report(imp)


def test_non_square_conv_maps_width_to_r_p_and_height_to_s_q() -> None:
    # kernel 3 (h) x 5 (w), stride 2 (h) x 1 (w), input 16 (h) x 12 (w) -> output 8 x 12
    imp = _import(nn.Conv2d(3, 4, (3, 5), stride=(2, 1), padding=(1, 2)), _t(1, 3, 16, 12))
    (layer,) = imp.network
    assert (layer.R, layer.S, layer.P, layer.Q) == (5, 3, 12, 8)
    assert (layer.Wstride, layer.Hstride) == (1, 2)
    assert (layer.C, layer.K, layer.N, layer.count) == (3, 4, 1, 1)
    assert imp.network.total_macs == 1 * 4 * 8 * 12 * 3 * 3 * 5


def test_depthwise_conv_is_one_channel_times_channels() -> None:
    imp = _import(nn.Conv2d(8, 8, 3, padding=1, groups=8), _t(1, 8, 6, 6))
    (layer,) = imp.network
    assert _fields(layer) == (3, 3, 6, 6, 1, 1, 1, 1, 1, 8)
    assert imp.network.total_macs == 1 * 8 * 6 * 6 * 1 * 3 * 3
    _check_report(imp)


def test_grouped_conv_divides_channels_and_multiplies_count() -> None:
    imp = _import(nn.Conv2d(8, 16, 3, padding=1, groups=4), _t(2, 8, 5, 5))
    (layer,) = imp.network
    assert _fields(layer) == (3, 3, 5, 5, 2, 4, 2, 1, 1, 4)
    assert imp.network.total_macs == 2 * 16 * 5 * 5 * 2 * 3 * 3


def test_pointwise_conv() -> None:
    imp = _import(nn.Conv2d(8, 16, 1), _t(1, 8, 7, 7))
    (layer,) = imp.network
    assert _fields(layer) == (1, 1, 7, 7, 8, 16, 1, 1, 1, 1)
    assert imp.network.total_macs == 1 * 16 * 7 * 7 * 8


def test_conv1d() -> None:
    imp = _import(nn.Conv1d(4, 6, 3, stride=2, padding=1), _t(2, 4, 10))
    (layer,) = imp.network
    assert _fields(layer) == (3, 1, 5, 1, 4, 6, 2, 2, 1, 1)
    assert imp.network.total_macs == 2 * 6 * 5 * 4 * 3


def test_conv_batch_goes_to_n() -> None:
    one = _import(nn.Conv2d(3, 4, 3), _t(1, 3, 6, 6)).network
    four = _import(nn.Conv2d(3, 4, 3), _t(4, 3, 6, 6)).network
    assert (one[0].N, four[0].N) == (1, 4)
    assert four[0].count == 1
    assert four.total_macs == 4 * 4 * 4 * 4 * 3 * 3 * 3


def test_conv_transpose_stride_equal_kernel_is_exact_1x1() -> None:
    # input 5 (h) x 7 (w): P is the input width, Q its height; K absorbs the 2x2 kernel
    imp = _import(nn.ConvTranspose2d(4, 6, 2, stride=2), _t(1, 4, 5, 7))
    (layer,) = imp.network
    assert _fields(layer) == (1, 1, 7, 5, 4, 6 * 2 * 2, 1, 1, 1, 1)
    assert imp.network.total_macs == 1 * 5 * 7 * 4 * 6 * 2 * 2
    assert "exact 1x1" in imp.report.loc[0, "note"]


def test_conv_transpose_stride_not_kernel_is_scatter() -> None:
    # kernel 3 (h) x 2 (w), stride 2: each input pixel scatters a 3x2 patch
    imp = _import(nn.ConvTranspose2d(4, 6, (3, 2), stride=2, padding=1), _t(2, 4, 5, 7))
    (layer,) = imp.network
    assert _fields(layer) == (2, 3, 7, 5, 4, 6, 2, 1, 1, 1)
    assert imp.network.total_macs == 2 * 5 * 7 * 4 * 6 * 3 * 2  # N H_in W_in C K kh kw
    assert "scatter" in imp.report.loc[0, "note"]


def test_grouped_conv_transpose() -> None:
    imp = _import(nn.ConvTranspose2d(4, 6, 2, stride=2, groups=2), _t(1, 4, 5, 5))
    (layer,) = imp.network
    assert _fields(layer) == (1, 1, 5, 5, 2, 3 * 2 * 2, 1, 1, 1, 2)
    assert imp.network.total_macs == 1 * 5 * 5 * 4 * 3 * 2 * 2  # N H W C K/G kh kw


# --- matrix products -------------------------------------------------------------------------

def test_linear_2d_and_3d_input_folds_rows_into_p() -> None:
    two = _import(nn.Linear(8, 4), _t(5, 8))
    assert _fields(two.network[0]) == (1, 1, 5, 1, 8, 4, 1, 1, 1, 1)
    assert two.network.total_macs == 5 * 8 * 4
    three = _import(nn.Linear(8, 4), _t(2, 3, 8))
    assert _fields(three.network[0]) == (1, 1, 2 * 3, 1, 8, 4, 1, 1, 1, 1)
    assert three.network.total_macs == 2 * 3 * 8 * 4
    _check_report(three)


@pytest.mark.parametrize("need_weights", [True, False], ids=["bmm-path", "sdpa-path"])
def test_multihead_attention(need_weights: bool) -> None:
    # batch 2, 4 heads of dim 4, query length 5, key/value length 7
    imp = _import(CrossAttention(need_weights), _t(2, 5, 16), _t(2, 7, 16))
    assert _shape_set(imp.network) == sorted([
        (1, 1, 2 * 5, 1, 16, 16, 1, 1, 1, 2),  # q projection and out_proj merged: count 2
        (1, 1, 2 * 7, 1, 16, 32, 1, 1, 1, 1),  # packed k/v projection
        (1, 1, 5, 1, 4, 7, 1, 1, 1, 2 * 4),    # Q.K^T: P = L, C = head dim, K = S
        (1, 1, 5, 1, 7, 4, 1, 1, 1, 2 * 4),    # A.V: C = S, K = head dim
    ])
    assert imp.network.total_macs == (2 * 5 * 16 * 16 * 2 + 2 * 7 * 16 * 32
                                      + 2 * 4 * 5 * 4 * 7 + 2 * 4 * 5 * 7 * 4)
    _check_report(imp)


def test_scaled_dot_product_attention() -> None:
    imp = _import(Fn(F.scaled_dot_product_attention), _t(2, 3, 5, 8), _t(2, 3, 7, 8),
                  _t(2, 3, 7, 4))
    qk, av = imp.network["scaled_dot_product_attention.qk"], \
        imp.network["scaled_dot_product_attention.av"]
    assert _fields(qk) == (1, 1, 5, 1, 8, 7, 1, 1, 1, 2 * 3)
    assert _fields(av) == (1, 1, 5, 1, 7, 4, 1, 1, 1, 2 * 3)
    assert imp.network.total_macs == 2 * 3 * 5 * 8 * 7 + 2 * 3 * 5 * 7 * 4
    ops = list(imp.report["op"])
    assert len(ops) == 2 and "(Q.K^T)" in ops[0] and "(A.V)" in ops[1]
    _check_report(imp)


def test_scaled_dot_product_attention_broadcast_batch() -> None:
    """A lower-rank key broadcasts right-aligned (q 2x3x5x8, k 3x7x8): count 2 x 3."""
    imp = _import(Fn(F.scaled_dot_product_attention), _t(2, 3, 5, 8), _t(3, 7, 8),
                  _t(3, 7, 4))
    assert imp.network.total_macs == 2 * 3 * 5 * 8 * 7 + 2 * 3 * 5 * 7 * 4


def test_bmm_batch_is_count() -> None:
    imp = _import(Fn(torch.bmm), _t(3, 4, 5), _t(3, 5, 6))
    assert _fields(imp.network[0]) == (1, 1, 4, 1, 5, 6, 1, 1, 1, 3)
    assert imp.network.total_macs == 3 * 4 * 5 * 6


def test_mm_and_addmm() -> None:
    for fn, args in ((torch.mm, (_t(4, 5), _t(5, 6))),
                     (torch.addmm, (_t(6), _t(4, 5), _t(5, 6)))):
        imp = _import(Fn(fn), *args)
        assert _fields(imp.network[0]) == (1, 1, 4, 1, 5, 6, 1, 1, 1, 1)
        assert imp.network.total_macs == 4 * 5 * 6


def test_matmul_with_2d_weight_folds_batch_into_rows() -> None:
    imp = _import(MatmulWeight(), _t(2, 3, 8))
    assert _fields(imp.network[0]) == (1, 1, 2 * 3, 1, 8, 6, 1, 1, 1, 1)
    assert imp.network.total_macs == 2 * 3 * 8 * 6


def test_matmul_operator_batched_activations_is_count() -> None:
    imp = _import(Fn(lambda a, b: a @ b), _t(2, 3, 4, 5), _t(2, 3, 5, 6))
    assert _fields(imp.network[0]) == (1, 1, 4, 1, 5, 6, 1, 1, 1, 2 * 3)
    assert imp.network.total_macs == 2 * 3 * 4 * 5 * 6


@pytest.mark.parametrize(("equation", "shapes", "fields", "macs"), [
    ("bij,bjk->bik", [(3, 4, 5), (3, 5, 6)], (1, 1, 4, 1, 5, 6, 1, 1, 1, 3), 3 * 4 * 5 * 6),
    ("...ij,jk->...ik", [(2, 3, 4, 5), (5, 6)], (1, 1, 2 * 3 * 4, 1, 5, 6, 1, 1, 1, 1),
     2 * 3 * 4 * 5 * 6),
    ("...ij,...jk->...ik", [(2, 3, 4, 5), (2, 3, 5, 6)], (1, 1, 4, 1, 5, 6, 1, 1, 1, 2 * 3),
     2 * 3 * 4 * 5 * 6),
    ("bhld,bhsd->bhls", [(2, 3, 4, 5), (2, 3, 6, 5)], (1, 1, 4, 1, 5, 6, 1, 1, 1, 2 * 3),
     2 * 3 * 4 * 5 * 6),
    ("ij,jk", [(4, 5), (5, 6)], (1, 1, 4, 1, 5, 6, 1, 1, 1, 1), 4 * 5 * 6),
])
def test_einsum(equation: str, shapes: list[tuple[int, ...]], fields: tuple[int, ...],
                macs: int) -> None:
    imp = _import(Fn(lambda a, b: torch.einsum(equation, a, b)), *(_t(*s) for s in shapes))
    assert _fields(imp.network[0]) == fields
    assert imp.network.total_macs == macs


def test_single_operand_einsum_has_no_macs() -> None:
    imp = _import(Fn(lambda x, w: torch.einsum("ij->ji", x) @ w), _t(4, 5), _t(4, 6))
    einsum_rows = imp.report[imp.report["op"].str.contains("einsum")]
    assert not einsum_rows.empty
    assert (einsum_rows["layer"] == "").all() and (einsum_rows["macs"] == 0).all()
    assert imp.network.total_macs == 5 * 4 * 6


# --- merging, report -------------------------------------------------------------------------

def _block() -> nn.Module:
    return nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())


def test_identical_layers_merge_with_summed_count() -> None:
    imp = _import(nn.Sequential(_block(), _block(), _block()), _t(1, 4, 6, 6))
    (layer,) = imp.network
    assert _fields(layer) == (3, 3, 6, 6, 4, 4, 1, 1, 1, 3)
    assert imp.network.total_macs == 3 * (1 * 4 * 6 * 6 * 4 * 3 * 3)
    conv_rows = imp.report[imp.report["macs"] > 0]
    assert len(conv_rows) == 3 and set(conv_rows["layer"]) == {layer.name}
    assert list(conv_rows["module"]) == ["0.0", "1.0", "2.0"]
    _check_report(imp)


def test_mixed_model_totals_and_fields() -> None:
    imp = _import(Mixed(), _t(*MIXED_INPUT))
    assert _shape_set(imp.network) == sorted(MIXED_LAYERS)
    assert imp.network.total_macs == MIXED_MACS
    assert imp.network["stem"].strides == (2, 2)
    assert imp.network["dw"].count == 8 and imp.network["gc"].count == 4
    _check_report(imp)


def test_ops_without_macs_are_reported_not_dropped() -> None:
    model = Mixed().eval()
    x = _t(*MIXED_INPUT)
    imp = import_torch(model, x)
    report = imp.report
    exported = torch.export.export(model, (x,))
    names = {n.name for n in exported.graph.nodes if n.op == "call_function"}
    assert set(report["node"]) == names  # every call_function node has a row
    for op in ("relu", "batch_norm", "max_pool2d", "softmax", "add"):
        rows = report[report["op"].str.contains(f"aten.{op}.")]
        assert not rows.empty, op
        assert (rows["layer"] == "").all() and (rows["macs"] == 0).all(), op
        assert (rows["note"] == "no MACs").all(), op
        assert rows["node"].str.len().gt(0).all()
    layout = report[report["op"].str.contains("aten.transpose.")]
    assert not layout.empty and (layout["note"] == "layout only").all()
    assert set(imp.skipped["node"]) == set(report.loc[report["layer"] == "", "node"])
    assert imp.report.loc[report["node"] == "relu", "shape"].item() == "2x8x8x8"


def test_from_torch_wraps_import_torch() -> None:
    model, x = Mixed().eval(), _t(*MIXED_INPUT)
    net = from_torch(model, x, name="mixed")
    assert isinstance(net, Network) and net.name == "mixed"
    assert net == import_torch(model, x, name="mixed").network
    assert import_torch(model, x).network.name == "Mixed"


# --- ONNX ------------------------------------------------------------------------------------

def test_onnx_matches_torch(mixed_onnx: Path) -> None:
    torch.manual_seed(0)
    via_torch = import_torch(Mixed().eval(), torch.randn(*MIXED_INPUT)).network
    imp = import_onnx(mixed_onnx)
    assert _keys(imp.network) == _keys(via_torch)
    assert _shape_set(imp.network) == sorted(MIXED_LAYERS)
    assert imp.network.total_macs == MIXED_MACS
    assert imp.network.name == "mixed"
    _check_report(imp)


def test_load_network_dispatches_onnx(mixed_onnx: Path) -> None:
    assert load_network(mixed_onnx) == import_onnx(mixed_onnx).network
    assert load_network(str(mixed_onnx)) == import_onnx(mixed_onnx).network


def test_onnx_report_lists_every_node(mixed_onnx: Path) -> None:
    imp = import_onnx(mixed_onnx)
    graph_nodes = [n.name for n in onnx.load(str(mixed_onnx)).graph.node]
    assert list(imp.report["node"]) == graph_nodes
    for op in ("Relu", "MaxPool", "Softmax", "Add"):
        rows = imp.report[imp.report["op"] == op]
        assert not rows.empty and (rows["layer"] == "").all() and (rows["macs"] == 0).all(), op
    assert (imp.report.loc[imp.report["op"] == "Conv", "layer"] != "").all()


@pytest.mark.parametrize("case", ["conv1d", "convT-1x1", "convT-scatter", "einsum",
                                  "batched-matmul", "matmul-weight", "depthwise", "sdpa"])
def test_onnx_matches_torch_per_op(case: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model, inputs = {
        "conv1d": (nn.Conv1d(4, 6, 3, stride=2, padding=1), (_t(2, 4, 10),)),
        "convT-1x1": (nn.ConvTranspose2d(4, 6, 2, stride=2), (_t(1, 4, 5, 7),)),
        "convT-scatter": (nn.ConvTranspose2d(4, 6, 3, stride=2, padding=1), (_t(1, 4, 5, 7),)),
        "einsum": (Fn(lambda a, b: torch.einsum("bij,bjk->bik", a, b)),
                   (_t(3, 4, 5), _t(3, 5, 6))),
        "batched-matmul": (Fn(lambda a, b: a @ b), (_t(2, 3, 4, 5), _t(2, 3, 5, 6))),
        "matmul-weight": (MatmulWeight(), (_t(2, 3, 8),)),
        "depthwise": (nn.Conv2d(8, 8, 3, padding=1, groups=8), (_t(2, 8, 6, 6),)),
        "sdpa": (Fn(F.scaled_dot_product_attention), (_t(2, 3, 5, 8), _t(2, 3, 7, 8),
                                                      _t(2, 3, 7, 4))),
    }[case]
    via_torch = import_torch(model.eval(), inputs).network
    via_onnx = import_onnx(_export(model, inputs, tmp_path / f"{case}.onnx")).network
    assert _keys(via_onnx) == _keys(via_torch)
    assert via_onnx.total_macs == via_torch.total_macs


# --- errors ----------------------------------------------------------------------------------

def _one_line(exc: pytest.ExceptionInfo[WorkloadError]) -> str:
    message = str(exc.value)
    assert message and "\n" not in message and "Traceback" not in message
    return message


def test_not_an_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.onnx"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(WorkloadError) as exc:
        import_onnx(path)
    assert "not an ONNX model" in _one_line(exc) and str(path) in str(exc.value)
    with pytest.raises(WorkloadError, match="not an ONNX model"):
        load_network(path)


def test_empty_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(WorkloadError) as exc:
        import_onnx(path)
    assert "not an ONNX model" in _one_line(exc)


def test_missing_onnx_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.onnx"
    with pytest.raises(WorkloadError) as exc:
        import_onnx(path)
    assert "does not exist" in _one_line(exc) and str(path) in str(exc.value)
    with pytest.raises(WorkloadError, match="does not exist"):
        load_network(path)


class BoolMask(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(x[x.sum(1) > 0])


class NonZero(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 3)

    def forward(self, x: Any) -> Any:
        return self.fc(torch.nonzero(x).float())


@pytest.mark.parametrize(("model", "x", "node"), [
    (BoolMask(), (3, 4), "index"),
    (NonZero(), (3, 2), "nonzero"),
], ids=["bool-mask", "nonzero"])
def test_data_dependent_shape_is_one_clear_error(model: nn.Module, x: tuple[int, ...],
                                                 node: str) -> None:
    with pytest.raises(WorkloadError) as exc:
        import_torch(model, _t(*x))
    message = _one_line(exc)
    assert "depends on the data" in message
    assert f"node {node!r}" in message


class DataFlow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: Any) -> Any:
        if x.sum() > 0:
            return self.fc(x)
        return self.fc(-x)


def test_data_dependent_control_flow_is_one_clear_error() -> None:
    with pytest.raises(WorkloadError) as exc:
        import_torch(DataFlow(), _t(3, 4))
    message = _one_line(exc)
    assert "torch.export cannot trace" in message and "DataFlow" in message


@pytest.mark.parametrize(("model", "inputs", "op"), [
    (nn.Conv3d(2, 3, 3), ((1, 2, 4, 4, 4),), "conv3d"),
    (nn.LSTM(4, 3), ((5, 1, 4),), "lstm"),
    (nn.GRU(4, 3), ((5, 1, 4),), "gru"),
    (nn.Bilinear(4, 3, 2), ((2, 4), (2, 3)), "bilinear"),
], ids=["conv3d", "lstm", "gru", "bilinear"])
def test_unsupported_mac_op_is_refused_by_name(model: nn.Module, inputs: tuple[Any, ...],
                                              op: str) -> None:
    with pytest.raises(WorkloadError) as exc:
        import_torch(model, tuple(_t(*s) for s in inputs))
    message = _one_line(exc)
    assert f"node {op!r}" in message
    assert f"op {op} does MACs but has no DOSA encoding" in message


@pytest.mark.parametrize(("model", "shape", "op"), [
    (nn.Conv3d(2, 3, 3), (1, 2, 4, 4, 4), "Conv"),
    (nn.LSTM(4, 3), (5, 1, 4), "LSTM"),
], ids=["conv3d", "lstm"])
def test_onnx_unsupported_mac_op_is_refused_by_name(model: nn.Module, shape: tuple[int, ...],
                                                   op: str, tmp_path: Path) -> None:
    path = _export(model, (_t(*shape),), tmp_path / "m.onnx")
    with pytest.raises(WorkloadError) as exc:
        import_onnx(path)
    message = _one_line(exc)
    assert f"node '/{op}' ({op})" in message
    assert "not supported" in message or "no DOSA encoding" in message


def test_dilated_conv_is_refused(tmp_path: Path) -> None:
    model, x = nn.Conv2d(2, 3, 3, dilation=2), _t(1, 2, 8, 8)
    with pytest.raises(WorkloadError) as exc:
        import_torch(model, x)
    message = _one_line(exc)
    assert "dilation" in message and "node 'conv2d'" in message
    with pytest.raises(WorkloadError) as exc:
        import_onnx(_export(model, (x,), tmp_path / "dil.onnx"))
    message = _one_line(exc)
    assert "dilation" in message and "'/Conv' (Conv)" in message


def test_model_without_macs_is_refused(tmp_path: Path) -> None:
    model, x = nn.Sequential(nn.ReLU(), nn.Softmax(-1)), _t(2, 3)
    with pytest.raises(WorkloadError) as exc:
        import_torch(model, x)
    assert "no op that does MACs" in _one_line(exc)
    with pytest.raises(WorkloadError) as exc:
        import_onnx(_export(model, (x,), tmp_path / "relu.onnx"))
    assert "no op that does MACs" in _one_line(exc)


@pytest.mark.parametrize("model", [lambda x: x, "resnet50", None], ids=["function", "str",
                                                                       "none"])
def test_non_module_is_refused(model: Any) -> None:
    with pytest.raises(WorkloadError) as exc:
        import_torch(model, _t(2, 3))
    assert "must be a torch.nn.Module" in _one_line(exc)
    with pytest.raises(WorkloadError):
        from_torch(model, _t(2, 3))


@pytest.mark.parametrize(("model", "shape", "role"), [
    (nn.Linear(4, 3), (2, 4), "A"),
    (nn.Conv2d(4, 3, 3), (2, 4, 5, 5), "input"),
], ids=["gemm", "conv"])
def test_onnx_symbolic_batch_is_refused_naming_the_dim(model: nn.Module, shape: tuple[int, ...],
                                                       role: str, tmp_path: Path) -> None:
    path = _export(model, (_t(*shape),), tmp_path / "dyn.onnx", input_names=["x"],
                   dynamic_axes={"x": {0: "batch"}})
    with pytest.raises(WorkloadError) as exc:
        import_onnx(path)
    message = _one_line(exc)
    assert "symbolic or unknown dim 'batch'" in message
    assert f"{role} 'x'" in message and str(path) in message


# --- CLI -------------------------------------------------------------------------------------

def test_cli_search_on_onnx(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 4 * 4, 10))
    path = _export(model, (torch.randn(1, 3, 4, 4),), tmp_path / "tiny.onnx")
    out = tmp_path / "r"
    assert main(["search", "--workload", str(path), "--method", "random", "--num-hw", "1",
                 "--mappings-per-layer", "2", "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["workload"] == "tiny"
    assert result["method"] == "random"
    assert result["cycles"] > 0


def test_cli_search_bad_onnx_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"this is not protobuf" * 8)
    out = tmp_path / "r"
    assert main(["search", "--workload", str(path), "--method", "random", "--num-hw", "1",
                 "--mappings-per-layer", "2", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("dosa search: error: --workload ")
    assert "not an ONNX model" in err and str(path) in err
    assert not (out / "result.json").exists()
