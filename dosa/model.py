"""The differentiable analytical model of Gemmini-TL (spec §4): one implementation, batched.

Everything is plain torch on float64 tensors whose leading dim is the batch of
(layer, mapping, hardware) triples, so the same code scores a final design exactly and gives
gradients to the real-valued factors during search. Inputs:

* ``dims`` [B, 7] layer dims (R, S, P, Q, C, K, N), ``strides`` [B, 2] (Wstride, Hstride);
* ``temporal``, ``spatial`` [B, 4, 7] factors per level (0 = registers ... 3 = DRAM);
* ``rank`` [B, 4, 7] integer loop-order keys (0 = innermost) per level;
* ``hw`` [B, 3] (pe_dim, scratchpad KB, accumulator KB).

Modelling rules (each one is what Timeloop does for this template: the published dataset and
the reference vectors of real Timeloop runs are reproduced exactly; see notebook 01):

1. Guard ``g(f) = f if f > 1 else 1``: a loop with factor <= 1 does not exist. It keeps
   capacities and access counts well defined for fractional factors during gradient descent.
2. Register (L0) loops are folded into the accumulator tile: outputs and inputs bypass the
   single-weight register, so the accumulator must hold everything the L0 loops touch.
3. A tile is refilled each time a loop above it that is relevant to the tensor advances; an
   irrelevant loop *inside* the innermost relevant one reuses the tile (weights ignore P, Q, N;
   outputs ignore R, S, C; inputs ignore K). Spatial fan-outs above a level multiply its fills.
4. Scratchpad input fills from DRAM follow Timeloop's delta analysis (:func:`_input_fills`):
   Timeloop simulates only iterations 0 and 1 of every loop (the rest are extrapolated from
   iteration 1), fetches the part of each new input box that the previous box did not hold, and
   drops that residue - fetching the whole box - whenever the box moves by a different offset
   than on the step before ("reset on stride change"). Only the innermost DRAM loop and the
   loops whose step equals its step therefore reuse a halo.
5. MACs are the layer's product of dims (the original derived them from the loop nest, which is
   wrong when N > 1). Scratchpad input reads are multicast over the K columns (MACs / Ksp);
   accumulator updates follow the spatial reduction over C rows (MACs / Csp); the first read of
   each output is elided (- P*Q*K*N) at the accumulator and at DRAM.
6. Latency is the largest of the compute cycles (MACs over the Csp x Ksp used PEs) and one bound
   per bandwidth-limited level (accumulator 2 words/cycle per active column, scratchpad
   2*pe_dim, DRAM 8; the registers are unbounded). Each level bound is Timeloop's own float
   arithmetic - read and write demand per compute cycle, summed per tensor in the order W, I, O;
   slowdown = bandwidth / demand; ceil(compute cycles / slowdown) - so a bound that lands on an
   integer can round up by one cycle exactly as Timeloop's does.
7. Energy is linear in the per-action access counts with pat's per-word energies
   (:func:`dosa.hardware.sram_energy_per_word`: registers, accumulator by its per-bank size,
   scratchpad by its size; DRAM 100 pJ per word). Accesses are charged per whole block: each
   action type (reads, fills, updates) of each tensor is rounded up to the level's block -
   64 words at DRAM, pe_dim words (one scratchpad row) at the scratchpad.
8. Discrete rules (the ceilings of 6 and 7, whole-entry buffer depths) give exact values and, in
   the gradient path, the gradient of their unrounded value (straight-through), so the search
   optimises the same numbers that exact scoring reports.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch

from dosa import hardware as H

R, S, P, Q, C, K, N = range(7)
DTYPE = torch.float64

# Which dims each tensor depends on (rule 3), in R..N order.
_REL_W = (1, 1, 0, 0, 1, 1, 0)
_REL_I = (1, 1, 1, 1, 1, 0, 1)
_REL_O = (0, 0, 1, 1, 0, 1, 1)
_REL_W_T = torch.tensor(_REL_W, dtype=torch.bool)
_REL_O_T = torch.tensor(_REL_O, dtype=torch.bool)
# [4, 1]: where each level's loops start in the innermost-first order over all levels
_LEVEL_OFFSET = 7 * torch.arange(4, dtype=DTYPE).unsqueeze(-1)
# index tensors (not lists: a list index is converted on every call, 1.5x slower at batch 5k)
_W_DIMS = torch.tensor([R, S, C, K])
_O_DIMS = torch.tensor([P, Q, K, N])
# The input box axis (n, c, h, w) one DRAM iteration of each dim moves (rule 4), as one-hot
# rows in R..N order: R and P move w, S and Q move h, C moves c, N moves n, K nothing.
_STEP_AXIS = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 1, 0],
                           [0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], dtype=DTYPE)

ACCESS_NAMES = ("mac", "registers", "accumulator", "scratchpad", "dram")
#: Columns of :attr:`ModelOutput.bounds`: the compute cycles and each bandwidth-limited level.
BOUND_NAMES = ("compute", "accumulator", "scratchpad", "dram")


def g(f: torch.Tensor) -> torch.Tensor:
    """Loop guard (rule 1): factors <= 1 count as 1 and pass no gradient."""
    if not f.requires_grad:
        return f.clamp(min=1.0)  # same values, a cheaper kernel when no gradient is needed
    return torch.where(f > 1, f, 1.0)


_SURROGATE: ContextVar[bool] = ContextVar("dosa_model_surrogate", default=False)


@contextlib.contextmanager
def surrogate() -> Iterator[None]:
    """Inside this block the model returns the unrounded surrogate of rule 8 as its *value*.

    Its gradient is the one the search follows, so finite differences of this surrogate check
    the analytic gradients (tests), and the gap to the exact values can be measured.
    """
    token = _SURROGATE.set(True)
    try:
        yield
    finally:
        _SURROGATE.reset(token)


def _surrogate_on() -> bool:
    """Whether :func:`surrogate` is active. A compiled search marks it a constant (dynamo cannot
    trace a ContextVar), so its step is one graph; compiled code never sees the block change:
    :func:`surrogate` serves tests and measurements, not the search."""
    return _SURROGATE.get()


def _exact(smooth: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """Rule 8: the value of ``exact``, the gradient of ``smooth`` (straight-through)."""
    if _surrogate_on():
        return smooth
    if not smooth.requires_grad:
        return exact
    return exact.detach() + (smooth - smooth.detach())  # value bit-identical to ``exact``


def _ceil_to(count: torch.Tensor, block: torch.Tensor | float) -> torch.Tensor:
    """``count`` rounded up to whole blocks (rule 7)."""
    return _exact(count, torch.ceil(count / block) * block)


def _count(n: torch.Tensor) -> torch.Tensor:
    """An action count as Timeloop sees it: never negative (fractional search factors can push
    e.g. ``w_o1 - out`` below 0, which would lower a bound or an energy)."""
    return torch.clamp(n, min=0.0)


@dataclass
class ModelOutput:
    """Per-row results of :func:`evaluate` (all [B] unless noted)."""

    cycles: torch.Tensor
    energy_uj: torch.Tensor
    accesses: torch.Tensor  # [B, 5] in ACCESS_NAMES order
    acc_words: torch.Tensor  # accumulator words one bank must hold (cap_1(O))
    sp_words: torch.Tensor  # scratchpad words (cap_2(W) + cap_2(I))
    max_spatial: torch.Tensor  # largest spatial fan-out: the PE array side it needs
    bounds: torch.Tensor  # [B, 4] in BOUND_NAMES order (cycles)


def refill_multiplier(factors: torch.Tensor, guarded: torch.Tensor, rel: torch.Tensor,
                      pos: torch.Tensor) -> torch.Tensor:
    """How often a tensor's tile below some loops is refilled (rule 3): the product of the
    ``guarded`` factors of every loop at or outside the innermost loop that is relevant to the
    tensor and has a factor > 1; loops above an irrelevant innermost run reuse the tile.

    ``factors``/``guarded`` [B, ...] are the loops above the tile, ``rel`` whether each is
    relevant and ``pos`` (broadcastable) each loop's position, innermost smallest. One
    implementation for Gemmini (positions from the loop ranks) and the Fig. 8 accelerators
    (positions of their fixed loop orders).
    """
    key = torch.where((factors > 1) & rel, pos, torch.inf)
    first = key.flatten(1).amin(dim=1).view(-1, *([1] * (key.dim() - 1)))
    return torch.where(pos >= first, guarded, 1.0).flatten(1).prod(dim=1)


def capacities(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
               spatial: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tile sizes in words at the accumulator (L1) and scratchpad (L2) (spec §4.1).

    Also returns the guarded factors ``gt``/``gs`` (rule 1), so that :func:`evaluate` given
    these capacities does not guard the same tables again.
    """
    gt = g(temporal)
    gs = g(spatial)
    t1 = gt[:, 1] * gt[:, 0]  # rule 2: fold L0 into L1
    f1 = t1 * gs[:, 1]
    f2 = f1 * gt[:, 2] * gs[:, 2]
    ws, hs = strides[:, 0], strides[:, 1]
    # weights (R, S, C, K) and outputs (P, Q, K, N) of both levels in two products
    f12 = torch.stack([f1, f2], dim=1)  # [B, 2, 7]
    w12 = f12.index_select(-1, _W_DIMS.to(f12.device)).prod(dim=-1)
    o12 = f12.index_select(-1, _O_DIMS.to(f12.device)).prod(dim=-1)
    tr, ts, tp, tq = (t1[:, :4] * gt[:, 2, :4]).unbind(1)  # unbind: one backward node
    sp_pq = (gs[:, 1:3, P] * gs[:, 1:3, Q]).prod(dim=-1)
    i2 = f2[:, C] * f2[:, N] * sp_pq * ((tp - 1) * ws + tr) * ((tq - 1) * hs + ts)
    max_spatial = torch.clamp(spatial[:, 1:].amax(dim=(1, 2)), min=1.0)
    (w1, w2), (o1, o2) = w12.unbind(1), o12.unbind(1)
    return {"o1": o1, "w1": w1, "o2": o2, "w2": w2,
            "i2": i2, "max_spatial": max_spatial, "gt": gt, "gs": gs}


