"""Mapping strings, validity checks, tile sizes and rounding of real-valued factor tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from layers import EXAMPLE, EXAMPLE_LAYER, SAMPLE_LAYERS

from dosa import data
from dosa.hardware import Hardware, hardware_from_arch_columns
from dosa.mapping import (
    ACC_ORDER,
    DRAM_ORDERS,
    L0_TEMPORAL_LEGAL,
    SPATIAL_LEGAL,
    Mapping,
    MappingError,
    divisors,
    nearest_divisor,
    order_to_rank,
    parse_mapping,
    rank_to_order,
    round_mapping,
    stack_mappings,
    tile_words,
)
from dosa.model import capacities
from dosa.workload import DIMS, Layer

C, K, N = DIMS.index("C"), DIMS.index("K"), DIMS.index("N")

LAYERS = SAMPLE_LAYERS


def _skip_without(key: str) -> None:
    if not data.available(key):
        pytest.skip(f"published DOSA file {key!r} not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")


def random_mapping(layer: Layer, rng: np.random.Generator, pe_dim: int = 16,
                   illegal_spatial: bool = False) -> Mapping:
    """A random perfect factorisation of ``layer`` over the legal slots, random loop orders.

    With ``illegal_spatial`` every dim may also get spatial factors at L1/L2 (not legal for
    Gemmini, but the capacity formulas still have to agree).
    """
    temporal = np.ones((4, 7), dtype=np.int64)
    spatial = np.ones((4, 7), dtype=np.int64)
    for d, size in enumerate(layer.dims):
        left = size
        slots: list[tuple[str, int]] = []
        if illegal_spatial:
            slots += [("s", 1), ("s", 2)]
        elif d == C:
            slots.append(("s", 1))
        elif d == K:
            slots.append(("s", 2))
        if d in L0_TEMPORAL_LEGAL:
            slots.append(("t", 0))
        slots += [("t", 1), ("t", 2)]
        for kind, j in slots:
            divs = [x for x in divisors(left) if kind == "t" or x <= pe_dim]
            f = int(rng.choice(divs))
            (spatial if kind == "s" else temporal)[j, d] = f
            left //= f
        temporal[3, d] = left
    rank = np.array([rng.permutation(7) for _ in range(4)])
    return Mapping(temporal, spatial, rank)


# ----------------------------------------------------------------------------------------------
# Parsing and formatting
# ----------------------------------------------------------------------------------------------
def test_worked_example_factor_tables() -> None:
    """Spec §3.3: the example string's spatial/temporal tables and loop orders."""
    m = parse_mapping(EXAMPLE)
    t = {lvl: dict(zip(DIMS, m.temporal[lvl].tolist(), strict=True)) for lvl in range(4)}
    s = {lvl: dict(zip(DIMS, m.spatial[lvl].tolist(), strict=True)) for lvl in range(4)}
    assert t[3] == {"R": 1, "S": 1, "P": 1, "Q": 7, "C": 1, "K": 8, "N": 1}
    assert t[2] == dict.fromkeys(DIMS, 1)
    assert t[1] == {"R": 1, "S": 1, "P": 56, "Q": 8, "C": 4, "K": 2, "N": 1}
    assert t[0] == dict.fromkeys(DIMS, 1)
    assert s[3] == s[0] == dict.fromkeys(DIMS, 1)
    assert s[2] == {**dict.fromkeys(DIMS, 1), "K": 4}
    assert s[1] == {**dict.fromkeys(DIMS, 1), "C": 16}
    # Written outermost first, so the innermost-first orders start with the last-written loop.
    # Spec keys: L3 Q=6, K=5 (K inner); L1 K=6, C=5, P=4, Q=3 (Q innermost).
    assert m.order(3).startswith("KQ")
    assert m.order(1).startswith("QPCK")
    assert m.temporal.dtype == np.int64
    np.testing.assert_array_equal(m.dims_product(), EXAMPLE_LAYER.dims)


def test_worked_example_round_trip() -> None:
    m = parse_mapping(EXAMPLE)
    assert m.to_string() == EXAMPLE
    assert str(m) == EXAMPLE
    assert parse_mapping(m.to_string()) == m
    assert hash(parse_mapping(EXAMPLE)) == hash(m)


def test_surrounding_whitespace_and_tensor_tags_are_tolerated() -> None:
    m = parse_mapping("  " + EXAMPLE.replace("L2[WI]", "L2[]") + "\n")
    assert m.to_string() == EXAMPLE


