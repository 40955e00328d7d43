"""Fig. 8 accelerators: Timeloop's worked examples exactly, Gemmini default = the Gemmini-TL
model, the original's mapper (legal mappings, random-pruned groups), refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dosa import accelerators as A
from dosa.hardware import Hardware
from dosa.mapping import Mapping, MappingError, parse_mapping, stack_mappings
from dosa.model import evaluate
from dosa.workload import Layer, Network

F64 = torch.float64
LAYER = Layer(name="res2_conv", R=3, S=3, P=56, Q=56, C=64, K=64, N=1)

# fig8-architectures.md §5: the real tool's mapping (our string format), cycles, energy (µJ) and
# per level (utilised instances, reads, fills, updates per instance, energy pJ) in the order
# registers, accumulator, buffer weights, buffer inputs, DRAM weights, inputs, outputs.
WORKED = {
    "gemmini_default": (
        "L3[WIO] Q7 K4 - L2[WI] N1 K16X - L1[O] Q8 C4 S3 R3 C16X - L0[W] P56",
        451_584, 261.4529, 6.483157e7,
        [(256, 451584, 8064, 0, 5.735957e7), (16, 439040, 12544, 451584, 3.107987e7),
         (1, 2064384, 258048, 0, 8601168), (1, 7225344, 259840, 0, 2.772151e7),
         (1, 258048, 0, 0, 2.58048e7), (1, 259840, 0, 0, 2.5984e7), (1, 0, 0, 200704, 2.00704e7)]),
    "nvdla_small": (
        "L3[WIO] Q7 - L2[WI] K8 C8 K8X - L1[O] S3 R3 C8X - L0[W] Q8 P56",
        1_806_336, 473.7057, 2.543726e8,
        [(64, 1806336, 4032, 0, 5.647905e7), (8, 1781248, 25088, 1806336, 6.215974e7),
         (1, 258048, 36864, 0, 1092212), (1, 14450688, 215296, 0, 5.431573e7),
         (1, 36864, 0, 0, 3686400), (1, 215296, 0, 0, 2.15296e7), (1, 0, 0, 200704, 2.00704e7)]),
    "nvdla_large": (
        "L3[WIO] N1 - L2[WI] Q14 K4 K16X - L1[O] S3 R3 C64X - L0[W] Q4 P56",
        112_896, 270.2041, 1.156055e8,
        [(1024, 112896, 504, 0, 1780209), (16, 100352, 12544, 112896, 803320.3),
         (1, 516096, 36864, 0, 7382989), (1, 7225344, 215296, 0, 9.934563e7),
         (1, 36864, 0, 0, 3686400), (1, 215296, 0, 0, 2.15296e7), (1, 0, 0, 200704, 2.00704e7)]),
}


def _tensors(layer: Layer, mappings: list[Mapping]) -> tuple[torch.Tensor, ...]:
    n = len(mappings)
    dims = torch.tensor([layer.dims] * n, dtype=F64)
    strides = torch.tensor([layer.strides] * n, dtype=F64)
    return (dims, strides, *stack_mappings(mappings))


@pytest.mark.parametrize("name", sorted(WORKED))
def test_worked_example_matches_the_real_tool(name: str) -> None:
    mapping, cycles, energy, mac_pj, levels = WORKED[name]
    arch = A.load_accelerator(name)
    args = _tensors(LAYER, [parse_mapping(mapping)])
    out = A.evaluate_accelerator(arch, *args)
    assert bool(out.valid[0])
    assert out.cycles.item() == cycles
    assert out.energy_uj.item() == pytest.approx(energy, rel=1e-6)
    counts = A._level_counts(A.actions(*args))
    got = []  # (instances, reads, fills, updates) per (level, tensor) as Timeloop prints them
    (reg_reads, reg_fills), pes = counts["registers"]
    got.append((pes, reg_reads, reg_fills, 0))
    (acc_reads, acc_fills, acc_updates), ksp = counts["accumulator"]
    got.append((ksp, acc_reads, acc_fills, acc_updates))
    w_reads, w_fills, i_reads, i_fills = counts["buffer"][0]
    got += [(1, w_reads, w_fills, 0), (1, i_reads, i_fills, 0)]
    dw, di, o_reads, o_updates = counts["dram"][0]
    got += [(1, dw, 0, 0), (1, di, 0, 0), (1, o_reads, 0, o_updates)]
    for (inst, reads, fills, updates, _), row in zip(levels, got, strict=True):
        assert [float(x) for x in row] == [inst, reads, fills, updates]
    pj = out.level_pj[0].tolist()
    assert pj[0] == pytest.approx(mac_pj, rel=1e-6)
    assert pj[1] == pytest.approx(levels[0][4], rel=1e-6)
    assert pj[2] == pytest.approx(levels[1][4], rel=1e-6)
    assert pj[3] == pytest.approx(levels[2][4] + levels[3][4], rel=1e-6)
    assert pj[4] == pytest.approx(sum(lv[4] for lv in levels[4:]), rel=1e-6)


def test_per_scalar_energies_are_pats_with_clusters() -> None:
    """§5's table: what the pinned Timeloop charges per scalar access at full utilisation."""
    small, large = A.load_accelerator("nvdla_small"), A.load_accelerator("nvdla_large")
    assert small.registers.vector_pj == pytest.approx(0.4874617, abs=1e-7)
    assert small.accumulator.vector_pj / 16 == pytest.approx(2.150754, abs=1e-6)
    assert small.buffer.vector_pj == pytest.approx(3.703518, abs=1e-6)
    # clusters divide twice at full utilisation: by the cluster size, then by the instances
    # of a cluster
    assert large.registers.vector_pj / 64 / 64 == pytest.approx(0.01533056, rel=1e-6)
    assert large.accumulator.vector_pj / 16 / 16 == pytest.approx(0.2223618, rel=1e-6)
    assert large.buffer.vector_pj == pytest.approx(13.35176, rel=1e-6)
    assert small.dram.vector_pj / 64 == 100.0


