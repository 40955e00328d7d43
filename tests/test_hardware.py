"""Hardware template: validation, arch-column round trip, and the area model.

Tests marked ``data`` compare against the published Timeloop dataset and skip when it is not
available locally (set ``DOSA_DATA_DIR``, e.g. to ``../shared/dosa-data``).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dosa import data
from dosa.hardware import (
    ARCH_COLUMNS,
    AREA_FIT_RANGE,
    DOSA_BASE,
    GEMMINI_DEFAULT,
    PE_DIM_LIMIT,
    Hardware,
    HardwareError,
    area_model,
    area_model_range_issue,
    check_pe_dim,
    hardware_from_arch_columns,
)


def _skip_without_timeloop() -> None:
    if not data.available("timeloop"):
        pytest.skip("published Timeloop dataset not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")


@pytest.fixture(scope="module")
def dataset_configs() -> pd.DataFrame:
    """The 95 distinct hardware configurations of the Timeloop dataset with their area."""
    _skip_without_timeloop()
    df = data.load_timeloop_dataset()
    hw = hardware_from_arch_columns(df)
    frame = pd.DataFrame(hw, columns=["pe", "sp", "acc"])
    frame["area"] = df["target.area"].to_numpy()
    frame = pd.concat([frame, df[list(ARCH_COLUMNS) + ["arch.mem1_entries", "arch.mem2_entries",
                                                       "arch.mem2_shared_bandwidth",
                                                       "arch.meshX"]]], axis=1)
    return frame.drop_duplicates(["pe", "sp", "acc"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((16, -1.0, 32.0), "sp_kb"),
        ((16, 0.0, 32.0), "sp_kb"),
        ((16, 128.0, -4.0), "acc_kb"),
        ((0, 128.0, 32.0), "pe_dim"),
        ((-3, 128.0, 32.0), "pe_dim"),
        ((16, math.nan, 32.0), "sp_kb"),
        ((16, 128.0, math.nan), "acc_kb"),
        ((16, math.inf, 32.0), "sp_kb"),
        ((True, 128.0, 32.0), "pe_dim"),
        ((16, True, 32.0), "sp_kb"),
        ((16, 128.0, False), "acc_kb"),
        ((16.0, 128.0, 32.0), "pe_dim"),
        ((16, "128", 32.0), "sp_kb"),
    ],
)
def test_invalid_hardware_names_the_field(args: tuple, field: str) -> None:
    with pytest.raises(HardwareError, match=field):
        Hardware(*args)


def test_valid_hardware_normalises_types() -> None:
    hw = Hardware(np.int64(16), 128, np.float32(32.0))
    assert hw.as_tuple() == (16, 128.0, 32.0)
    assert type(hw.pe_dim) is int and type(hw.sp_kb) is float and type(hw.acc_kb) is float
    assert hw.sp_words == 128 * 1024
    assert hw.acc_words_per_bank == 32 * 1024 / 4 / 16


def test_from_dict_unknown_key_is_named() -> None:
    with pytest.raises(HardwareError, match="bogus"):
        Hardware.from_dict({"pe_dim": 16, "sp_kb": 128, "acc_kb": 32, "bogus": 1})


def test_from_dict_missing_key_is_named() -> None:
    with pytest.raises(HardwareError, match="acc_kb"):
        Hardware.from_dict({"pe_dim": 16, "sp_kb": 128})


def test_from_dict_round_trip() -> None:
    hw = Hardware(32, 28.5, 56.0)
    assert Hardware.from_dict(hw.to_dict()) == hw


@pytest.mark.parametrize("bad", [16.7, True])
def test_from_dict_rejects_non_integer_pe_dim(bad: object) -> None:
    with pytest.raises(HardwareError, match="pe_dim"):
        Hardware.from_dict({"pe_dim": bad, "sp_kb": 128, "acc_kb": 32})


# ----------------------------------------------------------------------------------------------
# Arch columns
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "hw",
    [DOSA_BASE, GEMMINI_DEFAULT, Hardware(2, 1, 1), Hardware(128, 2048, 2048),
     Hardware(16, 28.5, 56), Hardware(4, 3, 6)],
)
def test_arch_columns_round_trip_exact(hw: Hardware) -> None:
    cols = hw.to_arch_columns()
    assert cols["arch.pe"] == hw.pe_dim**2
    assert cols["arch.meshX"] == cols["arch.mem1_instances"] == hw.pe_dim
    assert cols["arch.mem2_width"] == 8 * hw.pe_dim
    assert cols["arch.mem2_shared_bandwidth"] == 2 * hw.pe_dim
    back = hardware_from_arch_columns(pd.DataFrame([cols]))
    assert back.shape == (1, 3)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back[0], hw.as_tuple())


def test_arch_columns_round_up_to_whole_rows() -> None:
    # 1.3 KB over a 128-byte-wide scratchpad is not a whole number of rows: the depth is
    # rounded up, so the recovered size is the next multiple of one row (128 B), never smaller.
    hw = Hardware(128, 1.3, 1.3)
    back = hardware_from_arch_columns(pd.DataFrame([hw.to_arch_columns()]))[0]
    assert back[0] == 128
    assert hw.sp_kb <= back[1] < hw.sp_kb + 128 / 1024
    assert back[1] * 1024 % 128 == 0
    # accumulator: 128 banks x 4-byte rows
    assert hw.acc_kb <= back[2] < hw.acc_kb + 128 * 4 / 1024


def test_arch_columns_vectorised_over_rows() -> None:
    hws = [Hardware(2, 1, 1), Hardware(16, 128, 32), Hardware(64, 512, 2048)]
    frame = pd.DataFrame([h.to_arch_columns() for h in hws])
    np.testing.assert_array_equal(hardware_from_arch_columns(frame),
                                  np.array([h.as_tuple() for h in hws], dtype=np.float64))


def test_hardware_from_arch_columns_missing_column_named() -> None:
    cols = DOSA_BASE.to_arch_columns()
    del cols["arch.mem2_depth"]
    with pytest.raises(ValueError, match="arch.mem2_depth"):
        hardware_from_arch_columns(pd.DataFrame([cols]))


@pytest.mark.data
def test_arch_columns_reproduce_published_rows(dataset_configs: pd.DataFrame) -> None:
    """For all 95 published configs, to_arch_columns regenerates the published arch columns."""
    assert len(dataset_configs) == 95
    for rec in dataset_configs.to_dict("records"):
        hw = Hardware(int(rec["pe"]), rec["sp"], rec["acc"])
        cols = hw.to_arch_columns()
        for name in (*ARCH_COLUMNS, "arch.mem1_entries", "arch.mem2_entries",
                     "arch.mem2_shared_bandwidth", "arch.meshX"):
            assert cols[name] == rec[name], (hw, name)


# ----------------------------------------------------------------------------------------------
# Area model
# ----------------------------------------------------------------------------------------------
@pytest.mark.data
def test_area_model_matches_timeloop_area(dataset_configs: pd.DataFrame) -> None:
    pred = area_model().predict(dataset_configs["pe"], dataset_configs["sp"],
                                dataset_configs["acc"])
    rel = np.abs(pred - dataset_configs["area"]) / dataset_configs["area"]
    # the monotone-by-construction model (see dosa.hardware) fits to 2.7 % mean / 10.3 % max
    assert rel.mean() < 0.03, f"mean relative area error {rel.mean():.4%}"
    assert rel.max() < 0.11, f"max relative area error {rel.max():.4%}"


def test_area_mm2_agrees_with_predict() -> None:
    hw = Hardware(16, 128, 32)
    assert hw.area_mm2() == pytest.approx(float(area_model().predict(16, 128, 32)), rel=1e-12)
    assert 0.1 < hw.area_mm2() < 5.0  # Gemmini 16x16 at 40 nm: about 1 mm^2


@pytest.mark.parametrize(("point", "flat"), [((16.0, 128.0, 32.0), ()),
                                             ((5.0, 3.7, 900.0), ()),
                                             ((100.0, 1500.0, 2.5), ("acc",))])
def test_area_model_is_differentiable(point: tuple[float, float, float],
                                      flat: tuple[str, ...]) -> None:
    """Gradients are finite and never negative (monotone model). A tiny accumulator sits on a
    flat piece - the data show no area change there, e.g. (16, 4 KB, 1 KB) = (16, 4 KB, 4 KB)."""
    pe, sp, acc = (torch.tensor([v], dtype=torch.float64, requires_grad=True) for v in point)
    area = area_model().predict_torch(pe, sp, acc).sum()
    area.backward()
    for name, t in (("pe", pe), ("sp", sp), ("acc", acc)):
        assert t.grad is not None and torch.isfinite(t.grad).all(), name
        assert t.grad.item() >= 0.0, name
        if name not in flat:
            assert t.grad.item() > 0.0, name


def test_area_model_gradient_matches_finite_difference() -> None:
    point = torch.tensor([[24.0, 300.0, 90.0]], dtype=torch.float64, requires_grad=True)

    def f(x: torch.Tensor) -> torch.Tensor:
        return area_model().predict_torch(x[:, 0], x[:, 1], x[:, 2])

    assert torch.autograd.gradcheck(f, (point,), eps=1e-6, atol=1e-6)


_PE_GRID = [2, 4, 8, 16, 32, 64, 128]
_KB_GRID = [2.0**k for k in range(12)]  # 1 .. 2048 KB, the sizes DOSA's random HW draws


def _area_grid() -> np.ndarray:
    pe, sp, acc = np.meshgrid(_PE_GRID, _KB_GRID, _KB_GRID, indexing="ij")
    area = area_model().predict(pe.ravel(), sp.ravel(), acc.ravel())
    return area.reshape(pe.shape)


@pytest.mark.parametrize(("axis", "name"), [(0, "pe_dim"), (1, "sp_kb"), (2, "acc_kb")])
def test_area_model_monotone(axis: int, name: str) -> None:
    area = _area_grid()
    diff = np.diff(area, axis=axis)
    bad = np.argwhere(diff < 0)
    assert bad.size == 0, (
        f"area decreases along {name} at {len(bad)} grid points, e.g. "
        f"(pe, sp, acc) index {bad[0].tolist()}: {diff[tuple(bad[0])]:.4g} mm^2")


def test_area_model_monotone_on_gemmini_like_sizes() -> None:
    """Where the model is well supported (pe 8..32, >= 16 KB per config) area grows."""
    pe, sp, acc = np.meshgrid([8, 16, 32], [16.0, 64.0, 256.0, 1024.0], [16.0, 64.0, 256.0],
                              indexing="ij")
    area = area_model().predict(pe.ravel(), sp.ravel(), acc.ravel()).reshape(pe.shape)
    for axis in range(3):
        assert np.all(np.diff(area, axis=axis) > 0), axis


def test_area_model_monotone_between_grid_points() -> None:
    """Integer pe_dim and non-power-of-two buffer sizes, as DOSA's min-HW produces."""
    pe = np.arange(2, 257, dtype=float)
    for sp in (1.0, 3.0, 28.5, 300.0, 2048.0, 5000.0):
        for acc in (1.0, 7.0, 56.0, 392.0, 4096.0):
            area = area_model().predict(pe, np.full_like(pe, sp), np.full_like(pe, acc))
            assert np.all(np.diff(area) >= 0), (sp, acc)
    kb = np.linspace(0.25, 6000.0, 3000)
    fixed = np.full_like(kb, 64.0)
    for p in (2, 16, 96, 128):
        pes = np.full_like(kb, p)
        assert np.all(np.diff(area_model().predict(pes, kb, fixed)) >= 0)
        assert np.all(np.diff(area_model().predict(pes, fixed, kb)) >= 0)