def test_order_rank_helpers() -> None:
    assert rank_to_order(order_to_rank(ACC_ORDER)) == ACC_ORDER
    for order in DRAM_ORDERS.values():
        assert rank_to_order(order_to_rank(order)) == order
    with pytest.raises(MappingError, match="permutation"):
        order_to_rank("PQNCRS")


def test_with_order_changes_the_string() -> None:
    m = parse_mapping(EXAMPLE).with_order(3, "QKRSPCN")
    assert m.to_string().startswith("L3[WIO] K8 Q7 - ")
    assert m.order(3) == "QKRSPCN"


@pytest.mark.data
def test_all_published_mapping_strings_round_trip() -> None:
    _skip_without("timeloop")
    strings = set(data.load_timeloop_dataset()["mapping.mapping"])
    assert len(strings) == 12913
    for key, loader in (("firesim_training", data.load_firesim_training),
                        ("firesim_test", data.load_firesim_test)):
        if data.available(key):
            strings |= set(loader()["mapping.mapping"])
    bad = [s for s in strings if parse_mapping(s).to_string() != s]
    assert not bad, f"{len(bad)} strings do not round-trip, e.g. {bad[:3]}"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (EXAMPLE.replace("L3[WIO]", "L5[WIO]"), "L5"),
        ("L2[WI] N1 K4X - L3[WIO] Q7 K8 - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1", "misplaced level"),
        (EXAMPLE.replace("L1[O]", "L0[O]"), "misplaced level"),
        (EXAMPLE.replace("Q7", "Z7"), "unknown dimension 'Z'"),
        (EXAMPLE.replace("Q7", "Q7a"), "malformed loop 'Q7a'"),
        (EXAMPLE.replace("Q7", "q7"), "malformed loop 'q7'"),
        (EXAMPLE.replace("Q7", "Q-7"), "malformed loop 'Q-7'"),
        (EXAMPLE.replace("Q7", "7Q"), "malformed loop '7Q'"),
        (EXAMPLE.replace("Q7", "Q0"), "Q0.*>= 1"),
        (EXAMPLE.replace("C16X", "C0X"), "C0X.*>= 1"),
        (" - ".join(EXAMPLE.split(" - ")[:3]), "3 levels"),
        (EXAMPLE + " - L0[W] N1", "5 levels"),
        (EXAMPLE.replace(" - ", "-"), "1 levels"),
        (EXAMPLE.replace("L2[WI] ", ""), "must start with 'L<j>"),
        (EXAMPLE.replace("K2 C4", "K2 C4 K3"), "temporal K given twice at L1"),
        (EXAMPLE.replace("L2[WI] N1", "L2[WI] N1 N1"), "temporal N given twice at L2"),
        (EXAMPLE.replace("C16X", "C16X C2X"), "spatial C given twice at L1"),
        ("", "non-empty"),
        ("   ", "non-empty"),
    ],
)
def test_bad_strings_raise_mapping_error(text: str, pattern: str) -> None:
    with pytest.raises(MappingError, match=pattern):
        parse_mapping(text)


def test_non_string_input() -> None:
    with pytest.raises(MappingError, match="non-empty str"):
        parse_mapping(None)  # type: ignore[arg-type]


def test_mapping_constructor_validation() -> None:
    m = parse_mapping(EXAMPLE)
    with pytest.raises(MappingError, match="shape"):
        Mapping(m.temporal[:3], m.spatial, m.rank)
    with pytest.raises(MappingError, match="integers"):
        Mapping(m.temporal + 0.5, m.spatial, m.rank)
    zero = m.temporal.copy()
    zero[2, K] = 0
    with pytest.raises(MappingError, match="K at L2"):
        Mapping(zero, m.spatial, m.rank)
    rank = m.rank.copy()
    rank[1, 0] = rank[1, 1]
    with pytest.raises(MappingError, match="rank of L1"):
        Mapping(m.temporal, m.spatial, rank)
    with pytest.raises(MappingError, match="4 loop orders"):
        Mapping.from_factors(m.temporal, m.spatial, orders=("RSPQCKN",) * 3)


# ----------------------------------------------------------------------------------------------
# check()
# ----------------------------------------------------------------------------------------------
def test_worked_example_is_valid_and_exactly_fits_its_min_hw() -> None:
    m = parse_mapping(EXAMPLE)
    m.check(EXAMPLE_LAYER)
    m.check(EXAMPLE_LAYER, Hardware(16, 28.5, 56))  # spec §4.9: exactly the min HW
    assert m.is_valid(EXAMPLE_LAYER, Hardware(16, 28.5, 56))
    assert not m.is_valid(EXAMPLE_LAYER, Hardware(16, 28.4, 56))
    assert not m.is_valid(EXAMPLE_LAYER, Hardware(16, 28.5, 55.9))
    assert not m.is_valid(EXAMPLE_LAYER, Hardware(8, 1024, 1024))


