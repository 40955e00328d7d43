"""Paper Fig. 8: hand-tuned accelerators scored exactly as the pinned Timeloop scores them.

Gemmini default, NVDLA small and NVDLA large share Gemmini's topology - weights in the PE
registers, outputs in one accumulator per PE column, inputs and weights in one buffer, spatial C
across the rows and K across the columns - so their access counts are those of the one model,
:func:`dosa.model.actions`. What differs is data, one package file per accelerator
(``dosa/architectures/<name>.yaml``): sizes, word widths, vector blocks, clusters, bandwidths,
MAC energy, the mapspace of the original's mapper and the paper's Fig. 8 values. The accounting
on top of the counts is Timeloop's (fig8-architectures.md §5):

* energy per level = utilised clusters x sum over (tensor, action) of ceil(accesses per
  instance / block) x E_vector / cluster size, with E_vector from Timeloop's built-in "pat"
  model (:func:`dosa.hardware.sram_energy_per_word` for SRAMs, 200 pJ per 16 bits of DRAM) for
  a vector of ``word_bits x block x cluster`` bits; utilised clusters = min(utilised
  instances, instances / cluster size). For Gemmini-TL this reduces to :mod:`dosa.model`'s
  rule 7 (a test checks the Gemmini default against it);
* latency = the largest of the compute cycles and each bandwidth-limited level's bound in
  Timeloop's float arithmetic (:mod:`dosa.model` rule 6); a level without bandwidth never binds.

Eyeriss-256 (row stationary, ``dosa/architectures/eyeriss.yaml``, fig8-architectures.md §1) has
its own topology and model (:func:`eyeriss_counts`, :func:`evaluate_eyeriss`): PsumRegFile (O),
WeightRegFile (W), InputRegFile (I) per PE, a DummyBuffer that keeps nothing, the GlobalBuffer
(I, O; block 4) and DRAM; spatial Y (S whole, C, K) below the DummyBuffers and X (Q, K) below
the GlobalBuffer. Per PE and level: tiles are the loops at and below the level; a tile is
refetched as in :mod:`dosa.model` rule 3 over the temporal loops above it (fixed mapspace
orders); input fills use rule 4's delta analysis per PE (InputRegFile, over GLB and DRAM loops)
and per GlobalBuffer (over DRAM loops). Modelled exactly as on the real tool's worked example
(every count, cycles, energy to 1e-10):

* multicast only by exact equality: a parent read serves the children that differ only in
  spatial dims irrelevant to the tensor (inputs: K in X or Y; weights: Q in X). Children whose
  data merely overlap - the row-stationary diagonals (Q in X, S in Y) - are charged separately;
* spatial reduction of outputs over the output-irrelevant spatial dims (S, C in Y): GLB updates
  = PsumRegFile fills x PEs / (S_y C_y); the first read of each output is elided (GLB and DRAM
  reads = child fills/updates - P*Q*K*N; PsumRegFile reads = updates - its distinct outputs);
* latency: compute cycles and separate read/write bounds (RFs 2/2 per PE, GLB 16/16) in
  Timeloop's float arithmetic; DRAM unlimited;
* energies: pat's per-word energies (RFs, GLB by vector of 4, DRAM 200 pJ per 16-bit word).

Left out: Timeloop's neighbour link transfers (gEnableLinkTransfers; 0 on the worked example,
not checked elsewhere) and the network/wire energy (0.10 uJ of 868.77 on the worked example;
the reference 868.6698 excludes it). The random-pruned mapper visits one loop order per
factorisation because the Eyeriss mapspace fixes every level's order
(:attr:`Eyeriss.permutations_to_visit`).

The random mapper (:func:`random_mappings`) draws legal mappings of an accelerator's mapspace
as the original's Timeloop mapper does: factorisations uniform per dim over the ordered
factorisations of each dim over its legal slots, random loop orders where the mapspace leaves
them free, rejection of those that overflow a buffer, and for ``random-pruned`` (NVDLA, Eyeriss)
min(16, the number of distinct loop orders) orders per factorisation;
:func:`best_network_design` keeps, per layer, the least-EDP mapping of ``n`` valid ones and
aggregates the network as the original (EDP = sum count x cycles x sum count x energy).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch
import yaml

from dosa.evaluation import layer_tensors
from dosa.hardware import sram_energy_per_word
from dosa.mapping import NUM_DIMS, NUM_LEVELS, Mapping, MappingError, order_to_rank
from dosa.model import (
    _REL_I,
    _REL_O,
    _REL_W,
    Actions,
    _exact,
    _level_cycles,
    actions,
    box_fills,
    capacities,
    g,
    refill_multiplier,
)
from dosa.search.options import check_seed, positive_int
from dosa.search.sampler import factor_table
from dosa.workload import DIMS, Layer, Network

log = logging.getLogger(__name__)

R, S, P, Q, C, K, N = range(NUM_DIMS)
#: The accelerators of Gemmini's topology, in the order of the paper's bars (Eyeriss, its own
#: topology, is ``EYERISS``).
ACCELERATORS: tuple[str, ...] = ("nvdla_small", "nvdla_large", "gemmini_default")
LEVELS = ("registers", "accumulator", "buffer", "dram")
#: Columns of ``level_pj`` for the Gemmini topology (the buffer is the scratchpad or CBuf).
ENERGY_COLUMNS = ("MACs", "registers", "accumulator", "buffer", "DRAM")


@dataclass(frozen=True)
class Storage:
    """One storage level as Timeloop reads it (entries and block in words)."""

    name: str
    word_bits: int
    block: int
    instances: int = 1
    entries: int | None = None  # words per instance; None = unbounded (DRAM)
    cluster: int = 1
    bandwidth: float | None = None  # shared words/cycle per instance; None = unlimited
    read_bandwidth: float | None = None  # separate read / write limits (Eyeriss); None = none
    write_bandwidth: float | None = None

    @property
    def vector_pj(self) -> float:
        """pat's energy of one vector access (``block`` words, whole cluster)."""
        width = self.word_bits * self.block * self.cluster
        if self.entries is None:  # pat DRAM: 200 pJ per 16 bits
            return 200.0 * width / 16
        size_kb = width * (self.entries / self.block) / 8192
        return sram_energy_per_word(size_kb, width)

    def energy_pj(self, per_instance: list[torch.Tensor], utilized: torch.Tensor) -> torch.Tensor:
        """Energy of this level for per-instance action counts on ``utilized`` instances."""
        clusters = torch.clamp(utilized, max=self.instances // self.cluster)
        vectors = sum(_exact(n / self.block, torch.ceil(n / self.block)) for n in per_instance)
        return clusters * vectors * (self.vector_pj / self.cluster)


@dataclass(frozen=True)
class Accelerator:
    """A hand-tuned accelerator of Gemmini's topology (one ``dosa/architectures`` file)."""

    name: str
    label: str
    technology: str
    mac_pj: float
    pe_rows: int  # largest spatial C
    pe_cols: int  # largest spatial K
    registers: Storage
    accumulator: Storage
    buffer: Storage
    dram: Storage
    register_loops: tuple[int, ...]
    accumulator_loops: tuple[int, ...]
    accumulator_full: tuple[int, ...]
    accumulator_order: str | None
    buffer_loops: tuple[int, ...]
    mapper: str  # "random" or "random-pruned"
    permutations_per_factorization: int  # random-pruned: loop orders tried per factorisation
    paper_edp: dict[str, float]
    timeloop_reference: dict[str, float]  # the real tool's own mapper results (fig8 doc §5)

    def storage(self) -> tuple[Storage, Storage, Storage, Storage]:
        return (self.registers, self.accumulator, self.buffer, self.dram)


def _dims(names: list[str], field: str, name: str) -> tuple[int, ...]:
    bad = [d for d in names if d not in DIMS]
    if bad:
        raise ValueError(f"architecture {name}: {field} has unknown dims {bad}; allowed "
                         f"{', '.join(DIMS)}")
    return tuple(DIMS.index(d) for d in names)


MAPPERS = ("random", "random-pruned")


def _storage(raw: dict[str, Any], level: str, name: str) -> Storage:
    fields = {f.name for f in dataclasses.fields(Storage)}
    unknown = set(raw) - fields
    if unknown:
        raise ValueError(f"architecture {name}: {level} has unknown field(s) {sorted(unknown)}; "
                         f"allowed {sorted(fields)}")
    store = Storage(**raw)
    ints = {"word_bits": store.word_bits, "block": store.block, "cluster": store.cluster,
            "instances": store.instances, **({} if store.entries is None
                                             else {"entries": store.entries})}
    for field, value in ints.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"architecture {name}: {level}.{field} must be an integer >= 1, "
                             f"got {value!r}")
    if store.entries is not None and store.entries % store.block:
        raise ValueError(f"architecture {name}: {level}.entries ({store.entries}) must be a "
                         f"multiple of its block ({store.block})")
    if store.instances % store.cluster:
        raise ValueError(f"architecture {name}: {level}.cluster ({store.cluster}) must divide "
                         f"its instances ({store.instances})")
    for field in ("bandwidth", "read_bandwidth", "write_bandwidth"):
        value = getattr(store, field)
        if value is not None and not value > 0:
            raise ValueError(f"architecture {name}: {level}.{field} must be > 0 or absent "
                             f"(unlimited), got {value!r}")
    return store