def test_gemmini_default_is_the_gemmini_tl_model() -> None:
    """One implementation: the Fig. 8 Gemmini default scores as Hardware(16, 128, 32)."""
    arch = A.load_accelerator("gemmini_default")
    t, s, r = A.random_mappings(arch, LAYER, 300, np.random.default_rng(3))
    args = (torch.tensor([LAYER.dims] * 300, dtype=F64),
            torch.tensor([LAYER.strides] * 300, dtype=F64),
            torch.from_numpy(t.astype(np.float64)), torch.from_numpy(s.astype(np.float64)),
            torch.from_numpy(r))
    ours = A.evaluate_accelerator(arch, *args)
    tl = evaluate(*args, torch.tensor([[16.0, 128.0, 32.0]] * 300, dtype=F64))
    assert torch.equal(ours.cycles, tl.cycles)
    assert torch.allclose(ours.energy_uj, tl.energy_uj, rtol=1e-12)
    for m in (Mapping(t[i], s[i], r[i]) for i in range(0, 300, 37)):
        m.check(LAYER, Hardware(16, 128.0, 32.0))


@pytest.mark.parametrize("name", A.ACCELERATORS)
def test_random_mapper_draws_legal_mappings_of_the_mapspace(name: str) -> None:
    arch = A.load_accelerator(name)
    layer = Layer(name="c", R=3, S=3, P=28, Q=28, C=128, K=128, N=1)
    t, s, r = A.random_mappings(arch, layer, 160, np.random.default_rng(0))
    assert t.shape == (160, 4, 7)
    args = _tensors(layer, [Mapping(t[i], s[i], r[i]) for i in range(160)])
    assert bool(A.evaluate_accelerator(arch, *args).valid.all())
    if arch.mapper == "random-pruned":
        assert (t[:, 1, :2] == 3).all()  # R, S entirely at the accumulator level (NVDLA)
        # each factorisation repeats for min(16, k0! k1! k2! k3!) loop orders (the orders of
        # the loops that exist), Timeloop's visits per factorisation
        start = 0
        while start < len(t):
            loops = (t[start] > 1).sum(axis=1)
            run = min(16, int(np.prod([math.factorial(int(k)) for k in loops])))
            block = t[start:start + run]
            assert (block == block[:1]).all()
            if start + run < len(t):
                assert not (t[start + run] == t[start]).all()  # the next one is new
            start += run
    else:
        assert len({tuple(x.ravel()) for x in t}) > 100


def test_score_design_refuses_illegal_mappings_and_aggregates_as_the_original() -> None:
    arch = A.load_accelerator("nvdla_small")
    net = Network("two", (LAYER, Layer(name="fc", R=1, S=1, P=1, Q=1, C=64, K=64, N=1,
                                       count=3)))
    good = parse_mapping(WORKED["nvdla_small"][0])
    fc = parse_mapping("L3[WIO] C8 - L2[WI] K8 K8X - L1[O] N1 C8X - L0[W] N1")
    cycles, energy, edp = A.score_design(arch, net, [good, fc])
    assert cycles[0] == 1_806_336
    assert edp == pytest.approx((cycles[0] + 3 * cycles[1]) * (energy[0] + 3 * energy[1]))
    too_wide = parse_mapping("L3[WIO] Q7 - L2[WI] K8 C4 K8X - L1[O] S3 R3 C16X - L0[W] Q8 P56")
    with pytest.raises(MappingError, match="spatial C above the 8 PE rows"):
        A.score_design(arch, net, [too_wide, fc])
    split_r = parse_mapping("L3[WIO] Q7 R3 - L2[WI] K8 C8 K8X - L1[O] S3 C8X - L0[W] Q8 P56")
    with pytest.raises(MappingError, match="filter loop not entirely"):
        A.score_design(arch, net, [split_r, fc])
    with pytest.raises(ValueError, match="allowed: nvdla_small, nvdla_large, gemmini_default, "
                                         "eyeriss"):
        A.load_accelerator("eyeriss_like")