def _input_fills(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
                 spatial: torch.Tensor, rank: torch.Tensor, gt: torch.Tensor | None = None,
                 gs: torch.Tensor | None = None) -> torch.Tensor:
    """Scratchpad input fills from DRAM, as Timeloop's delta analysis counts them (rule 4).

    The input tile is a box in (n, c, h, w) with extents N_t, C_t, (P_t-1)*Wstride + R_t and
    (Q_t-1)*Hstride + S_t (P_t etc. = factors of levels 0..2). Timeloop runs iterations 0 and 1
    of every DRAM loop and weighs iteration 1 by (factor - 1); the steps between consecutive
    boxes form a binary counter: advancing loop j (index 0 -> 1) resets every existing loop
    inside it (1 -> 0), so the box moves by t_j = step_j - sum of the inner loops' steps.
    The innermost loop m always fetches the box minus its overlap with the previous one. Any
    other step fetches the same delta if t_j == t_m, and the whole box otherwise (its offset
    differs from the last recorded one, so Timeloop discards the residue). Summing with the
    weights (f_j - 1) * prod(factors outside j) gives the closed form of :func:`box_fills`.
    ``gt``/``gs`` may pass the guarded temporal and spatial factors (rule 1).
    """
    gt = g(temporal) if gt is None else gt
    gs = g(spatial) if gs is None else gs
    t3 = temporal[:, 3]
    exists = t3 > 1
    ws, hs = strides[:, 0], strides[:, 1]
    # [B, 7] extents inside DRAM. Spatial P/Q/R/S never occur on Gemmini (only C and K fan
    # out); were they allowed, they would widen the box here.
    inner = (gt[:, :3] * gs[:, :3]).prod(dim=1)
    in_r, in_s, in_p, in_q, in_c, _, in_n = inner.unbind(1)
    extent = torch.stack([in_n, in_c, (in_q - 1) * hs + in_s,
                          (in_p - 1) * ws + in_r], dim=-1)  # (n, c, h, w)
    # How far one DRAM iteration of each dim moves the box (R..N order): the dim's extent
    # inside DRAM, times the stride for P and Q, along the dim's axis (_STEP_AXIS).
    scale = torch.ones_like(inner)
    scale[:, P], scale[:, Q] = ws, hs
    # DRAM loops innermost first, the ones that do not exist (factor <= 1) last.
    order = torch.argsort(rank[:, 3] + 7 * (~exists).to(rank.dtype), dim=-1)
    live = exists.gather(1, order)
    step = ((inner * scale).unsqueeze(-1) * _STEP_AXIS.to(inner.device)).gather(
        1, order.unsqueeze(-1).expand(-1, -1, 4)) * live.unsqueeze(-1)  # [B, 7, 4]
    factor = torch.where(live, gt[:, 3].gather(1, order), 1.0)
    return _box_fills_live(extent, step, factor)