@cache
def load_accelerator(name: str) -> Accelerator | Eyeriss:
    """The accelerator described by the package file ``dosa/architectures/<name>.yaml``."""
    if name == EYERISS:
        return load_eyeriss()
    if name not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {name!r}; allowed: "
                         f"{', '.join((*ACCELERATORS, EYERISS))}")
    raw: dict[str, Any] = yaml.safe_load(
        resources.files("dosa").joinpath(f"architectures/{name}.yaml").read_text())
    space = raw["mapspace"]
    if raw["mapper"]["algorithm"] not in MAPPERS:
        raise ValueError(f"architecture {name}: mapper.algorithm must be one of {MAPPERS}, got "
                         f"{raw['mapper']['algorithm']!r}")
    return Accelerator(
        name=raw["name"], label=raw["label"], technology=raw["technology"],
        mac_pj=float(raw["mac_pj"]), pe_rows=int(raw["pe_rows"]), pe_cols=int(raw["pe_cols"]),
        **{level: _storage(raw[level], level, name) for level in LEVELS},
        register_loops=_dims(space["register_loops"], "register_loops", name),
        accumulator_loops=_dims(space["accumulator_loops"], "accumulator_loops", name),
        accumulator_full=_dims(space["accumulator_full"], "accumulator_full", name),
        accumulator_order=space["accumulator_order"],
        buffer_loops=_dims(space["buffer_loops"], "buffer_loops", name),
        mapper=raw["mapper"]["algorithm"],
        permutations_per_factorization=int(raw["mapper"].get("permutations_per_factorization", 1)),
        paper_edp={k: float(v) for k, v in raw["paper_edp"].items()},
        timeloop_reference={k: float(v) for k, v in raw["timeloop_reference"].items()})


# ----------------------------------------------------------------------------------------------
# Exact scoring
# ----------------------------------------------------------------------------------------------
@dataclass
class AcceleratorOutput:
    """Per-row results of :func:`evaluate_accelerator` (all [B] unless noted)."""

    cycles: torch.Tensor
    energy_uj: torch.Tensor
    level_pj: torch.Tensor  # [B, levels]: ENERGY_COLUMNS (EYERISS_ENERGY_COLUMNS on Eyeriss)
    valid: torch.Tensor  # bool: legal in the mapspace and fits every buffer