@pytest.mark.parametrize(
    ("layer", "pattern"),
    [
        (Layer("x", P=56, Q=56, C=64, K=128), r"K multiply to 64 .* K=128"),
        (Layer("x", P=28, Q=56, C=64, K=64), r"P multiply to 56 .* P=28"),
        (Layer("x", R=3, S=3, P=56, Q=56, C=64, K=64), r"R multiply to 1 .* R=3"),
        (Layer("x", P=56, Q=56, C=64, K=64, N=2), r"N multiply to 1 .* N=2"),
    ],
)
def test_check_factorisation_names_the_dim(layer: Layer, pattern: str) -> None:
    with pytest.raises(MappingError, match=pattern):
        parse_mapping(EXAMPLE).check(layer)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P14 Q8 C16X P4X - L0[W] N1",
         "P4X at L1 is not legal"),
        ("L3[WIO] Q7 K8 - L2[WI] N1 K4X C2X - L1[O] K2 C2 P56 Q8 C16X - L0[W] N1",
         "C2X at L2 is not legal"),
        ("L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1 K1X",
         None),  # factor-1 spatial words are harmless
        ("L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 P56 Q8 C16X - L0[W] C4",
         "temporal loop C4 at L0 is not legal"),
        ("L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] C4 P56 Q8 C16X - L0[W] K2",
         "temporal loop K2 at L0"),
    ],
)
def test_check_illegal_loops(text: str, pattern: str | None) -> None:
    m = parse_mapping(text)
    if pattern is None:
        m.check(EXAMPLE_LAYER)
        return
    with pytest.raises(MappingError, match=pattern):
        m.check(EXAMPLE_LAYER)


def test_l0_p_q_n_loops_are_legal() -> None:
    layer = Layer("x", P=56, Q=56, C=64, K=64, N=4)
    parse_mapping("L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P14 Q4 C16X - L0[W] N4 Q2 P4"
                  ).check(layer, Hardware(16, 1024, 1024))


def test_check_spatial_exceeds_pe_dim() -> None:
    m = parse_mapping(EXAMPLE)
    with pytest.raises(MappingError, match="spatial C=16 exceeds pe_dim=8"):
        m.check(EXAMPLE_LAYER, Hardware(8, 4096, 4096))
    m2 = parse_mapping("L3[WIO] Q7 K2 - L2[WI] N1 K16X - L1[O] K2 C16 P56 Q8 C4X - L0[W] N1")
    with pytest.raises(MappingError, match="spatial K=16 exceeds pe_dim=8"):
        m2.check(EXAMPLE_LAYER, Hardware(8, 4096, 4096))
    m2.check(EXAMPLE_LAYER, Hardware(16, 4096, 4096))


def test_check_tile_too_big() -> None:
    m = parse_mapping(EXAMPLE)
    # accumulator tile 896 words per bank; 16 banks x 4 B -> needs 56 KB
    with pytest.raises(MappingError, match="accumulator tile of 896 words exceeds the 512 words"):
        m.check(EXAMPLE_LAYER, Hardware(16, 1024, 32))
    # scratchpad tile 512 + 28672 words -> needs 28.5 KB
    with pytest.raises(MappingError, match="scratchpad tile of 29184 words exceeds the 28672"):
        m.check(EXAMPLE_LAYER, Hardware(16, 28, 1024))


@pytest.mark.data
def test_published_mappings_are_valid_on_their_hardware() -> None:
    """Timeloop's mapper only emits mappings that fit: check() must accept them (sampled)."""
    _skip_without("timeloop")
    df = data.load_timeloop_dataset().sample(n=3000, random_state=0)
    hw = hardware_from_arch_columns(df)
    for (_, row), (pe, sp, acc) in zip(df.iterrows(), hw, strict=True):
        layer = Layer("row", **{d: int(row[f"prob.{d}"]) for d in DIMS},
                      Wstride=int(row["prob.Wstride"]), Hstride=int(row["prob.Hstride"]))
        parse_mapping(row["mapping.mapping"]).check(layer, Hardware(int(pe), sp, acc))


# ----------------------------------------------------------------------------------------------
# tile_words vs the model's capacities
# ----------------------------------------------------------------------------------------------
def test_tile_words_worked_example() -> None:
    assert tile_words(parse_mapping(EXAMPLE), EXAMPLE_LAYER) == (896, 512 + 28672)