def box_fills(extent: torch.Tensor, step: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Fills of an input box [B, 4] (n, c, h, w extents) under the temporal loops above it.

    ``step`` [B, L, 4] is how far one iteration of each loop moves the box and ``factor``
    [B, L] its factor, loops innermost first; loops with factor <= 1 do not exist. The closed
    form of Timeloop's delta analysis explained in :func:`_input_fills` (rule 4).
    """
    exists = factor > 1
    order = torch.argsort((~exists).to(torch.int64), dim=-1, stable=True)
    live = exists.gather(1, order)
    step = step.gather(1, order.unsqueeze(-1).expand(-1, -1, 4)) * live.unsqueeze(-1)
    factor = torch.where(live, g(factor).gather(1, order), 1.0)
    return _box_fills_live(extent, step, factor)


def _box_fills_live(extent: torch.Tensor, step: torch.Tensor, factor: torch.Tensor
                    ) -> torch.Tensor:
    """:func:`box_fills` once the existing loops come first (innermost first) and the others
    have a zero step and factor 1."""
    move = 2 * step - torch.cumsum(step, dim=1)  # t_j = step_j - the inner loops' steps
    outside = torch.flip(torch.cumprod(torch.flip(factor, [1]), dim=1), [1]) / factor
    weight = (factor - 1) * outside  # number of times loop j advances
    halo = (move == move[:, :1]).all(dim=-1)  # steps that keep the innermost loop's offset
    box = extent.prod(dim=-1)
    delta = box - torch.clamp(extent - move[:, 0].abs(), min=0).prod(dim=-1)
    return box * (1 + (weight * ~halo).sum(dim=1)) + delta * (weight * halo).sum(dim=1)


@dataclass
class Actions:
    """Per-action access counts of a batch (all [B]); Timeloop rounds and bounds per action."""

    mac: torch.Tensor
    out: torch.Tensor  # P*Q*K*N: the first read of each output is elided
    csp: torch.Tensor
    ksp: torch.Tensor
    w_w0: torch.Tensor  # weight fills of the registers = scratchpad weight reads
    w_o1: torch.Tensor  # accumulator output fills = DRAM output updates
    w_w2: torch.Tensor  # scratchpad weight fills = DRAM weight reads
    w_i2: torch.Tensor  # scratchpad input fills = DRAM input reads

    def totals(self) -> torch.Tensor:
        """Per-level access counts [B, 5] in ACCESS_NAMES order (spec §4.3)."""
        mac, out = self.mac, self.out
        acc = torch.stack([
            mac,
            mac + self.w_w0,
            2 * mac / self.csp - out + self.w_o1,
            self.w_w0 + self.w_w2 + mac / self.ksp + self.w_i2,
            self.w_w2 + self.w_i2 + 2 * self.w_o1 - out,
        ], dim=-1)
        return torch.clamp(acc, min=1.0)


def actions(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
            spatial: torch.Tensor, rank: torch.Tensor,
            caps: dict[str, torch.Tensor] | None = None) -> Actions:
    """The fill counts of rules 3-4 and the MAC count of rule 5."""
    if caps is None:
        caps = capacities(dims, strides, temporal, spatial)
    gt, gs = caps["gt"], caps["gs"]
    # Rule 3 by loop position instead of a sort: loop (level, d) sits at 7 * level + rank
    # counted innermost first over all levels; a tensor's tile above level l is refilled by
    # every loop at or outside the innermost relevant loop with factor > 1 above l.
    # positions as floats: float reductions are vectorised, int64 ones are not
    pos = rank.to(temporal.dtype) + _LEVEL_OFFSET.to(temporal.device)

    def refills(level: int, rel: torch.Tensor) -> torch.Tensor:
        return refill_multiplier(temporal[:, level:], gt[:, level:],
                                 rel.to(temporal.device), pos[:, level:])

    gs_above = torch.cumprod(gs.flip(1), dim=1)  # [:, k] = product of levels 3-k..3
    return Actions(
        mac=dims.prod(dim=-1),
        out=dims[:, P] * dims[:, Q] * dims[:, K] * dims[:, N],
        csp=gs[:, 1, C],
        ksp=gs[:, 2, K],
        w_w0=refills(1, _REL_W_T) * gs_above[:, 2].prod(dim=1),
        w_o1=caps["o1"] * (refills(2, _REL_O_T) * gs_above[:, 1].prod(dim=1)),
        w_w2=caps["w2"] * refills(3, _REL_W_T),
        w_i2=_input_fills(dims, strides, temporal, spatial, rank, gt, gs),
    )


def accesses(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
             spatial: torch.Tensor, rank: torch.Tensor,
             caps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-level access counts [B, 5]: MACs, registers, accumulator, scratchpad, DRAM."""
    return actions(dims, strides, temporal, spatial, rank, caps).totals()


def _level_cycles(compute: torch.Tensor, reads: list[torch.Tensor], writes: list[torch.Tensor],
                  bandwidth: torch.Tensor | float) -> torch.Tensor:
    """One level's cycles in Timeloop's float arithmetic (rule 6); tensors in W, I, O order."""
    demand = sum(r / compute for r in reads) + sum(w / compute for w in writes)
    return _exact((sum(reads) + sum(writes)) / bandwidth,
                  torch.ceil(compute / (bandwidth / demand)))


def latency_bounds(act: Actions, hw: torch.Tensor) -> torch.Tensor:
    """Compute cycles and the level bounds [B, 4] in BOUND_NAMES order (rule 6)."""
    compute = act.mac / (act.csp * act.ksp)
    per_column = act.mac / act.csp / act.ksp
    out_reads, w_o1 = _count(act.w_o1 - act.out), _count(act.w_o1)
    return torch.stack([
        compute,
        _level_cycles(compute, [_count(per_column - act.out / act.ksp)],
                      [per_column + w_o1 / act.ksp], H.BW_ACC_PER_COLUMN),
        _level_cycles(compute, [_count(act.w_w0), act.mac / act.ksp],
                      [_count(act.w_w2), _count(act.w_i2)], H.BW_SP_PER_PE_DIM * hw[:, 0]),
        _level_cycles(compute, [_count(act.w_w2), _count(act.w_i2), out_reads], [w_o1],
                      H.BW_DRAM),
    ], dim=-1)


def energy_uj(act: Actions, hw: torch.Tensor, totals: torch.Tensor | None = None
              ) -> torch.Tensor:
    """Energy in µJ (rule 7), with pat's energies for the buffer sizes Timeloop instantiates.

    ``totals`` may pass ``act.totals()`` when the caller has it already.
    """
    pe, sp_kb, acc_kb = hw.unbind(1)
    # Timeloop's buffers hold whole rows, depths as in Hardware.to_arch_columns.
    sp_depth = sp_kb * 1024 / (pe * H.SP_WORD_BYTES)
    acc_depth = acc_kb * 1024 / (H.ACC_WORD_BYTES * pe)
    sp_size = _exact(sp_depth, torch.ceil(sp_depth)) * (pe * H.SP_WORD_BYTES / 1024)
    acc_bank = _exact(acc_depth, torch.ceil(acc_depth)) * (H.ACC_WORD_BYTES / 1024)
    if totals is None:
        totals = act.totals()
    # each action type's count in whole blocks, all four of a level in one tensor
    sp = _ceil_to(_count(torch.stack([act.w_w0, act.w_w2, act.mac / act.ksp, act.w_i2], -1)),
                  pe.unsqueeze(-1)).sum(dim=-1)
    dram = _ceil_to(_count(torch.stack([act.w_w2, act.w_i2, act.w_o1 - act.out, act.w_o1], -1)),
                    H.DRAM_BLOCK_WORDS).sum(dim=-1)
    pj = (H.E_MAC * totals[:, 0] + H.E_REG * totals[:, 1]
          + H.sram_energy_per_word(acc_bank, 8 * H.ACC_WORD_BYTES) * totals[:, 2]
          + H.sram_energy_per_word(sp_size, 8 * H.SP_WORD_BYTES) * sp
          + H.E_DRAM * dram)
    return pj * 1e-6


def evaluate(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
             spatial: torch.Tensor, rank: torch.Tensor, hw: torch.Tensor,
             caps: dict[str, torch.Tensor] | None = None) -> ModelOutput:
    """Latency, energy, access counts and tile sizes of a batch of (layer, mapping, hw).

    ``caps`` may pass :func:`capacities` of the same batch when the caller already has them
    (the search derives the hardware from them first).
    """
    if caps is None:
        caps = capacities(dims, strides, temporal, spatial)
    act = actions(dims, strides, temporal, spatial, rank, caps)
    bounds = latency_bounds(act, hw)
    totals = act.totals()
    return ModelOutput(
        cycles=bounds.amax(dim=-1),
        energy_uj=energy_uj(act, hw, totals),
        accesses=totals,
        acc_words=caps["o1"],
        sp_words=caps["w2"] + caps["i2"],
        max_spatial=caps["max_spatial"],
        bounds=bounds,
    )


def min_hw(acc_words: torch.Tensor, sp_words: torch.Tensor, max_spatial: torch.Tensor,
           *, smooth: float | None = None, pe_dim: torch.Tensor | float | None = None
           ) -> torch.Tensor:
    """Smallest hardware that runs every layer's mapping (spec §4.7), reducing the last dim.

    Inputs are per-layer [..., L]; output [..., 3] (pe_dim, sp_kb, acc_kb), real-valued and
    differentiable. ``smooth`` replaces the hard max over layers by a log-sum-exp soft max of
    that temperature (relative, in log space) so that near-critical layers also get gradient.
    ``pe_dim`` fixes the array side (e.g. 16 for FireSim) instead of deriving it.
    """
    def layer_max(x: torch.Tensor) -> torch.Tensor:
        if smooth is None:
            return x.amax(dim=-1)
        return torch.exp(smooth * torch.logsumexp(torch.log(x) / smooth, dim=-1))

    if pe_dim is None:
        pe = torch.clamp(layer_max(max_spatial), min=2.0)
    else:
        pe = torch.as_tensor(pe_dim, dtype=acc_words.dtype).expand(acc_words.shape[:-1])
    sp_kb = layer_max(sp_words) * H.SP_WORD_BYTES / 1024
    acc_kb = pe * layer_max(acc_words) * H.ACC_WORD_BYTES / 1024
    return torch.stack([pe, sp_kb, acc_kb], dim=-1)


def discretize_hw(hw: torch.Tensor) -> torch.Tensor:
    """Evaluation-mode min-HW: integral pe_dim, whole KB of scratchpad and accumulator."""
    return torch.stack([torch.round(hw[..., 0]), torch.ceil(hw[..., 1] - 1e-9),
                        torch.ceil(hw[..., 2] - 1e-9)], dim=-1)