def _level_counts(act: Actions) -> dict[str, tuple[list[torch.Tensor], torch.Tensor]]:
    """Per level: per-instance counts of each (tensor, action) and the utilised instances."""
    pes = act.csp * act.ksp
    one = torch.ones_like(act.mac)
    return {
        "registers": ([act.mac / pes, act.w_w0 / pes], pes),
        "accumulator": ([(act.mac / act.csp - act.out) / act.ksp, act.w_o1 / act.ksp,
                         act.mac / act.csp / act.ksp], act.ksp),
        "buffer": ([act.w_w0, act.w_w2, act.mac / act.ksp, act.w_i2], one),
        "dram": ([act.w_w2, act.w_i2, act.w_o1 - act.out, act.w_o1], one),
    }


def legality(arch: Accelerator, dims: torch.Tensor, strides: torch.Tensor,
             temporal: torch.Tensor, spatial: torch.Tensor) -> list[tuple[torch.Tensor, str]]:
    """(bad mask [B], reason) pairs: which dims may loop or fan out at each level (the
    accelerator's dataflow), the PE array, perfect factorisation and the buffer capacities.

    Loop orders are free: a fixed order in the mapspace file (Gemmini's accumulator) is how the
    original's mapper searches, not a property of the hardware (the real tool's worked example
    of the Gemmini default uses another order).
    """
    allowed_t = torch.zeros(NUM_LEVELS, NUM_DIMS, dtype=torch.bool)
    allowed_t[0, list(arch.register_loops)] = True
    allowed_t[1, list(arch.accumulator_loops + arch.accumulator_full)] = True
    allowed_t[2, list(arch.buffer_loops)] = True
    allowed_t[3] = True
    allowed_s = torch.zeros(NUM_LEVELS, NUM_DIMS, dtype=torch.bool)
    allowed_s[1, C] = allowed_s[2, K] = True
    caps = capacities(dims, strides, temporal, spatial)
    full = list(arch.accumulator_full)
    rules = [
        (((temporal > 1) & ~allowed_t).any(dim=(1, 2)),
         "a temporal loop outside the mapspace (registers "
         + "".join(DIMS[d] for d in arch.register_loops) + ", accumulator "
         + "".join(DIMS[d] for d in arch.accumulator_loops + arch.accumulator_full)
         + ", buffer " + "".join(DIMS[d] for d in arch.buffer_loops) + ")"),
        (((spatial > 1) & ~allowed_s).any(dim=(1, 2)), "a spatial loop other than C at L1 and "
                                                       "K at L2"),
        (spatial[:, 1, C] > arch.pe_rows, f"spatial C above the {arch.pe_rows} PE rows"),
        (spatial[:, 2, K] > arch.pe_cols, f"spatial K above the {arch.pe_cols} PE columns"),
        ((temporal.prod(dim=1) * spatial.prod(dim=1) != dims).any(dim=1),
         "factors that do not multiply to the layer"),
        (caps["o1"] > arch.accumulator.entries,
         f"an accumulator tile above {arch.accumulator.entries} words"),
        (caps["w2"] + caps["i2"] > arch.buffer.entries,
         f"a {arch.buffer.name} tile above {arch.buffer.entries} words"),
    ]
    if full:
        rules.append(((temporal[:, 1, full] != dims[:, full]).any(dim=1),
                      "a filter loop not entirely at the accumulator level"))
    return rules


def evaluate_accelerator(arch: Accelerator, dims: torch.Tensor, strides: torch.Tensor,
                         temporal: torch.Tensor, spatial: torch.Tensor, rank: torch.Tensor
                         ) -> AcceleratorOutput:
    """Cycles, energy and per-level energy of a batch on ``arch`` (model tensors as
    :func:`dosa.model.evaluate`); rows outside the mapspace are marked in ``valid``."""
    act = actions(dims, strides, temporal, spatial, rank)
    counts = _level_counts(act)
    level_pj = [act.mac * arch.mac_pj]
    level_pj += [store.energy_pj(*counts[level]) for level, store in zip(
        LEVELS, arch.storage(), strict=True)]
    compute = act.mac / (act.csp * act.ksp)
    bounds = [compute]
    acc_reads, acc_fills, acc_updates = counts["accumulator"][0]
    reads_writes = {"accumulator": ([acc_reads], [acc_updates + acc_fills]),  # per tensor
                    "buffer": ([act.w_w0, act.mac / act.ksp], [act.w_w2, act.w_i2]),
                    "dram": ([act.w_w2, act.w_i2, act.w_o1 - act.out], [act.w_o1])}
    for level, (reads, writes) in reads_writes.items():
        bandwidth = getattr(arch, level).bandwidth
        if bandwidth is not None:
            bounds.append(_level_cycles(compute, reads, writes, bandwidth))
    bad = torch.zeros_like(compute, dtype=torch.bool)
    for mask, _ in legality(arch, dims, strides, temporal, spatial):
        bad |= mask
    pj = torch.stack(level_pj, dim=-1)
    return AcceleratorOutput(cycles=torch.stack(bounds, dim=-1).amax(dim=-1),
                             energy_uj=pj.sum(dim=-1) * 1e-6, level_pj=pj, valid=~bad)


