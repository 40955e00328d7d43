"""The differentiable analytical model of Gemmini-TL (spec §4): one implementation, batched.

Everything is plain torch on float64 tensors whose leading dim is the batch of
(layer, mapping, hardware) triples, so the same code scores a final design exactly and gives
gradients to the real-valued factors during search. Inputs:

* ``dims`` [B, 7] layer dims (R, S, P, Q, C, K, N), ``strides`` [B, 2] (Wstride, Hstride);
* ``temporal``, ``spatial`` [B, 4, 7] factors per level (0 = registers ... 3 = DRAM);
* ``rank`` [B, 4, 7] integer loop-order keys (0 = innermost) per level;
* ``hw`` [B, 3] (pe_dim, scratchpad KB, accumulator KB).

Modelling rules (each one is what Timeloop does for this template, checked on the published
dataset; see notebook 01):

1. Guard ``g(f) = f if f > 1 else 1``: a loop with factor <= 1 does not exist. It keeps
   capacities and access counts well defined for fractional factors during gradient descent.
2. Register (L0) loops are folded into the accumulator tile: outputs and inputs bypass the
   single-weight register, so the accumulator must hold everything the L0 loops touch.
3. A tile is refilled each time a loop above it that is relevant to the tensor advances; an
   irrelevant loop *inside* the innermost relevant one reuses the tile (weights ignore P, Q, N;
   outputs ignore R, S, C; inputs ignore K). Spatial fan-outs above a level multiply its fills.
4. Input halo reuse at the scratchpad (sliding window): when the innermost DRAM loop that
   exists (factor > 1) walks P or Q - or R/S followed directly by P/Q - only the newly exposed
   slab of the input tile is fetched; the DOSA rules of spec §4.2 decide the slab size. Unlike
   the original code, loops with factor 1 are ignored when deciding what is innermost (spec §9.2).
5. MACs are the layer's product of dims (the original derived them from the loop nest, which is
   wrong when N > 1). Scratchpad input reads are multicast over the K columns (MACs / Ksp);
   accumulator updates follow the spatial reduction over C rows (MACs / Csp); the first read of
   each output is elided (- P*Q*K*N) at the accumulator and at DRAM.
6. Latency is the largest of five throughput bounds (compute on the Csp x Ksp used PEs,
   registers, accumulator 2 words/cycle per active column, scratchpad 2*pe_dim, DRAM 8).
7. Energy is linear in the per-level access counts with the per-access energies of
   :mod:`dosa.hardware` (accumulator cost grows with the per-bank size, scratchpad with its size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dosa import hardware as H

R, S, P, Q, C, K, N = range(7)
DTYPE = torch.float64

# Which dims each tensor depends on (rule 3), in R..N order.
_REL_W = (1, 1, 0, 0, 1, 1, 0)
_REL_I = (1, 1, 1, 1, 1, 0, 1)
_REL_O = (0, 0, 1, 1, 0, 1, 1)

ACCESS_NAMES = ("mac", "registers", "accumulator", "scratchpad", "dram")


def g(f: torch.Tensor) -> torch.Tensor:
    """Loop guard (rule 1): factors <= 1 count as 1 and pass no gradient."""
    if not f.requires_grad:
        return f.clamp(min=1.0)  # same values, a cheaper kernel when no gradient is needed
    return torch.where(f > 1, f, 1.0)


@dataclass
class ModelOutput:
    """Per-row results of :func:`evaluate` (all [B] unless noted)."""

    cycles: torch.Tensor
    energy_uj: torch.Tensor
    accesses: torch.Tensor  # [B, 5] in ACCESS_NAMES order
    acc_words: torch.Tensor  # accumulator words one bank must hold (cap_1(O))
    sp_words: torch.Tensor  # scratchpad words (cap_2(W) + cap_2(I))
    max_spatial: torch.Tensor  # largest spatial fan-out: the PE array side it needs
    bounds: torch.Tensor  # [B, 5] the five latency bounds (cycles)


def _outer_multiplier(tf: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    """Product of loop factors above a level, skipping the innermost irrelevant run (rule 3).

    ``tf`` [B, L] are temporal factors walked innermost first, ``rel`` [B, L] whether each loop
    is relevant to the tensor. Once a relevant loop with factor > 1 is passed, every loop counts.
    """
    seen = torch.cummax(((tf > 1) & rel).to(torch.int8), dim=-1).values.bool()
    return torch.where(seen, g(tf), 1.0).prod(dim=-1)


def capacities(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
               spatial: torch.Tensor) -> dict[str, torch.Tensor]:
    """Tile sizes in words at the accumulator (L1) and scratchpad (L2) (spec §4.1)."""
    gt = g(temporal)
    gs = g(spatial)
    t1 = gt[:, 1] * gt[:, 0]  # rule 2: fold L0 into L1
    f1 = t1 * gs[:, 1]
    f2 = f1 * gt[:, 2] * gs[:, 2]
    ws, hs = strides[:, 0], strides[:, 1]

    def weights(f: torch.Tensor) -> torch.Tensor:
        return f[:, R] * f[:, S] * f[:, C] * f[:, K]

    def outputs(f: torch.Tensor) -> torch.Tensor:
        return f[:, P] * f[:, Q] * f[:, K] * f[:, N]

    tp = t1[:, P] * gt[:, 2, P]
    tq = t1[:, Q] * gt[:, 2, Q]
    tr = t1[:, R] * gt[:, 2, R]
    ts = t1[:, S] * gt[:, 2, S]
    sp_pq = (gs[:, 1:3, P] * gs[:, 1:3, Q]).prod(dim=-1)
    i2 = f2[:, C] * f2[:, N] * sp_pq * ((tp - 1) * ws + tr) * ((tq - 1) * hs + ts)
    max_spatial = torch.clamp(spatial[:, 1:].amax(dim=(1, 2)), min=1.0)
    return {"o1": outputs(f1), "w1": weights(f1), "o2": outputs(f2), "w2": weights(f2),
            "i2": i2, "max_spatial": max_spatial}


def _input_fills(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
                 spatial: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Scratchpad input fills from DRAM with sliding-window (halo) reuse (rule 4, spec §4.2)."""
    gt = g(temporal)
    gs = g(spatial)
    t3 = temporal[:, 3]
    ws, hs = strides[:, 0], strides[:, 1]
    cn = (gt[:, :3, C] * gs[:, :3, C] * gt[:, :3, N] * gs[:, :3, N]).prod(dim=-1)
    inner = gt[:, :3].prod(dim=1)  # [B, 7], includes the registers

    # DRAM loops innermost first; loops with factor <= 1 do not exist and go outermost.
    eff_key = rank[:, 3] + 7 * (t3 <= 1).to(rank.dtype)
    order = torch.argsort(eff_key, dim=-1)
    ord0, ord1 = order[:, 0], order[:, 1]
    pqrs = torch.tensor([P, Q, R, S], device=dims.device)
    iid0 = pqrs[torch.argmin(eff_key[:, pqrs], dim=-1)]

    # An innermost R (S) loop is absorbed into the tile's filter window.
    in_p, in_q = inner[:, P], inner[:, Q]
    in_r = inner[:, R] * torch.where(ord0 == R, g(t3[:, R]), 1.0)
    in_s = inner[:, S] * torch.where(ord0 == S, g(t3[:, S]), 1.0)
    pair = ((ord0 == R) & (ord1 == P)) | ((ord0 == S) & (ord1 == Q))
    iid = torch.where(pair, ord1, iid0)
    at_fpos = torch.where(pair, ord1, ord0)
    t_iid = t3.gather(1, iid.unsqueeze(1)).squeeze(1)
    has_f = (at_fpos == iid) & (t_iid > 1)
    f_iters = torch.where(has_f, t_iid, 1.0)

    # Outer multiplier over the DRAM loops, with the window loop(s) taken out.
    tf = t3.gather(1, order)
    rel = torch.tensor(_REL_I, dtype=torch.bool, device=dims.device)[order]
    pos = torch.arange(7, device=dims.device).expand_as(tf)
    fpos = pair.long().unsqueeze(1)
    f_loop = (pos == fpos) & has_f.unsqueeze(1)
    skip = f_loop | ((pos == 0) & pair.unsqueeze(1))
    seen = torch.cummax((((tf > 1) & rel) | f_loop).to(torch.int8), dim=-1).values.bool()
    m_i = torch.where(seen & ~skip, g(tf), 1.0).prod(dim=-1)

    def window_end(in_rs: torch.Tensor, in_pq: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
        fpos1 = torch.where(in_pq <= 1, in_rs,
                            torch.where(in_pq <= in_rs, in_rs - 1, torch.maximum(stride, in_rs)))
        return torch.where(in_rs <= 1, 1.0, torch.where(pair, fpos1, stride))

    width = (in_p - 1) * ws + in_r
    height = (in_q - 1) * hs + in_s
    iters_p = ((in_p - 1) * ws + window_end(in_r, in_p, ws)) * height
    iters_q = width * ((in_q - 1) * hs + window_end(in_s, in_q, hs))
    iters = torch.where(iid == P, iters_p, torch.where(iid == Q, iters_q, torch.zeros_like(ws)))
    return cn * m_i * (iters * (f_iters - 1) + width * height)


def accesses(dims: torch.Tensor, strides: torch.Tensor, temporal: torch.Tensor,
             spatial: torch.Tensor, rank: torch.Tensor,
             caps: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """Per-level access counts [B, 5]: MACs, registers, accumulator, scratchpad, DRAM."""
    if caps is None:
        caps = capacities(dims, strides, temporal, spatial)
    # dims innermost first per level: the inverse permutation of the ranks (no sort needed)
    inner_first = torch.empty_like(rank).scatter_(
        -1, rank, torch.arange(7, device=rank.device).expand_as(rank).contiguous())
    tf = temporal.gather(2, inner_first)
    gs = g(spatial)

    def rel_seq(rel: tuple[int, ...]) -> torch.Tensor:
        return torch.tensor(rel, dtype=torch.bool, device=dims.device)[inner_first]

    rw, ro = rel_seq(_REL_W), rel_seq(_REL_O)
    b = dims.shape[0]
    w_w0 = (_outer_multiplier(tf[:, 1:].reshape(b, -1), rw[:, 1:].reshape(b, -1))
            * gs[:, 1:].flatten(1).prod(dim=1))
    w_o1 = caps["o1"] * (_outer_multiplier(tf[:, 2:].reshape(b, -1), ro[:, 2:].reshape(b, -1))
                         * gs[:, 2:].flatten(1).prod(dim=1))
    w_w2 = caps["w2"] * _outer_multiplier(tf[:, 3], rw[:, 3])
    w_i2 = _input_fills(dims, strides, temporal, spatial, rank)

    mac = dims.prod(dim=-1)
    out = dims[:, P] * dims[:, Q] * dims[:, K] * dims[:, N]
    csp, ksp = gs[:, 1, C], gs[:, 2, K]
    acc = torch.stack([
        mac,
        mac + w_w0,
        2 * mac / csp - out + w_o1,
        w_w0 + w_w2 + mac / ksp + w_i2,
        w_w2 + w_i2 + 2 * w_o1 - out,
    ], dim=-1)
    return torch.clamp(acc, min=1.0)


def latency_bounds(acc: torch.Tensor, spatial: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """The five throughput bounds [B, 5] in cycles (rule 6); latency is their max."""
    csp, ksp = g(spatial[:, 1, C]), g(spatial[:, 2, K])
    return torch.stack([
        acc[:, 0] / (csp * ksp),
        acc[:, 1] / H.BW_REGISTERS,
        acc[:, 2] / (H.BW_ACC_PER_COLUMN * ksp),
        acc[:, 3] / (H.BW_SP_PER_PE_DIM * hw[:, 0]),
        acc[:, 4] / H.BW_DRAM,
    ], dim=-1)


def energy_uj(acc: torch.Tensor, hw: torch.Tensor) -> torch.Tensor:
    """Energy in µJ (rule 7)."""
    pe, sp_kb, acc_kb = hw[:, 0], hw[:, 1], hw[:, 2]
    pj = (H.E_MAC * acc[:, 0] + H.E_REG * acc[:, 1]
          + (H.E_ACC_BASE + H.E_ACC_PER_BANK_KB * acc_kb / pe) * acc[:, 2]
          + (H.E_SP_BASE + H.E_SP_PER_KB * sp_kb) * acc[:, 3]
          + H.E_DRAM * acc[:, 4])
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
    acc = accesses(dims, strides, temporal, spatial, rank, caps)
    bounds = latency_bounds(acc, spatial, hw)
    return ModelOutput(
        cycles=bounds.amax(dim=-1),
        energy_uj=energy_uj(acc, hw),
        accesses=acc,
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

