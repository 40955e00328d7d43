"""The batched differentiable Gemmini-TL model (spec §4) against hand-computed numbers,
itself (batching), autograd, and Timeloop (the published dataset, marked ``data``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from layers import EXAMPLE, EXAMPLE_LAYER, SAMPLE_LAYERS

from dosa import data
from dosa import hardware as H
from dosa.evaluation import evaluate_frame, evaluate_layers
from dosa.mapping import Mapping, parse_mapping, stack_mappings
from dosa.model import (
    _input_fills,
    accesses,
    capacities,
    discretize_hw,
    energy_uj,
    evaluate,
    latency_bounds,
    min_hw,
)
from dosa.workload import Layer

R, S, P, Q, C, K, N = range(7)
F64 = torch.float64


def _tensors(layers: list[Layer], mappings: list[Mapping]
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    dims = torch.tensor([lay.dims for lay in layers], dtype=F64)
    strides = torch.tensor([lay.strides for lay in layers], dtype=F64)
    t, s, r = stack_mappings(mappings)
    return dims, strides, t, s, r


def _example() -> tuple[torch.Tensor, ...]:
    return _tensors([EXAMPLE_LAYER], [parse_mapping(EXAMPLE)])


# ----------------------------------------------------------------------------------------------
# Spec §4.9 worked example, exactly
# ----------------------------------------------------------------------------------------------
def test_worked_example_capacities() -> None:
    dims, strides, t, s, _ = _example()
    caps = capacities(dims, strides, t, s)
    assert caps["w1"].item() == 128
    assert caps["o1"].item() == 896
    assert caps["w2"].item() == 512
    assert caps["i2"].item() == 28672
    assert caps["o2"].item() == 3584
    assert caps["max_spatial"].item() == 16


def test_worked_example_min_hw() -> None:
    dims, strides, t, s, _ = _example()
    caps = capacities(dims, strides, t, s)
    hw = min_hw(caps["o1"][None], (caps["w2"] + caps["i2"])[None], caps["max_spatial"][None])
    assert hw.shape == (1, 3)
    assert hw[0].tolist() == [16.0, 28.5, 56.0]
    assert discretize_hw(hw)[0].tolist() == [16.0, 29.0, 56.0]


def test_worked_example_fills() -> None:
    """wW0, wO1, wW2, wI2 (spec §4.9), recovered from the 5-vector and the input-fill term."""
    dims, strides, t, s, r = _example()
    acc = accesses(dims, strides, t, s, r)[0]
    mac, out, csp, ksp = 12_845_056, 56 * 56 * 64, 16, 4
    assert acc[0].item() == mac == EXAMPLE_LAYER.macs
    w_w0 = acc[1].item() - mac
    w_o1 = acc[2].item() - (2 * mac / csp - out)
    w_i2 = _input_fills(dims, strides, t, s, r)[0].item()
    w_w2 = acc[4].item() - w_i2 - 2 * w_o1 + out
    assert w_w0 == 4 * 16 * 2 * 4 * 8 * 7 == 28_672
    assert w_o1 == 200_704
    assert w_w2 == 28_672
    assert w_i2 == 64 * 7 * 448 == 200_704
    assert acc[3].item() == w_w0 + w_w2 + mac / ksp + w_i2
    assert acc.tolist() == [12_845_056, 12_873_728, 1_605_632, 3_469_312, 430_080]


def test_worked_example_latency_and_energy() -> None:
    dims, strides, t, s, r = _example()
    hw = torch.tensor([[16.0, 28.5, 56.0]], dtype=F64)
    out = evaluate(dims, strides, t, s, r, hw)
    assert out.bounds[0, [0, 2, 3, 4]].tolist() == [200_704, 200_704, 108_416, 53_760]
    assert out.bounds[0, 1].item() == pytest.approx(1_287.3728, abs=1e-9)
    assert out.cycles.item() == 200_704
    a = [12_845_056, 12_873_728, 1_605_632, 3_469_312, 430_080]
    pj = (0.5608 * a[0] + 0.48746172 * a[1] + (1.94 + 0.1005 * 56 / 16) * a[2]
          + (0.49 + 0.02513 * 28.5) * a[3] + 100 * a[4])
    assert out.energy_uj.item() == pytest.approx(pj * 1e-6, rel=1e-14)
    assert round(out.energy_uj.item(), 2) == 64.35
    assert out.acc_words.item() == 896 and out.sp_words.item() == 29_184
    assert out.max_spatial.item() == 16


def test_latency_is_the_max_bound_and_energy_the_weighted_sum() -> None:
    acc = torch.tensor([[1000.0, 2000.0, 3000.0, 4000.0, 5000.0]], dtype=F64)
    spatial = torch.ones(1, 4, 7, dtype=F64)
    spatial[0, 1, C], spatial[0, 2, K] = 4.0, 5.0
    hw = torch.tensor([[8.0, 64.0, 16.0]], dtype=F64)
    b = latency_bounds(acc, spatial, hw)[0].tolist()
    assert b == pytest.approx([1000 / 20, 2000 / 1e4, 3000 / 10, 4000 / 16, 5000 / 8])
    e = energy_uj(acc, hw).item()
    assert e == pytest.approx(1e-6 * (H.E_MAC * 1000 + H.E_REG * 2000
                                      + (H.E_ACC_BASE + H.E_ACC_PER_BANK_KB * 2) * 3000
                                      + (H.E_SP_BASE + H.E_SP_PER_KB * 64) * 4000
                                      + H.E_DRAM * 5000), rel=1e-14)


# ----------------------------------------------------------------------------------------------
# Random valid mappings for batch tests
# ----------------------------------------------------------------------------------------------
LAYERS = SAMPLE_LAYERS


def _random_mapping(layer: Layer, rng: np.random.Generator) -> Mapping:
    from dosa.mapping import divisors

    t = np.ones((4, 7), dtype=np.int64)
    s = np.ones((4, 7), dtype=np.int64)
    for d, size in enumerate(layer.dims):
        left = size
        slots = ([("s", 1)] if d == C else [("s", 2)] if d == K else [])
        slots += ([("t", 0)] if d in (P, Q, N) else []) + [("t", 1), ("t", 2)]
        for kind, j in slots:
            f = int(rng.choice([x for x in divisors(left) if kind == "t" or x <= 64]))
            (s if kind == "s" else t)[j, d] = f
            left //= f
        t[3, d] = left
    return Mapping(t, s, np.array([rng.permutation(7) for _ in range(4)]))


def _random_batch(n: int, seed: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    layers = [LAYERS[i % len(LAYERS)] for i in range(n)]
    mappings = [_random_mapping(lay, rng) for lay in layers]
    dims, strides, t, s, r = _tensors(layers, mappings)
    hw = torch.tensor([[2.0 ** rng.integers(1, 8), 2.0 ** rng.integers(0, 12),
                        2.0 ** rng.integers(0, 12)] for _ in range(n)], dtype=F64)
    return dims, strides, t, s, r, hw


def test_batching_invariance() -> None:
    dims, strides, t, s, r, hw = _random_batch(140, seed=3)
    batch = evaluate(dims, strides, t, s, r, hw)
    for i in range(len(dims)):
        one = evaluate(dims[i:i + 1], strides[i:i + 1], t[i:i + 1], s[i:i + 1], r[i:i + 1],
                       hw[i:i + 1])
        assert one.cycles.item() == batch.cycles[i].item()
        assert one.energy_uj.item() == batch.energy_uj[i].item()
        assert torch.equal(one.accesses[0], batch.accesses[i])
        assert torch.equal(one.bounds[0], batch.bounds[i])
        assert one.sp_words.item() == batch.sp_words[i].item()
    # and the order of the rows does not matter either
    perm = torch.randperm(len(dims), generator=torch.Generator().manual_seed(0))
    shuffled = evaluate(dims[perm], strides[perm], t[perm], s[perm], r[perm], hw[perm])
    assert torch.equal(shuffled.energy_uj, batch.energy_uj[perm])


def test_float64_everywhere() -> None:
    dims, strides, t, s, r, hw = _random_batch(20, seed=4)
    out = evaluate(dims, strides, t, s, r, hw)
    for name in ("cycles", "energy_uj", "accesses", "acc_words", "sp_words", "max_spatial",
                 "bounds"):
        assert getattr(out, name).dtype == F64, name
    assert t.dtype == s.dtype == F64
    lay_out = evaluate_layers([EXAMPLE_LAYER], [parse_mapping(EXAMPLE)], H.DOSA_BASE)
    assert lay_out.energy_uj.dtype == F64
    caps = capacities(dims, strides, t, s)
    assert all(v.dtype == F64 for v in caps.values())
    hwmin = min_hw(out.acc_words[None], out.sp_words[None], out.max_spatial[None], smooth=0.1)
    assert hwmin.dtype == F64


def test_large_layer_counts_are_exact() -> None:
    """U-Net 0_1 has 1.19e10 MACs: exact in float64 (float32 would round to 1024)."""
    layer = Layer("unet0_1", R=3, S=3, P=568, Q=568, C=64, K=64)
    m = _random_mapping(layer, np.random.default_rng(5))
    dims, strides, t, s, r = _tensors([layer], [m])
    acc = accesses(dims, strides, t, s, r)
    assert acc[0, 0].item() == layer.macs == 11_893_211_136
    assert float(np.float32(layer.macs + 1)) != layer.macs + 1  # the float32 hazard is real
    assert int(acc[0, 0].item()) == layer.macs


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------
GRAD_LAYER = Layer("g", R=3, S=3, P=28, Q=28, C=64, K=64)
# Innermost-first loop orders: DRAM P, Q, C, K, R, S, N; accumulator as in Gemmini.
GRAD_RANK = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [4, 5, 0, 1, 3, 6, 2],
                          [0, 1, 2, 3, 4, 5, 6], [4, 5, 0, 1, 2, 3, 6]])


def _fractional_model(l1: torch.Tensor, sp: torch.Tensor, l0p: torch.Tensor,
                      which: str) -> torch.Tensor:
    """cycles or energy as a function of fractional L1 temporal P,Q,C,K, Csp/Ksp and L0 P.

    DRAM factors are derived from the layer with raw values (spec §4.8), the hardware is fixed
    so that gradients flow through the access counts only.
    """
    dims = torch.tensor([GRAD_LAYER.dims], dtype=F64)
    strides = torch.tensor([GRAD_LAYER.strides], dtype=F64)
    temporal = torch.ones(1, 4, 7, dtype=F64)
    spatial = torch.ones(1, 4, 7, dtype=F64)
    temporal = temporal.index_put((torch.tensor([0]), torch.tensor([1] * 4),
                                   torch.tensor([P, Q, C, K])), l1)
    temporal = temporal.index_put((torch.tensor([0]), torch.tensor([1]), torch.tensor([R])),
                                  torch.tensor([3.0], dtype=F64))
    temporal = temporal.index_put((torch.tensor([0]), torch.tensor([0]), torch.tensor([P])), l0p)
    spatial = spatial.index_put((torch.tensor([0, 0]), torch.tensor([1, 2]),
                                 torch.tensor([C, K])), sp)
    lower = (temporal[:, :3] * spatial[:, :3]).prod(dim=1)
    temporal = torch.cat([temporal[:, :3], (dims / lower).unsqueeze(1)], dim=1)
    hw = torch.tensor([[16.0, 256.0, 64.0]], dtype=F64)
    out = evaluate(dims, strides, temporal, spatial, GRAD_RANK[None], hw)
    return out.cycles if which == "cycles" else out.energy_uj


# Two points away from guards (all factors > 1), ties between bounds and window kinks:
# "acc" is accumulator-bound, "sp" scratchpad-bound (by more than 2x over the next bound).
GRAD_POINTS = {
    "acc": ([3.7, 2.3, 2.2, 1.8], [5.5, 6.5], [2.5]),
    "sp": ([1.7, 1.3, 1.6, 1.8], [12.5, 14.5], [1.5]),
}


def _grad_point(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return tuple(torch.tensor(v, dtype=F64, requires_grad=True)  # type: ignore[return-value]
                 for v in GRAD_POINTS[name])


@pytest.mark.parametrize("point", sorted(GRAD_POINTS))
def test_energy_gradients_finite_and_nonzero(point: str) -> None:
    l1, sp, l0p = _grad_point(point)
    _fractional_model(l1, sp, l0p, "energy").sum().backward()
    for name, x in (("L1 temporal P,Q,C,K", l1), ("spatial C,K", sp), ("L0 P", l0p)):
        assert x.grad is not None and torch.isfinite(x.grad).all(), name
        assert (x.grad.abs() > 1e-6).all(), f"zero energy gradient wrt {name}: {x.grad}"


def test_cycle_gradients_follow_the_binding_bound() -> None:
    """Scratchpad-bound point: SP traffic depends on the L1 P, Q, K tiles, Ksp and L0 P.

    (Splitting C between L1/Csp and DRAM conserves every count of this mapping, so the
    C-gradients are ~0 there; the accumulator-bound point has a compute/acc-only dependence.)
    """
    l1, sp, l0p = _grad_point("sp")
    _fractional_model(l1, sp, l0p, "cycles").sum().backward()
    assert l1.grad is not None and sp.grad is not None and l0p.grad is not None
    for x in (l1, sp, l0p):
        assert torch.isfinite(x.grad).all()
    assert (l1.grad[[0, 1, 3]].abs() > 1).all(), l1.grad  # P, Q, K
    assert sp.grad[1].abs() > 1 and l0p.grad.abs().item() > 1
    l1, sp, l0p = _grad_point("acc")
    _fractional_model(l1, sp, l0p, "cycles").sum().backward()
    assert sp.grad is not None and (sp.grad.abs() > 1).all()  # 2*MAC/Csp/(2*Ksp)


@pytest.mark.parametrize("which", ["cycles", "energy"])
@pytest.mark.parametrize("point", sorted(GRAD_POINTS))
def test_gradcheck_fractional_factors(which: str, point: str) -> None:
    """Analytic gradients equal finite differences away from guards, ties and kinks."""
    assert torch.autograd.gradcheck(lambda a, b, c: _fractional_model(a, b, c, which),
                                    _grad_point(point), eps=1e-6, atol=1e-7, rtol=1e-6)


def test_guard_gives_zero_gradient_at_or_below_one() -> None:
    """Factors <= 1 do not exist (rule 1): no gradient flows into them via capacities."""
    dims, strides, t, s, _ = _example()
    t = t.clone().requires_grad_(True)
    caps = capacities(dims, strides, t, s)
    (caps["o1"] + caps["w2"] + caps["i2"]).sum().backward()
    assert t.grad is not None
    assert t.grad[0, 1, P] != 0  # L1 P56 is a real loop
    assert t.grad[0, 1, R] == 0 and t.grad[0, 2, K] == 0  # factor-1 loops


def test_min_hw_smooth_bounds_and_gradient() -> None:
    acc = torch.tensor([[100.0, 900.0, 1000.0, 40.0]], dtype=F64, requires_grad=True)
    sp = torch.tensor([[5000.0, 20000.0, 19000.0, 100.0]], dtype=F64, requires_grad=True)
    msp = torch.tensor([[4.0, 16.0, 8.0, 1.0]], dtype=F64, requires_grad=True)
    hard = min_hw(acc, sp, msp)
    assert hard[0].tolist() == [16.0, 20000 / 1024, 16 * 1000 * 4 / 1024]
    for tau in (0.01, 0.05, 0.2):
        soft = min_hw(acc, sp, msp, smooth=tau)
        # log-sum-exp is an upper bound of the max, and at most a factor L**tau above it
        assert torch.all(soft >= hard - 1e-12)
        assert torch.all(soft[0, :2] <= hard[0, :2] * 4**tau + 1e-9)
    assert torch.allclose(min_hw(acc, sp, msp, smooth=1e-3), hard, rtol=2e-3)

    hard.sum().backward()
    assert acc.grad is not None and sp.grad is not None
    assert (acc.grad[0] != 0).tolist() == [False, False, True, False]  # arg-max layer only
    assert (sp.grad[0] != 0).tolist() == [False, True, False, False]
    acc.grad, sp.grad, msp.grad = None, None, None
    min_hw(acc, sp, msp, smooth=0.05).sum().backward()
    assert acc.grad is not None and sp.grad is not None and msp.grad is not None
    assert torch.all(acc.grad > 0) and torch.all(sp.grad > 0) and torch.all(msp.grad > 0)
    # near-critical layers get much more signal than far-away ones
    assert acc.grad[0, 1] > 100 * acc.grad[0, 0]
    assert sp.grad[0, 2] > 100 * sp.grad[0, 3]


def test_min_hw_pe_floor_fixed_pe_and_batch_dims() -> None:
    acc = torch.tensor([[[10.0, 20.0]], [[30.0, 5.0]]], dtype=F64)  # [2, 1, L=2]
    sp = torch.full((2, 1, 2), 2048.0, dtype=F64)
    msp = torch.ones(2, 1, 2, dtype=F64)
    hw = min_hw(acc, sp, msp)
    assert hw.shape == (2, 1, 3)
    assert hw[..., 0].tolist() == [[2.0], [2.0]]  # pe_dim 1 is disallowed
    assert hw[:, 0, 2].tolist() == [2 * 20 * 4 / 1024, 2 * 30 * 4 / 1024]
    fixed = min_hw(acc, sp, msp, pe_dim=16)
    assert fixed[..., 0].tolist() == [[16.0], [16.0]]
    assert fixed[:, 0, 2].tolist() == [16 * 20 * 4 / 1024, 16 * 30 * 4 / 1024]
    assert discretize_hw(torch.tensor([15.6, 2.0000000001, 2.2], dtype=F64)).tolist() == [
        16.0, 2.0, 3.0]


# ----------------------------------------------------------------------------------------------
# Input halo rule (spec §4.2, rule 4 of dosa.model)
# ----------------------------------------------------------------------------------------------
HALO_LAYER = Layer("halo", R=3, S=3, P=28, Q=28, C=64, K=64)


def _halo_fills(dram: str, l1: str) -> float:
    m = parse_mapping(f"L3[WIO] {dram} - L2[WI] N1 K16X - L1[O] {l1} R3 S3 P7 Q28 C16X - L0[W] N1")
    m.check(HALO_LAYER)
    dims, strides, t, s, r = _tensors([HALO_LAYER], [m])
    return _input_fills(dims, strides, t, s, r).item()


def test_halo_reuse_along_p() -> None:
    """A DRAM P loop innermost slides the 9x30 input window: only 7 new columns per step.

    With C outermost and P innermost every input word is fetched once (30x30x64); with C
    innermost the window moves only after all channels, so each P step refetches the whole
    window including the 2 overlapping columns (4 x 9 x 30 x 64). Timeloop agrees: on the
    dataset's conv rows whose innermost DRAM loop is P (or C) the model's energy error is
    ~0.05 % (0.03 %) mean.
    """
    halo = _halo_fills("C4 P4", "K4")  # written outermost first: P innermost
    no_halo = _halo_fills("P4 C4", "K4")  # C innermost
    assert halo == 30 * 30 * 64 == 57_600
    assert no_halo == 4 * 9 * 30 * 64 == 69_120
    assert halo < no_halo


def test_no_halo_reuse_behind_an_innermost_k_loop() -> None:
    """An innermost DRAM K loop (irrelevant to inputs) keeps the window, but the P step after
    it refetches the whole window: no halo reuse, exactly like C innermost.

    This is what Timeloop does: on the 3,562 conv rows of the dataset whose innermost DRAM
    loops are K then P/Q, this rule gives 0.03 % mean |energy error|, whereas assuming halo
    reuse there would give 0.65 %. Note that with only {P, K} at DRAM, P innermost fetches
    *more* than K innermost: the outer K loop re-streams the whole input 4 times.
    """
    k_inner = _halo_fills("P4 K4", "C4")
    p_inner = _halo_fills("K4 P4", "C4")
    assert k_inner == 4 * 9 * 30 * 64 == 69_120  # no halo, K reused
    assert p_inner == 4 * 30 * 30 * 64 == 230_400  # halo, but K refetches everything
    assert k_inner == _halo_fills("P4 C4", "K4")


def test_factor_one_dram_loops_do_not_hide_the_window() -> None:
    """Loops with factor 1 do not exist (spec §9.2): their rank must not break halo reuse."""
    m = parse_mapping("L3[WIO] C4 P4 - L2[WI] N1 K16X - L1[O] K4 R3 S3 P7 Q28 C16X - L0[W] N1")
    dims, strides, t, s, r = _tensors([HALO_LAYER], [m])
    base = _input_fills(dims, strides, t, s, r).item()
    r2 = r.clone()
    r2[0, 3] = torch.tensor([1, 2, 3, 4, 5, 0, 6])  # factor-1 K ranked innermost at DRAM
    assert _input_fills(dims, strides, t, s, r2).item() == base == 57_600


# ----------------------------------------------------------------------------------------------
# Against Timeloop (acceptance criterion)
# ----------------------------------------------------------------------------------------------
@pytest.mark.data
def test_model_reproduces_timeloop_on_all_rows() -> None:
    if not data.available("timeloop"):
        pytest.skip("published Timeloop dataset not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")
    df = data.load_timeloop_dataset()
    assert len(df) == 72_700
    out = evaluate_frame(df, source="timeloop")
    lat = np.abs(out["model.cycle"] / df["target.cycle"] - 1) * 100
    en = np.abs(out["model.energy"] / df["target.energy"] - 1) * 100
    assert math.isfinite(lat.mean()) and math.isfinite(en.mean())
    assert lat.mean() <= 0.01, f"latency MAE {lat.mean():.4f} %"
    assert en.mean() <= 0.2, f"energy MAE {en.mean():.4f} %"
    assert (lat < 0.001).mean() > 0.98
    assert np.median(en) < 0.05
    assert lat.max() < 2 and en.max() < 12

