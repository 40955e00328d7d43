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

Eyeriss (row stationary: three single-tensor register files, a size-0 fan-out level, input
multicast along diagonals) does not share this topology and is not modelled yet.

The random mapper (:func:`random_mappings`) draws legal mappings of an accelerator's mapspace
as the original's Timeloop mapper does: factorisations uniform per dim over the ordered
factorisations of each dim over its legal slots, random loop orders where the mapspace leaves
them free, rejection of those that overflow a buffer, and for ``random-pruned`` (NVDLA) 16 loop
orders per factorisation;
:func:`best_network_design` keeps, per layer, the least-EDP mapping of ``n`` valid ones and
aggregates the network as the original (EDP = sum count x cycles x sum count x energy).
"""

from __future__ import annotations

import dataclasses
import logging
import math
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
from dosa.model import Actions, _exact, _level_cycles, actions, capacities
from dosa.search.options import check_seed, positive_int
from dosa.search.sampler import factor_table
from dosa.workload import DIMS, Layer, Network

log = logging.getLogger(__name__)

R, S, P, Q, C, K, N = range(NUM_DIMS)
#: The modelled accelerators, in the order of the paper's bars.
ACCELERATORS: tuple[str, ...] = ("nvdla_small", "nvdla_large", "gemmini_default")
#: Paper Fig. 8 Eyeriss values (uJ x cycles), for reference: Eyeriss is not modelled.
EYERISS_PAPER_EDP = {"resnet50": 780976808884.6, "bert": 19719346875.7,
                     "retinanet": 488501424178.5, "unet": 1108363658717171.8}
LEVELS = ("registers", "accumulator", "buffer", "dram")


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
    if store.bandwidth is not None and not store.bandwidth > 0:
        raise ValueError(f"architecture {name}: {level}.bandwidth must be > 0 or absent "
                         f"(unlimited), got {store.bandwidth!r}")
    return store


@cache
def load_accelerator(name: str) -> Accelerator:
    """The accelerator described by the package file ``dosa/architectures/<name>.yaml``."""
    if name not in ACCELERATORS:
        raise ValueError(f"unknown accelerator {name!r}; allowed: {', '.join(ACCELERATORS)} "
                         "(Eyeriss is not modelled)")
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
    level_pj: torch.Tensor  # [B, 5]: MACs, registers, accumulator, buffer, DRAM
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


def score_design(arch: Accelerator, network: Network, mappings: list[Mapping]
                 ) -> tuple[np.ndarray, np.ndarray, float]:
    """(cycles [L], energy µJ [L], network EDP µJ x cycles) of one mapping per layer.

    Raises MappingError naming the first layer whose mapping is not legal on ``arch``.
    """
    if len(mappings) != len(network.layers):
        raise ValueError(f"{len(mappings)} mappings for {len(network.layers)} layers")
    dims, strides = layer_tensors(network.layers)
    t, s, r = (torch.from_numpy(np.stack([getattr(m, f) for m in mappings]).astype(
        np.int64 if f == "rank" else np.float64)) for f in ("temporal", "spatial", "rank"))
    with torch.no_grad():
        for mask, reason in legality(arch, dims, strides, t, s):
            if mask.any():
                i = int(torch.nonzero(mask)[0])
                raise MappingError(f"{arch.label}: layer {network.layers[i].name!r} mapping "
                                   f"{mappings[i]} has {reason}")
        out = evaluate_accelerator(arch, dims, strides, t, s, r)
    cycles, energy = out.cycles.numpy(), out.energy_uj.numpy()
    counts = network.counts_array()
    return cycles, energy, float((counts * cycles).sum() * (counts * energy).sum())


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
    ``permutations_per_factorization`` random loop orders (drawn with replacement), so ``n``
    mappings cover only ``n / 16`` factorisations; a factorisation that overflows a buffer is
    skipped after one try (its capacity does not depend on the loop order). Raises ValueError
    if too few valid factorisations turn up in ``max_rounds`` rounds of rejection.
    """
    positive_int("n", n)
    positive_int("max_rounds", max_rounds)
    per = arch.permutations_per_factorization if arch.mapper == "random-pruned" else 1
    need = math.ceil(n / per)
    found: list[tuple[np.ndarray, np.ndarray]] = []
    have = drawn = 0
    dims, strides = layer_tensors([layer])
    for _ in range(max_rounds):
        rate = (have + 1) / (drawn + 2)
        batch = int(min(200_000, max(need, math.ceil(1.2 * (need - have) / rate))))
        t, s = _draw_factors(arch, layer, batch, rng)
        with torch.no_grad():
            ok = torch.ones(batch, dtype=torch.bool)
            for mask, _ in legality(arch, dims.expand(batch, -1), strides.expand(batch, -1),
                                    torch.from_numpy(t.astype(np.float64)),
                                    torch.from_numpy(s.astype(np.float64))):
                ok &= ~mask
        idx = np.flatnonzero(ok.numpy())[:need - have]
        drawn += batch
        found.append((t[idx], s[idx]))
        have += idx.size
        if have >= need:
            temporal, spatial = (np.repeat(np.concatenate(x), per, axis=0)[:n]
                                 for x in zip(*found, strict=True))
            return temporal, spatial, _draw_ranks(arch, n, rng)
    raise ValueError(f"{arch.label}: only {have} of {need} random factorisations of layer "
                     f"{layer.name!r} are valid after {drawn} draws")


@dataclass
class NetworkDesign:
    """The original's Fig. 8 design of one network on one accelerator."""

    accelerator: str
    network: str
    mappings: list[Mapping]
    cycles: np.ndarray  # per unique layer
    energy_uj: np.ndarray
    level_pj: np.ndarray  # [L, 5]
    edp: float  # (sum count x cycles) x (sum count x energy), µJ x cycles


def best_network_design(arch: Accelerator, network: Network, n: int, seed: int
                        ) -> NetworkDesign:
    """Per layer the least-EDP of ``n`` valid random mappings (the original's choice)."""
    positive_int("n", n)
    rng = np.random.default_rng(check_seed(seed))
    best: list[tuple[Mapping, float, float, np.ndarray]] = []
    for layer in network.layers:
        t, s, r = random_mappings(arch, layer, n, rng)
        dims, strides = layer_tensors([layer])
        with torch.no_grad():
            out = evaluate_accelerator(arch, dims.expand(n, -1), strides.expand(n, -1),
                                       torch.from_numpy(t.astype(np.float64)),
                                       torch.from_numpy(s.astype(np.float64)),
                                       torch.from_numpy(r))
        edp = (out.cycles * out.energy_uj).numpy()
        i = int(np.argmin(edp))
        best.append((Mapping(t[i], s[i], r[i]), float(out.cycles[i]), float(out.energy_uj[i]),
                     out.level_pj[i].numpy()))
    counts = network.counts_array()
    cycles = np.array([b[1] for b in best])
    energy = np.array([b[2] for b in best])
    return NetworkDesign(arch.name, network.name, [b[0] for b in best], cycles, energy,
                         np.stack([b[3] for b in best]),
                         float((counts * cycles).sum() * (counts * energy).sum()))