def test_best_network_design_is_deterministic_and_the_least_edp() -> None:
    arch = A.load_accelerator("nvdla_large")
    net = Network("one", (Layer(name="c", R=1, S=1, P=14, Q=14, C=256, K=64, N=1),))
    a = A.best_network_design(arch, net, 320, seed=5)
    b = A.best_network_design(arch, net, 320, seed=5)
    assert a.edp == b.edp and a.mappings == b.mappings
    t, s, r = A.random_mappings(arch, net.layers[0], 320, np.random.default_rng(5))
    out = A.evaluate_accelerator(arch, *_tensors(net.layers[0], [
        Mapping(t[i], s[i], r[i]) for i in range(320)]))
    assert a.edp == pytest.approx(float((out.cycles * out.energy_uj).min()), rel=1e-12)


def test_descriptions_and_mapper_arguments_are_validated() -> None:
    arch = A.load_accelerator("nvdla_small")
    with pytest.raises(ValueError, match="n must be"):
        A.random_mappings(arch, LAYER, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="n must be"):
        A.best_network_design(arch, Network("one", (LAYER,)), -5, seed=0)
    with pytest.raises(ValueError, match=r"accumulator has unknown field\(s\) \['depth'\]"):
        A._storage({"name": "Acc", "word_bits": 32, "block": 1, "depth": 4}, "accumulator", "x")
    with pytest.raises(ValueError, match="entries .* must be a multiple of its block"):
        A._storage({"name": "Acc", "word_bits": 32, "block": 16, "entries": 100}, "accumulator",
                   "x")
    with pytest.raises(ValueError, match="cluster .* must divide"):
        A._storage({"name": "R", "word_bits": 8, "block": 1, "entries": 1, "cluster": 3,
                    "instances": 64}, "registers", "x")


# fig8-architectures.md §5, eyeriss: the real tool's mapping (innermost first per level), and per
# (level, tensor) utilised instances, reads, fills, updates per instance and energy (pJ).
EYERISS_WORKED = {
    ("PsumRegFile", "O"): (168, 673792, 57344, 688128, 2.328199e8),
    ("WeightRegFile", "W"): (168, 688128, 12288, 0, 1.169308e8),
    ("InputRegFile", "I"): (168, 688128, 14848, 0, 1.152717e8),
    ("GlobalBuffer", "I"): (1, 2494464, 237568, 0, 2.023626e7),
    ("GlobalBuffer", "O"): (1, 602112, 200704, 802816, 1.189297e7),
    ("DRAM", "W"): (1, 147456, 0, 0, 2.94912e7),
    ("DRAM", "I"): (1, 237568, 0, 0, 4.75136e7),
    ("DRAM", "O"): (1, 0, 0, 200704, 4.01408e7),
}


def _eyeriss_worked_mapping() -> A.EyerissMapping:
    t = np.ones((6, 7), dtype=np.int64)
    s = np.ones((2, 7), dtype=np.int64)
    R, S, P, Q, C, K = range(6)
    t[A.PSUM_RF, K] = 16
    t[A.WEIGHT_RF, C], t[A.WEIGHT_RF, R] = 4, 3
    s[A.FAN_Y, S], s[A.FAN_Y, C] = 3, 4
    s[A.FAN_X, Q] = 14
    t[A.GLOBAL_BUFFER, P], t[A.GLOBAL_BUFFER, K] = 56, 4
    t[A.E_DRAM, C], t[A.E_DRAM, Q] = 4, 4
    return A.EyerissMapping.from_arrays(t, s)


def _eyeriss_tensors(layer: Layer, mappings: list[A.EyerissMapping]) -> tuple[torch.Tensor, ...]:
    n = len(mappings)
    return (torch.tensor([layer.dims] * n, dtype=F64), torch.tensor([layer.strides] * n, dtype=F64),
            torch.tensor([m.temporal for m in mappings], dtype=F64),
            torch.tensor([m.spatial for m in mappings], dtype=F64))