@pytest.mark.parametrize("illegal_spatial", [False, True])
def test_tile_words_agree_with_model_capacities(illegal_spatial: bool) -> None:
    rng = np.random.default_rng(1234)
    layers, mappings = [], []
    for _ in range(40):
        for layer in LAYERS:
            layers.append(layer)
            mappings.append(random_mapping(layer, rng, illegal_spatial=illegal_spatial))
    t, s, _ = stack_mappings(mappings)
    dims = torch.tensor([lay.dims for lay in layers], dtype=torch.float64)
    strides = torch.tensor([lay.strides for lay in layers], dtype=torch.float64)
    caps = capacities(dims, strides, t, s)
    expected = np.array([tile_words(m, lay) for m, lay in zip(mappings, layers, strict=True)])
    np.testing.assert_array_equal(caps["o1"].numpy(), expected[:, 0])
    np.testing.assert_array_equal((caps["w2"] + caps["i2"]).numpy(), expected[:, 1])
    assert len(set(expected[:, 1])) > 50  # the random mappings really differ


# ----------------------------------------------------------------------------------------------
# Rounding
# ----------------------------------------------------------------------------------------------
def _random_table(layer: Layer, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Real-valued factor tables like a GD iterate: log-uniform in [0.5, 2 * dim]."""
    dims = np.array(layer.dims, dtype=np.float64)
    hi = np.log(2 * dims)
    temporal = np.exp(rng.uniform(np.log(0.5), hi, size=(4, 7)))
    spatial = np.exp(rng.uniform(np.log(0.5), hi, size=(4, 7)))
    return temporal, spatial


@pytest.mark.parametrize("round_down", [False, True])
@pytest.mark.parametrize("max_spatial", [None, 4, 16])
def test_round_mapping_gives_valid_mappings(round_down: bool, max_spatial: int | None) -> None:
    rng = np.random.default_rng(7 + (max_spatial or 0) + 100 * round_down)
    for layer in LAYERS:
        for _ in range(25):
            temporal, spatial = _random_table(layer, rng)
            rank = np.array([rng.permutation(7) for _ in range(4)])
            m = round_mapping(temporal, spatial, rank, layer, round_down=round_down,
                              max_spatial=max_spatial)
            # a huge hardware: this checks the spatial bound, not the buffer sizes
            m.check(layer, None if max_spatial is None else Hardware(max_spatial, 1e9, 1e9))
            np.testing.assert_array_equal(m.rank, rank)
            # only the legal coordinates are ever non-1
            for j in range(4):
                for d in range(7):
                    if (j, d) not in SPATIAL_LEGAL:
                        assert m.spatial[j, d] == 1
                    if j == 0 and d not in L0_TEMPORAL_LEGAL:
                        assert m.temporal[j, d] == 1
            # DRAM absorbs exactly the remainder
            lower = (m.temporal[:3] * m.spatial[:3]).prod(axis=0)
            np.testing.assert_array_equal(m.temporal[3] * lower, layer.dims)
            if round_down:
                legal = [(j, d) for j in range(3) for d in range(7)
                         if j > 0 or d in L0_TEMPORAL_LEGAL]
                for j, d in legal:
                    assert m.temporal[j, d] <= max(1.0, temporal[j, d])
                for j, d in SPATIAL_LEGAL:
                    assert m.spatial[j, d] <= max(1.0, spatial[j, d])


def test_round_mapping_integral_divisor_tables_are_kept() -> None:
    m = parse_mapping(EXAMPLE)
    noisy_t = m.temporal.astype(np.float64) + np.where(m.temporal > 1, 0.3, -0.4)
    noisy_s = m.spatial.astype(np.float64) - 0.2
    assert round_mapping(noisy_t, noisy_s, m.rank, EXAMPLE_LAYER).to_string() == EXAMPLE
    exact = round_mapping(m.temporal, m.spatial, m.rank, EXAMPLE_LAYER, round_down=True)
    assert exact.to_string() == EXAMPLE


def test_round_mapping_dram_absorbs_remainder() -> None:
    layer = Layer("odd", R=3, S=3, P=21, Q=15, C=3, K=7)
    temporal = np.ones((4, 7))
    spatial = np.ones((4, 7))
    temporal[1, DIMS.index("P")] = 6.4  # divisors of 21: 1, 3, 7, 21 -> 7
    temporal[1, DIMS.index("Q")] = 4.0  # divisors of 15: 1, 3, 5, 15 -> 5 (nearest)
    temporal[3] = 123.0  # DRAM values are ignored
    spatial[2, K] = 3.0  # divisors of 7: 1, 7 -> 1 (3 is nearer 1 than 7)
    m = round_mapping(temporal, spatial, np.tile(np.arange(7), (4, 1)), layer)
    assert m.temporal[1, DIMS.index("P")] == 7 and m.temporal[3, DIMS.index("P")] == 3
    assert m.temporal[1, DIMS.index("Q")] == 5 and m.temporal[3, DIMS.index("Q")] == 3
    assert m.spatial[2, K] == 1 and m.temporal[3, K] == 7
    np.testing.assert_array_equal(m.temporal[3, [0, 1, 4, 6]], [3, 3, 3, 1])
    down = round_mapping(temporal, spatial, np.tile(np.arange(7), (4, 1)), layer,
                         round_down=True)
    assert down.temporal[1, DIMS.index("P")] == 3 and down.temporal[3, DIMS.index("P")] == 7
    assert down.temporal[1, DIMS.index("Q")] == 3 and down.temporal[3, DIMS.index("Q")] == 5


def test_round_mapping_max_spatial() -> None:
    layer = Layer("x", C=21, K=48)
    temporal = np.ones((4, 7))
    spatial = np.ones((4, 7))
    spatial[1, C] = 30.0
    spatial[2, K] = 30.0
    m = round_mapping(temporal, spatial, np.tile(np.arange(7), (4, 1)), layer, max_spatial=5)
    # C: min(30, 5) = 5 -> nearest divisor of 21 is 7 (tie 3/7 goes up) > 5 -> round down to 3
    assert m.spatial[1, C] == 3
    assert m.spatial[2, K] == 4  # divisors of 48 near 5: 4 and 6 tie -> 6 > 5 -> 4
    unbounded = round_mapping(temporal, spatial, np.tile(np.arange(7), (4, 1)), layer)
    assert unbounded.spatial[1, C] == 21 and unbounded.spatial[2, K] == 24


def test_round_mapping_rejects_non_finite() -> None:
    temporal = np.ones((4, 7))
    temporal[1, 2] = np.nan
    with pytest.raises(MappingError, match="non-finite"):
        round_mapping(temporal, np.ones((4, 7)), np.tile(np.arange(7), (4, 1)), EXAMPLE_LAYER)


@pytest.mark.parametrize(
    ("value", "n", "round_down", "expected"),
    [
        (0.2, 12, False, 1),
        (-5.0, 12, False, 1),
        (1.0, 1, False, 1),
        (100.0, 1, False, 1),
        (100.0, 12, False, 12),
        (5.0, 12, False, 6),  # tie between 4 and 6 goes up
        (4.9, 12, False, 4),
        (5.1, 12, False, 6),
        (4.0, 7, False, 7),  # prime: tie between 1 and 7 goes up
        (3.9, 7, False, 1),
        (12.0, 12, False, 12),
        (5.0, 12, True, 4),
        (5.999, 12, True, 4),
        (6.0, 12, True, 6),
        (0.5, 12, True, 1),
        (1e9, 12, True, 12),
        (6.9, 7, True, 1),
        (7.0, 7, True, 7),
    ],
)
def test_nearest_divisor(value: float, n: int, round_down: bool, expected: int) -> None:
    assert nearest_divisor(value, n, round_down=round_down) == expected


def test_divisors() -> None:
    assert divisors(1) == (1,)
    assert divisors(7) == (1, 7)
    assert divisors(36) == (1, 2, 3, 4, 6, 9, 12, 18, 36)
    assert divisors(3072) == tuple(d for d in range(1, 3073) if 3072 % d == 0)


def test_stack_mappings_shapes_and_dtypes() -> None:
    ms = [parse_mapping(EXAMPLE), random_mapping(LAYERS[1], np.random.default_rng(0))]
    t, s, r = stack_mappings(ms)
    assert t.shape == s.shape == r.shape == (2, 4, 7)
    assert t.dtype == s.dtype == torch.float64 and r.dtype == torch.int64
    np.testing.assert_array_equal(t[1].numpy(), ms[1].temporal)
    assert pd.Series(r[0, 1].numpy()).is_unique


def test_canonical_equals_the_string_round_trip() -> None:
    rng = np.random.default_rng(0)
    m = parse_mapping("L3[WIO] Q7 C4 K2 - L2[WI] N1 - L1[O] P8 K16 C16X - L0[W] N1 K16X")
    for _ in range(20):
        rank = np.array([rng.permutation(7) for _ in range(4)])
        shuffled = Mapping(m.temporal, m.spatial, rank)
        canon = shuffled.canonical()
        assert np.array_equal(canon.rank, parse_mapping(shuffled.to_string()).rank)
        assert canon.to_string() == shuffled.to_string()