def score_design(arch: Accelerator | Eyeriss, network: Network, mappings: list[Any]
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(cycles [L], energy µJ [L], network EDP µJ x cycles) of one mapping per layer
    (:class:`Mapping`, or :class:`EyerissMapping` on Eyeriss).

    Raises MappingError naming the first layer whose mapping is not legal on ``arch``.
    """
    if isinstance(arch, Eyeriss):
        return score_eyeriss_design(arch, network, mappings)
    if len(mappings) != len(network.layers):
        raise ValueError(f"{len(mappings)} mappings for {len(network.layers)} layers")
    dims, strides = layer_tensors(network.layers)
    t, s, r = (torch.from_numpy(np.stack([getattr(m, f) for m in mappings]).astype(
        np.int64 if f == "rank" else np.float64)) for f in ("temporal", "spatial", "rank"))
    with torch.no_grad():
        _refuse_illegal(legality(arch, dims, strides, t, s), arch.label, network, mappings)
        out = evaluate_accelerator(arch, dims, strides, t, s, r)
    cycles, energy = out.cycles.numpy(), out.energy_uj.numpy()
    return cycles, energy, network_edp(network, cycles, energy)


def _refuse_illegal(rules: list[tuple[torch.Tensor, str]], label: str, network: Network,
                    mappings: list[Any]) -> None:
    """MappingError naming the first layer whose mapping breaks a rule."""
    for mask, reason in rules:
        if mask.any():
            i = int(torch.nonzero(mask)[0])
            raise MappingError(f"{label}: layer {network.layers[i].name!r} mapping "
                               f"{mappings[i]} has {reason}")


def network_edp(network: Network, cycles: np.ndarray, energy: np.ndarray) -> float:
    """The original's aggregation: (sum count x cycles) x (sum count x energy), µJ x cycles."""
    counts = network.counts_array()
    return float((counts * cycles).sum() * (counts * energy).sum())


# ----------------------------------------------------------------------------------------------
# The original's mapper: random valid mappings, least EDP per layer
# ----------------------------------------------------------------------------------------------
def _slots(arch: Accelerator, d: int) -> list[tuple[int, int]]:
    """(block: 0 temporal / 1 spatial, level) of the factors of dim ``d`` below DRAM."""
    out = [(0, 0)] if d in arch.register_loops else []
    out += [(1, 1)] if d == C else []
    out += [(0, 1)] if d in arch.accumulator_loops else []
    out += [(1, 2)] if d == K else []
    out += [(0, 2)] if d in arch.buffer_loops else []
    return out


def _draw_factors(arch: Accelerator, layer: Layer, n: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` index factorisations, uniform per dim over the ordered factorisations of the dim
    over its legal slots (DRAM takes the quotient), as Timeloop's IndexFactorization space."""
    temporal = np.ones((n, NUM_LEVELS, NUM_DIMS), dtype=np.int64)
    spatial = np.ones_like(temporal)
    blocks = (temporal, spatial)
    for d, size in enumerate(layer.dims):
        if d in arch.accumulator_full:
            temporal[:, 1, d] = size
            continue
        slots = _slots(arch, d)
        table = factor_table(size, len(slots))
        if d == C:
            table = table[table[:, slots.index((1, 1))] <= arch.pe_rows]
        if d == K:
            table = table[table[:, slots.index((1, 2))] <= arch.pe_cols]
        rows = table[rng.integers(len(table), size=n)]
        for i, (block, level) in enumerate(slots):
            blocks[block][:, level, d] = rows[:, i]
        temporal[:, 3, d] = size // rows.prod(axis=1)
    return temporal, spatial


def _draw_ranks(arch: Accelerator, n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform random loop orders per level (the accumulator's may be fixed by the mapspace);
    uniform over all orders is uniform over the relative orders of the loops that exist."""
    identity = np.broadcast_to(np.arange(NUM_DIMS), (n, NUM_DIMS))
    rank = np.stack([rng.permuted(identity, axis=1) for _ in range(NUM_LEVELS)], axis=1)
    if arch.accumulator_order is not None:
        rank[:, 1] = order_to_rank(arch.accumulator_order)
    return rank


def random_mappings(arch: Accelerator, layer: Layer, n: int, rng: np.random.Generator,
                    max_rounds: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` valid mappings of ``layer`` as the original's Timeloop mapper draws them.

    ``random``: every mapping an independent factorisation and loop order. ``random-pruned``
    (Timeloop's default of 16 loop orders per visit): each valid factorisation is visited with
    min(``permutations_per_factorization``, its pruned order space) random loop orders (drawn
    with replacement), so ``n`` mappings cover far fewer than ``n`` factorisations; one that
    overflows a buffer is skipped after one try (its capacity does not depend on the loop
    order). Raises ValueError if too few valid factorisations turn up in ``max_rounds`` rounds.
    """
    positive_int("n", n)
    positive_int("max_rounds", max_rounds)
    per = arch.permutations_per_factorization if arch.mapper == "random-pruned" else 1
    dims, strides = layer_tensors([layer])

    def rules(t: np.ndarray, s: np.ndarray) -> list[tuple[torch.Tensor, str]]:
        return legality(arch, dims.expand(len(t), -1), strides.expand(len(t), -1),
                        torch.from_numpy(t.astype(np.float64)),
                        torch.from_numpy(s.astype(np.float64)))

    temporal, spatial = _valid_factorisations(
        arch.label, layer, n, per, lambda b: _draw_factors(arch, layer, b, rng), rules,
        lambda t: _orders_to_visit(arch, t, per), max_rounds)
    return temporal, spatial, _draw_ranks(arch, n, rng)


def _valid_factorisations(
        label: str, layer: Layer, n: int, per: int,
        draw: Callable[[int], tuple[np.ndarray, np.ndarray]],
        rules: Callable[[np.ndarray, np.ndarray], list[tuple[torch.Tensor, str]]],
        visits: Callable[[np.ndarray], np.ndarray], max_rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling shared by both topologies: draw factorisations (temporal, spatial)
    in rounds sized by the acceptance seen so far, keep those no rule refuses, each standing
    for ``visits`` mappings (its loop orders), until ``n`` mappings; ``per`` bounds visits."""
    found: list[tuple[np.ndarray, np.ndarray]] = []
    have = drawn = 0  # mappings covered by the accepted factorisations, factorisations drawn
    for _ in range(max_rounds):
        rate = (have + 1) / (drawn + 2)  # mappings gained per factorisation drawn
        batch = int(min(200_000, max(math.ceil(n / per), math.ceil(1.2 * (n - have) / rate))))
        t, s = draw(batch)
        with torch.no_grad():
            ok = torch.ones(batch, dtype=torch.bool)
            for mask, _ in rules(t, s):
                ok &= ~mask
        idx = np.flatnonzero(ok.numpy())
        drawn += batch
        v = visits(t[idx])
        keep = int(np.searchsorted(np.cumsum(v), n - have)) + 1
        found.append((np.repeat(t[idx[:keep]], v[:keep], axis=0),
                      np.repeat(s[idx[:keep]], v[:keep], axis=0)))
        have += int(v[:keep].sum())
        if have >= n:
            temporal, spatial = (np.concatenate(x)[:n] for x in zip(*found, strict=True))
            return temporal, spatial
    raise ValueError(f"{label}: only {have} of {n} random mappings of layer {layer.name!r} "
                     f"are valid after {drawn} factorisations")


def _orders_to_visit(arch: Accelerator, temporal: np.ndarray, per: int) -> np.ndarray:
    """Loop orders random-pruned visits per factorisation: min(``per``, size of the pruned
    permutation space) = min(per, prod over the levels of free order of k! for the k loops
    that exist there) (Timeloop's random-pruned.hpp)."""
    free = [lv for lv in range(NUM_LEVELS) if not (lv == 1 and arch.accumulator_order)]
    loops = (temporal[:, free] > 1).sum(axis=2)
    size = np.prod([[math.factorial(int(k)) for k in row] for row in loops], axis=1)
    return np.minimum(size, per).astype(np.int64) if len(temporal) else np.zeros(0, np.int64)


@dataclass
class NetworkDesign:
    """The original's Fig. 8 design of one network on one accelerator."""

    accelerator: str
    network: str
    mappings: list[Mapping]
    cycles: np.ndarray  # per unique layer
    energy_uj: np.ndarray
    level_pj: np.ndarray  # [L, len(level_names)]
    level_names: tuple[str, ...]  # ENERGY_COLUMNS or EYERISS_ENERGY_COLUMNS
    edp: float  # (sum count x cycles) x (sum count x energy), µJ x cycles


def best_network_design(arch: Accelerator | Eyeriss, network: Network, n: int, seed: int
                        ) -> NetworkDesign:
    """Per layer the least-EDP of ``n`` valid random mappings (the original's choice)."""
    positive_int("n", n)
    rng = np.random.default_rng(check_seed(seed))
    eyeriss = isinstance(arch, Eyeriss)
    best: list[tuple[Any, float, float, np.ndarray]] = []
    for layer in network.layers:
        dims, strides = layer_tensors([layer])
        if eyeriss:
            t, s = random_eyeriss_mappings(arch, layer, n, rng)
        else:
            t, s, r = random_mappings(arch, layer, n, rng)
        args = (dims.expand(n, -1), strides.expand(n, -1),
                torch.from_numpy(t.astype(np.float64)), torch.from_numpy(s.astype(np.float64)))
        with torch.no_grad():
            out = (evaluate_eyeriss(arch, *args) if eyeriss
                   else evaluate_accelerator(arch, *args, torch.from_numpy(r)))
        i = int(np.argmin((out.cycles * out.energy_uj).numpy()))
        mapping = (EyerissMapping.from_arrays(t[i], s[i]) if eyeriss
                   else Mapping(t[i], s[i], r[i]))
        best.append((mapping, float(out.cycles[i]), float(out.energy_uj[i]),
                     out.level_pj[i].numpy()))
    cycles = np.array([b[1] for b in best])
    energy = np.array([b[2] for b in best])
    return NetworkDesign(arch.name, network.name, [b[0] for b in best], cycles, energy,
                         np.stack([b[3] for b in best]),
                         EYERISS_ENERGY_COLUMNS if eyeriss else ENERGY_COLUMNS,
                         network_edp(network, cycles, energy))


# ----------------------------------------------------------------------------------------------
# Eyeriss 256 (row stationary): its own topology
# ----------------------------------------------------------------------------------------------
EYERISS = "eyeriss"
#: Eyeriss's storage levels, innermost first (fig8-architectures.md §1).
EYERISS_LEVELS = ("PsumRegFile", "WeightRegFile", "InputRegFile", "DummyBuffer", "GlobalBuffer",
                  "DRAM")
#: Columns of an Eyeriss ``level_pj``: the MACs and every level but the DummyBuffer (no accesses).
EYERISS_ENERGY_COLUMNS = ("MACs", "PsumRegFile", "WeightRegFile", "InputRegFile", "GlobalBuffer",
                          "DRAM")
PSUM_RF, WEIGHT_RF, INPUT_RF, DUMMY, GLOBAL_BUFFER, E_DRAM = range(6)
FAN_Y, FAN_X = 0, 1  # spatial fan-outs: Y below the DummyBuffers (to the PEs), X below the GLB
_REL = {"W": _REL_W, "I": _REL_I, "O": _REL_O}


@dataclass(frozen=True)
class Fanout:
    """One spatial fan-out: it sits just below the temporal loops of storage level ``level``."""

    level: int
    axis: str
    fanout: int
    loops: tuple[int, ...]
    full: tuple[int, ...]


@dataclass(frozen=True)
class Eyeriss:
    """Eyeriss-256 as the original's Timeloop run sees it (``dosa/architectures/eyeriss.yaml``)."""

    name: str
    label: str
    technology: str
    mac_pj: float
    macs: int
    levels: tuple[Storage, ...]  # EYERISS_LEVELS order
    keeps: tuple[str, ...]  # per level, tensors kept ("O", "W", "I", "", "IO", "WIO")
    temporal_loops: tuple[tuple[int, ...], ...]
    temporal_full: tuple[tuple[int, ...], ...]
    orders: tuple[str, ...]  # per level, innermost first (fixed by the mapspace)
    fanouts: tuple[Fanout, Fanout]  # FAN_Y, FAN_X
    mapper: str
    permutations_per_factorization: int
    paper_edp: dict[str, float]
    timeloop_reference: dict[str, float]

    @property
    def permutations_to_visit(self) -> int:
        """Loop orders random-pruned evaluates per factorisation: Timeloop visits
        min(max-permutations-per-if-visit, size of the pruned permutation space), and the
        Eyeriss mapspace fixes every level's order, so that space has one element."""
        return min(self.permutations_per_factorization, 1)


@dataclass(frozen=True)
class EyerissMapping:
    """A mapping of the Eyeriss mapspace: temporal factors [6 levels, 7 dims] and spatial
    factors [2 fan-outs (Y, X), 7 dims]; the loop orders are the mapspace's fixed ones."""

    temporal: tuple[tuple[int, ...], ...]
    spatial: tuple[tuple[int, ...], ...]

    @classmethod
    def from_arrays(cls, temporal: np.ndarray, spatial: np.ndarray) -> EyerissMapping:
        return cls(tuple(tuple(int(x) for x in row) for row in temporal),
                   tuple(tuple(int(x) for x in row) for row in spatial))

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array(self.temporal, dtype=np.int64), np.array(self.spatial, dtype=np.int64)

    def __str__(self) -> str:
        parts = []
        for level in reversed(range(len(EYERISS_LEVELS))):
            loops = [f"{DIMS[d]}{f}" for d, f in enumerate(self.temporal[level]) if f > 1]
            for fan, axis in ((FAN_X, "X"), (FAN_Y, "Y")):
                if (GLOBAL_BUFFER if fan == FAN_X else DUMMY) == level:
                    loops += [f"{DIMS[d]}{f}{axis}" for d, f in enumerate(self.spatial[fan])
                              if f > 1]
            parts.append(" ".join([EYERISS_LEVELS[level], *loops]))
        return " - ".join(parts)


@cache
def load_eyeriss() -> Eyeriss:
    """Eyeriss-256 from the package file ``dosa/architectures/eyeriss.yaml``."""
    raw: dict[str, Any] = yaml.safe_load(
        resources.files("dosa").joinpath(f"architectures/{EYERISS}.yaml").read_text())
    name = raw["name"]
    levels, keeps = [], []
    for lv in raw["levels"]:
        lv = dict(lv)
        kept = lv.pop("keeps")
        if set(kept) - set("WIO"):
            raise ValueError(f"architecture {name}: {lv['name']}.keeps must name W, I, O")
        keeps.append("".join(t for t in "WIO" if t in kept))
        levels.append(_storage(lv, lv["name"], name))
    if tuple(s.name for s in levels) != EYERISS_LEVELS:
        raise ValueError(f"architecture {name}: levels must be {EYERISS_LEVELS}")
    space = raw["mapspace"]
    temporal = space["temporal"]
    fanouts = tuple(Fanout(level=int(f["level"]), axis=f["axis"], fanout=int(f["fanout"]),
                           loops=_dims(f["loops"], "spatial loops", name),
                           full=_dims(f["full"], "spatial full", name))
                    for f in space["spatial"])
    if [f.axis for f in fanouts] != ["Y", "X"]:
        raise ValueError(f"architecture {name}: spatial fan-outs must be Y then X")
    if raw["mapper"]["algorithm"] != "random-pruned":
        raise ValueError(f"architecture {name}: only the random-pruned mapper is modelled")
    return Eyeriss(
        name=name, label=raw["label"], technology=raw["technology"],
        mac_pj=float(raw["mac_pj"]), macs=int(raw["macs"]), levels=tuple(levels),
        keeps=tuple(keeps),
        temporal_loops=tuple(_dims(t["loops"], "temporal loops", name) for t in temporal),
        temporal_full=tuple(_dims(t["full"], "temporal full", name) for t in temporal),
        orders=tuple(t["order"] for t in temporal), fanouts=fanouts,  # type: ignore[arg-type]
        mapper=raw["mapper"]["algorithm"],
        permutations_per_factorization=int(raw["mapper"]["permutations_per_factorization"]),
        paper_edp={k: float(v) for k, v in raw["paper_edp"].items()},
        timeloop_reference={k: float(v) for k, v in raw["timeloop_reference"].items()})


@dataclass
class EyerissCounts:
    """Per (level, tensor): utilised instances and per-instance reads, fills, updates [B]."""

    mac: torch.Tensor
    compute: torch.Tensor  # MACs per utilised PE
    rows: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]
    tiles: dict[tuple[int, str], torch.Tensor]  # (level, tensor) -> words per instance


def eyeriss_counts(arch: Eyeriss, dims: torch.Tensor, strides: torch.Tensor,
                   temporal: torch.Tensor, spatial: torch.Tensor) -> EyerissCounts:
    """Timeloop's per-level access counts of a batch on Eyeriss (see the module docstring).

    ``temporal`` [B, 6, 7] and ``spatial`` [B, 2, 7] factors as :class:`EyerissMapping`.
    """
    t, sp = temporal, spatial
    ws, hs = strides[:, 0], strides[:, 1]
    mac = dims.prod(dim=-1)
    out = dims[:, P] * dims[:, Q] * dims[:, K] * dims[:, N]
    pes = sp.flatten(1).prod(dim=1)
    compute = mac / pes
    rel = {x: torch.tensor(r, dtype=torch.bool) for x, r in _REL.items()}

    def spatial_prod(tensor: str, relevant: bool) -> torch.Tensor:
        """Product of the spatial factors (both fan-outs) of the dims (ir)relevant to it."""
        mask = rel[tensor] if relevant else ~rel[tensor]
        return torch.where(mask, sp, 1.0).flatten(1).prod(dim=1)

    def below(level: int) -> torch.Tensor:
        """[B, 7] extents of a level's tile: its and inner temporal loops, inner fan-outs."""
        ext = t[:, :level + 1].prod(dim=1)
        for f, fan in enumerate(arch.fanouts):
            if fan.level <= level:
                ext = ext * sp[:, f]
        return ext

    def tile(level: int, tensor: str) -> torch.Tensor:
        e = below(level)
        if tensor == "I":
            return _input_extent(e).prod(dim=-1)
        return torch.where(rel[tensor], e, 1.0).prod(dim=-1)

    def _input_extent(e: torch.Tensor) -> torch.Tensor:
        return torch.stack([e[:, N], e[:, C], (e[:, Q] - 1) * hs + e[:, S],
                            (e[:, P] - 1) * ws + e[:, R]], dim=-1)

    def loops_above(level: int) -> tuple[torch.Tensor, list[int], list[int]]:
        """Temporal factors [B, L] above ``level`` innermost first, with their dims, levels."""
        cols, ds, ls = [], [], []
        for lv in range(level + 1, len(EYERISS_LEVELS)):
            for ch in arch.orders[lv]:
                d = DIMS.index(ch)
                cols.append(t[:, lv, d])
                ds.append(d)
                ls.append(lv)
        return torch.stack(cols, dim=-1), ds, ls

    def refills(level: int, tensor: str) -> torch.Tensor:
        tf, ds, _ = loops_above(level)
        pos = torch.arange(tf.shape[-1], dtype=tf.dtype, device=tf.device)
        return refill_multiplier(tf, g(tf), rel[tensor][ds].expand_as(tf), pos)

    def input_fills(level: int) -> torch.Tensor:
        tf, ds, ls = loops_above(level)
        steps = []
        for d, lv in zip(ds, ls, strict=True):
            base = t[:, :lv, d].prod(dim=1)
            for f, fan in enumerate(arch.fanouts):
                if fan.level <= lv:
                    base = base * sp[:, f, d]
            zero = torch.zeros_like(base)
            n_, c_, h_, w_ = zero, zero, zero, zero
            if d == R:
                w_ = base
            elif d == S:
                h_ = base
            elif d == P:
                w_ = base * ws
            elif d == Q:
                h_ = base * hs
            elif d == C:
                c_ = base
            elif d == N:
                n_ = base
            steps.append(torch.stack([n_, c_, h_, w_], dim=-1))
        return box_fills(_input_extent(below(level)), torch.stack(steps, dim=1), tf)

    zero = torch.zeros_like(mac)
    one = torch.ones_like(mac)
    psum_fills = tile(PSUM_RF, "O") * refills(PSUM_RF, "O")
    weight_fills = tile(WEIGHT_RF, "W") * refills(WEIGHT_RF, "W")
    input_fills_rf = input_fills(INPUT_RF)
    glb_i_fills = input_fills(GLOBAL_BUFFER)
    glb_o_fills = tile(GLOBAL_BUFFER, "O") * refills(GLOBAL_BUFFER, "O")
    glb_o_updates = psum_fills * pes / spatial_prod("O", relevant=False)  # spatial reduction
    rows = {
        ("PsumRegFile", "O"): (pes, compute - out / spatial_prod("O", relevant=True),
                               psum_fills, compute),
        ("WeightRegFile", "W"): (pes, compute, weight_fills, zero),
        ("InputRegFile", "I"): (pes, compute, input_fills_rf, zero),
        # exact-equality multicast: PEs that differ only in input-irrelevant dims (K)
        ("GlobalBuffer", "I"): (one, input_fills_rf * pes / spatial_prod("I", relevant=False),
                                glb_i_fills, zero),
        ("GlobalBuffer", "O"): (one, torch.clamp(glb_o_updates - out, min=0.0), glb_o_fills,
                                glb_o_updates),
        ("DRAM", "W"): (one, weight_fills * pes / spatial_prod("W", relevant=False), zero, zero),
        ("DRAM", "I"): (one, glb_i_fills, zero, zero),
        ("DRAM", "O"): (one, torch.clamp(glb_o_fills - out, min=0.0), zero, glb_o_fills),
    }
    tiles = {(lv, x): tile(lv, x) for lv in range(len(EYERISS_LEVELS) - 1)
             for x in arch.keeps[lv]}
    return EyerissCounts(mac=mac, compute=compute, rows=rows, tiles=tiles)


def eyeriss_legality(arch: Eyeriss, dims: torch.Tensor, strides: torch.Tensor,
                     temporal: torch.Tensor, spatial: torch.Tensor,
                     counts: EyerissCounts | None = None) -> list[tuple[torch.Tensor, str]]:
    """(bad mask [B], reason) pairs: the mapspace's loops and fan-outs, the fan-out sizes,
    perfect factorisation and every level's capacity."""
    nlev = len(EYERISS_LEVELS)
    allowed_t = torch.zeros(nlev, NUM_DIMS, dtype=torch.bool)
    for lv, loops in enumerate(arch.temporal_loops):
        allowed_t[lv, list(loops)] = True
    allowed_s = torch.zeros(2, NUM_DIMS, dtype=torch.bool)
    for f, fan in enumerate(arch.fanouts):
        allowed_s[f, list(fan.loops)] = True
    rules = [
        (((temporal > 1) & ~allowed_t).any(dim=(1, 2)), "a temporal loop outside the mapspace"),
        (((spatial > 1) & ~allowed_s).any(dim=(1, 2)), "a spatial loop outside the mapspace"),
        ((temporal.prod(dim=1) * spatial.prod(dim=1) != dims).any(dim=1),
         "factors that do not multiply to the layer"),
    ]
    for lv, full in enumerate(arch.temporal_full):
        if full:
            rules.append(((temporal[:, lv, list(full)] != dims[:, list(full)]).any(dim=1),
                          f"a {''.join(DIMS[d] for d in full)} loop not entirely at "
                          f"{EYERISS_LEVELS[lv]}"))
    for f, fan in enumerate(arch.fanouts):
        rules.append((spatial[:, f].prod(dim=-1) > fan.fanout,
                      f"a {fan.axis} fan-out above {fan.fanout}"))
        if fan.full:
            rules.append(((spatial[:, f, list(fan.full)] != dims[:, list(fan.full)]).any(dim=1),
                          f"a {''.join(DIMS[d] for d in fan.full)} not entirely spatial in "
                          f"{fan.axis}"))
    if counts is None:
        counts = eyeriss_counts(arch, dims, strides, temporal, spatial)
    for lv, store in enumerate(arch.levels[:-1]):
        if arch.keeps[lv]:
            words = sum(counts.tiles[(lv, x)] for x in arch.keeps[lv])
            rules.append((words > store.entries, f"a {store.name} tile above {store.entries} "
                                                 "words"))
    return rules


def evaluate_eyeriss(arch: Eyeriss, dims: torch.Tensor, strides: torch.Tensor,
                     temporal: torch.Tensor, spatial: torch.Tensor) -> AcceleratorOutput:
    """Cycles, energy and per-level energy (EYERISS_ENERGY_COLUMNS) of a batch on Eyeriss;
    rows outside the mapspace are marked in ``valid``."""
    counts = eyeriss_counts(arch, dims, strides, temporal, spatial)
    compute = counts.compute
    level_pj = [counts.mac * arch.mac_pj]
    bounds = [compute]
    for store in arch.levels:
        rows = [v for (name, _), v in counts.rows.items() if name == store.name]
        if not rows:
            continue  # the DummyBuffer keeps nothing
        level_pj.append(store.energy_pj([n for r in rows for n in r[1:]], rows[0][0]))
        # Timeloop's per-tensor demands in W, I, O order (rows are stored in that order)
        reads = [r[1] for r in rows]
        writes = [r[2] + r[3] for r in rows]
        if store.read_bandwidth is not None:
            bounds.append(_level_cycles(compute, reads, [], store.read_bandwidth))
        if store.write_bandwidth is not None:
            bounds.append(_level_cycles(compute, [], writes, store.write_bandwidth))
        if store.bandwidth is not None:
            bounds.append(_level_cycles(compute, reads, writes, store.bandwidth))
    bad = torch.zeros_like(compute, dtype=torch.bool)
    for mask, _ in eyeriss_legality(arch, dims, strides, temporal, spatial, counts):
        bad |= mask
    pj = torch.stack(level_pj, dim=-1)
    return AcceleratorOutput(cycles=torch.stack(bounds, dim=-1).amax(dim=-1),
                             energy_uj=pj.sum(dim=-1) * 1e-6, level_pj=pj, valid=~bad)


def _eyeriss_slots(arch: Eyeriss, d: int) -> tuple[list[tuple[int, int]], tuple[int, int] | None]:
    """(free slots of dim ``d`` below DRAM as (0 temporal / 1 spatial, level or fan-out), the
    slot that takes the whole dim if the mapspace pins it)."""
    free: list[tuple[int, int]] = []
    full = None
    for lv in range(len(EYERISS_LEVELS) - 1):
        for f, fan in enumerate(arch.fanouts):  # a fan-out sits below its level's loops
            if fan.level == lv and d in fan.loops:
                if d in fan.full:
                    full = (1, f)
                else:
                    free.append((1, f))
        if d in arch.temporal_loops[lv]:
            if d in arch.temporal_full[lv]:
                full = (0, lv)
            else:
                free.append((0, lv))
    return free, full


def random_eyeriss_mappings(arch: Eyeriss, layer: Layer, n: int, rng: np.random.Generator,
                            max_rounds: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """``n`` valid mappings (temporal [n, 6, 7], spatial [n, 2, 7]) as the original's
    random-pruned Timeloop mapper draws them: per dim uniform over the ordered factorisations
    over its legal slots (DRAM takes the quotient where it may loop), rejection of those that
    break a fan-out or a capacity, and the fixed loop orders of the mapspace (so one mapping per
    factorisation: :attr:`Eyeriss.permutations_to_visit`)."""
    positive_int("n", n)
    positive_int("max_rounds", max_rounds)
    per = arch.permutations_to_visit
    dram_loops = arch.temporal_loops[E_DRAM]
    tables = []
    for d, size in enumerate(layer.dims):
        free, full = _eyeriss_slots(arch, d)
        if full is not None:  # the whole dim in one slot: every other slot 1
            table = np.ones((1, len(free)), dtype=np.int64)
        else:
            table = factor_table(size, len(free))
            if d not in dram_loops:  # the slots below DRAM must take the whole dim
                table = table[table.prod(axis=1) == size]
        tables.append((free, full, table))
    dims, strides = layer_tensors([layer])

    def draw(batch: int) -> tuple[np.ndarray, np.ndarray]:
        temporal = np.ones((batch, len(EYERISS_LEVELS), NUM_DIMS), dtype=np.int64)
        spatial = np.ones((batch, 2, NUM_DIMS), dtype=np.int64)
        blocks = (temporal, spatial)
        for d, (free, full, table) in enumerate(tables):
            size = layer.dims[d]
            if full is not None:
                blocks[full[0]][:, full[1], d] = size
            rows = table[rng.integers(len(table), size=batch)]
            for i, (kind, idx) in enumerate(free):
                blocks[kind][:, idx, d] = rows[:, i]
            inner = temporal[:, :E_DRAM, d].prod(axis=1) * spatial[:, :, d].prod(axis=1)
            temporal[:, E_DRAM, d] = size // inner
        return temporal, spatial

    def rules(t: np.ndarray, s: np.ndarray) -> list[tuple[torch.Tensor, str]]:
        return eyeriss_legality(arch, dims.expand(len(t), -1), strides.expand(len(t), -1),
                                torch.from_numpy(t.astype(np.float64)),
                                torch.from_numpy(s.astype(np.float64)))

    return _valid_factorisations(arch.label, layer, n, per, draw, rules,
                                 lambda t: np.full(len(t), per, dtype=np.int64), max_rounds)


def score_eyeriss_design(arch: Eyeriss, network: Network, mappings: list[EyerissMapping]
                         ) -> tuple[np.ndarray, np.ndarray, float]:
    """(cycles [L], energy µJ [L], network EDP) of one Eyeriss mapping per layer; raises
    MappingError naming the first layer whose mapping is not legal."""
    if len(mappings) != len(network.layers):
        raise ValueError(f"{len(mappings)} mappings for {len(network.layers)} layers")
    dims, strides = layer_tensors(network.layers)
    t = torch.tensor([m.temporal for m in mappings], dtype=torch.float64)
    s = torch.tensor([m.spatial for m in mappings], dtype=torch.float64)
    with torch.no_grad():
        _refuse_illegal(eyeriss_legality(arch, dims, strides, t, s), arch.label, network,
                        mappings)
        out = evaluate_eyeriss(arch, dims, strides, t, s)
    cycles, energy = out.cycles.numpy(), out.energy_uj.numpy()
    return cycles, energy, network_edp(network, cycles, energy)