def test_eyeriss_worked_example_matches_the_real_tool() -> None:
    arch = A.load_accelerator("eyeriss")
    args = _eyeriss_tensors(LAYER, [_eyeriss_worked_mapping()])
    counts = A.eyeriss_counts(arch, *args)
    assert set(counts.rows) == set(EYERISS_WORKED)
    for key, (inst, reads, fills, updates, _) in EYERISS_WORKED.items():
        assert [float(x[0]) for x in counts.rows[key]] == [inst, reads, fills, updates], key
    out = A.evaluate_eyeriss(arch, *args)
    assert bool(out.valid[0])
    assert out.cycles.item() == 688_128
    assert out.energy_uj.item() == pytest.approx(868.6698, rel=1e-6)
    pj = dict(zip(A.EYERISS_ENERGY_COLUMNS, out.level_pj[0].tolist(), strict=True))
    assert pj["MACs"] == pytest.approx(2.543726e8, rel=1e-6)
    for level in ("PsumRegFile", "WeightRegFile", "InputRegFile", "GlobalBuffer", "DRAM"):
        want = sum(v[4] for (lv, _), v in EYERISS_WORKED.items() if lv == level)
        assert pj[level] == pytest.approx(want, rel=1e-6), level
    # the per-scalar energies of §5's table
    rf = [arch.levels[i].vector_pj for i in range(3)]
    assert rf == pytest.approx([0.9764447, 0.9937186, 0.9760521], abs=1e-7)
    assert arch.levels[A.GLOBAL_BUFFER].vector_pj / 4 == pytest.approx(7.407035, abs=1e-6)
    assert arch.levels[A.E_DRAM].vector_pj == 200.0


def test_eyeriss_bandwidth_bound_and_legality() -> None:
    """The GLB's 16 reads per cycle bind when the register files reuse nothing; mappings
    outside the mapspace or over a capacity are refused."""
    arch = A.load_accelerator("eyeriss")
    layer = Layer(name="pw", R=1, S=1, P=14, Q=16, C=16, K=16, N=1)
    t = np.ones((6, 7), dtype=np.int64)
    s = np.ones((2, 7), dtype=np.int64)
    t[A.GLOBAL_BUFFER, 2], t[A.E_DRAM, 5] = 14, 16  # P at the GLB, K at DRAM
    s[A.FAN_Y, 4], s[A.FAN_X, 3] = 16, 16  # C16 in Y, Q16 in X: 256 PEs
    out = A.evaluate_eyeriss(arch, *_eyeriss_tensors(layer, [A.EyerissMapping.from_arrays(t, s)]))
    assert bool(out.valid[0])
    macs = 14 * 16 * 16 * 16
    # every MAC reads a new input from the GLB (K at DRAM, no input reuse in the PE): 256
    # words per cycle against 16 (no output reads: each output is reduced once over C in Y)
    assert out.cycles.item() == macs / 16 == 16 * macs / 256
    net = Network("one", (LAYER,))
    bad = _eyeriss_worked_mapping()
    tt, ss = bad.arrays()
    tt[A.PSUM_RF, 5], tt[A.GLOBAL_BUFFER, 5] = 32, 2  # a PsumRegFile tile of 32 outputs
    with pytest.raises(MappingError, match="PsumRegFile tile above 16"):
        A.score_eyeriss_design(arch, net, [A.EyerissMapping.from_arrays(tt, ss)])
    tt, ss = bad.arrays()
    ss[A.FAN_Y, 1], ss[A.FAN_X, 1] = 1, 3  # S moved from the Y to the X fan-out
    with pytest.raises(MappingError, match="spatial loop outside the mapspace"):
        A.score_eyeriss_design(arch, net, [A.EyerissMapping.from_arrays(tt, ss)])


def test_eyeriss_random_mapper_draws_legal_mappings_of_the_mapspace() -> None:
    arch = A.load_accelerator("eyeriss")
    layer = Layer(name="c", R=3, S=3, P=28, Q=28, C=128, K=128, N=1)
    t, s = A.random_eyeriss_mappings(arch, layer, 200, np.random.default_rng(0))
    assert t.shape == (200, 6, 7) and s.shape == (200, 2, 7)
    maps = [A.EyerissMapping.from_arrays(t[i], s[i]) for i in range(200)]
    out = A.evaluate_eyeriss(arch, *_eyeriss_tensors(layer, maps))
    assert bool(out.valid.all())
    assert (s[:, A.FAN_Y, 1] == 3).all() and (t[:, A.WEIGHT_RF, 0] == 3).all()
    assert (t[:, A.GLOBAL_BUFFER, 2] == 28).all()
    # fixed loop orders: one mapping per factorisation, so nearly all distinct
    assert len(set(maps)) > 150
    design = A.best_network_design(arch, Network("one", (layer,)), 200, seed=0)
    assert design.edp == pytest.approx(float((out.cycles * out.energy_uj).min()), rel=1e-12)