# ----------------------------------------------------------------------------------------------
# Fitted range of the area model and absurd array sizes
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("hw", [Hardware(2, 1.0, 1.0), Hardware(128, 2048.0, 2048.0),
                                GEMMINI_DEFAULT, DOSA_BASE, Hardware(48, 28.5, 56.0),
                                Hardware(3, 1000.0, 1.5)])
def test_area_model_range_issue_none_inside_fitted_box(hw: Hardware) -> None:
    assert area_model_range_issue(hw) is None


@pytest.mark.parametrize(("hw", "words"), [
    (Hardware(256, 64.0, 64.0), ["pe_dim=256 is outside 2..128"]),
    (Hardware(1, 64.0, 64.0), ["pe_dim=1 is outside 2..128"]),
    (Hardware(16, 4096.0, 64.0), ["sp_kb=4096 is outside 1..2048"]),
    (Hardware(16, 64.0, 0.5), ["acc_kb=0.5 is outside 1..2048"]),
    (Hardware(2048, 0.25, 9000.0), ["pe_dim=2048", "sp_kb=0.25", "acc_kb=9000"]),
])
def test_area_model_range_issue_says_what_is_outside(hw: Hardware, words: list[str]) -> None:
    issue = area_model_range_issue(hw)
    assert issue is not None and issue.startswith("area model extrapolated")
    for word in words:
        assert word in issue
    assert "95 published" in issue


def test_area_fit_range_is_that_of_the_published_configs(dataset_configs: pd.DataFrame) -> None:
    """The stated range is exactly the span of the 95 configurations the model was fit on."""
    for col, field in (("pe", "pe_dim"), ("sp", "sp_kb"), ("acc", "acc_kb")):
        assert (dataset_configs[col].min(), dataset_configs[col].max()) == AREA_FIT_RANGE[field]
    for row in dataset_configs.itertuples():
        assert area_model_range_issue(Hardware(int(row.pe), row.sp, row.acc)) is None


def test_baseline_grid_lies_inside_area_fit_range() -> None:
    from dosa.search.options import HardwareBounds

    assert all(area_model_range_issue(hw) is None for hw in HardwareBounds().candidates())


@pytest.mark.parametrize("good", [1, 16, PE_DIM_LIMIT, np.int64(128)])
def test_check_pe_dim_accepts(good: object) -> None:
    assert check_pe_dim(good) == int(good) and type(check_pe_dim(good)) is int


@pytest.mark.parametrize("bad", [0, -4, PE_DIM_LIMIT + 1, 100_000, 16.0, True, None, "16"])
def test_check_pe_dim_refuses_absurd_or_non_integer(bad: object) -> None:
    with pytest.raises(ValueError) as err:
        check_pe_dim(bad)
    assert str(err.value) == f"pe_dim must be an integer in [1, 1024], got {bad!r}"
    with pytest.raises(ValueError, match=r"^max_pe_dim must be an integer in \[1, 1024\]"):
        check_pe_dim(bad, "max_pe_dim")
