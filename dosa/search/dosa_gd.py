"""DOSA: one-loop, mapping-first gradient search over the mappings of all layers (spec §5).

Each start takes a random hardware configuration, builds a valid mapping per layer for it (an
open start-point generator instead of CoSA), and then forgets the hardware: from then on the
hardware is the *minimal* one that runs every layer's mapping (``min_hw``). Gradient descent
(Adam) moves the real-valued tiling factors of all layers at once to lower the network EDP
(Σ count·cycles)·(Σ count·energy); DRAM factors are derived so each dim stays factorised.
Periodically the factors are rounded to a valid mapping, the DRAM loop order of each layer is
chosen among the three canonical orders, and the rounded design is scored exactly. The best
rounded design over all starts within the hardware bounds is the gradient search's answer;
with ``refine_samples`` it is then refined exactly on fixed hardware (mapping optimisation and a
buffer-size pattern search, :func:`dosa.search.best_known.refine_design`), which never makes
it worse.

Two named configurations:

* ``variant="paper"`` - the published schedule: linear factors scaled by the per-coordinate
  maxima m of spec §5.3 (so a step moves a factor by about lr·m), hard max in min-HW, Adam state
  carried across roundings, per-workload learning rates.
* ``variant="improved"`` - fixes of spec §9 items 5, 8, 10, 11: log-factor parameterisation with
  one documented step size, log-sum-exp smooth max in min-HW, Adam restarted at each rounding,
  and rounding every 100 steps.

Sample accounting (spec §5.9): one *sample* is one evaluation of a network design point, i.e.
one gradient step; each start's initial design counts one more (as the paper's CoSA point).
Rounding evaluations are not counted as samples. The refinement counts its layer-mapping
evaluations / layers (the baselines' accounting). ``model_evals`` counts every layer-mapping
evaluation the model made, including the start generator's and the order search's.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.adam import adam
from tqdm import tqdm

from dosa import model
from dosa.evaluation import network_edp, network_objective, objective_of
from dosa.hardware import Hardware, area_model
from dosa.mapping import (
    DRAM_ORDERS,
    Mapping,
    order_to_rank,
    parse_mapping,
    round_mapping,
    stack_mappings,
)
from dosa.model import capacities, discretize_hw, evaluate, min_hw
from dosa.search.best_known import BestKnownConfig, refine_design, refinement_config
from dosa.search.options import (
    HardwareBounds,
    check_objective,
    check_seed,
    config_from_options,
    positive_int,
    positive_number,
)
from dosa.search.result import SearchResult, Trajectory, finish_result
from dosa.search.sampler import random_hardware, single_threaded
from dosa.search.starts import best_of_random_mappings, heuristic_mappings, milp_mappings
from dosa.workload import Network, as_network

log = logging.getLogger(__name__)

R, S, P, Q, C, K, N = range(7)
#: Paper learning rates per workload (spec §5.1); other networks use DEFAULT_LR.
PAPER_LR = {"resnet50": 7.5e-5, "retinanet": 7.5e-5, "unet": 5e-5, "bert": 1e-5}
DEFAULT_LR = 5e-5
IMPROVED_LR = 0.02  # log-space: about 2 % change of a factor per step
#: The optimised coordinates (kind, level, dim) and their paper scale m (spec §5.3).
COORDS: tuple[tuple[str, int, int, float], ...] = (
    ("s", 1, C, 16.0), ("s", 2, K, 8.0),
    ("t", 1, R, 3.0), ("t", 1, S, 3.0), ("t", 1, P, 14.0), ("t", 1, Q, 14.0),
    ("t", 1, C, 64.0), ("t", 1, K, 128.0), ("t", 1, N, 1.0),
    ("t", 0, P, 30.0), ("t", 0, Q, 1.0),
)
VARIANTS = ("paper", "improved")
STARTS = ("heuristic", "random", "milp")
#: The screened configuration (the recommended one before the refinement, and the recommended
#: one for the latency and energy objectives and learned predictors, which the refinement does
#: not serve): the improved schedule, 3 of the 7 starts from the hardware screen, and 1,346
#: steps so that the total stays at the paper's ~10,500 samples (7 x 1,346 steps + up to 1,008
#: screened points).
SCREENED: dict[str, Any] = {"variant": "improved", "round_every": 100, "steps": 1346,
                            "screen": 3}
#: The recommended configuration (the default of ``dosa search``, measured in notebook 08's
#: ablation): the screened one with 400 steps, and the samples this frees (up to 6,600)
#: spent on the exact refinement of the best design: 7 x 400 + 1,008 + 6,600 ~ 10,500.
#: (Tried on seeds 0-1 of notebook 08's 32 area cells, runs within 5 % of the best-known
#: design: 600 steps + 4,400 refinement samples 37 of 64, 600 + 5,200 41, 400 + 6,600 43,
#: 300 + 7,300 41 with a worse worst cell.)
RECOMMENDED: dict[str, Any] = {**SCREENED, "steps": 400, "refine_samples": 6600}


#: The predictor values that mean the analytical model itself (no learned latency model).
ANALYTICAL: tuple[str | None, ...] = (None, "analytical")
#: What the exact refinement needs of each option: it optimises network EDP on the analytical
#: model and chooses pe_dim itself.
REFINEMENT_NEEDS: dict[str, tuple[str | None, ...]] = {
    "objective": ("edp",), "predictor": ANALYTICAL, "pe_dim": (None,)}


def refinement_blocker(objective: str, predictor: str | None, pe_dim: int | None
                       ) -> str | None:
    """The first option (field name) whose value the exact refinement cannot serve
    (:data:`REFINEMENT_NEEDS`), or None."""
    given = {"objective": objective, "predictor": predictor, "pe_dim": pe_dim}
    return next((name for name, allowed in REFINEMENT_NEEDS.items()
                 if given[name] not in allowed), None)


def recommended(objective: str = "edp", predictor: str | None = None,
                pe_dim: int | None = None) -> dict[str, Any]:
    """The recommended configuration for these options: :data:`RECOMMENDED`, or
    :data:`SCREENED` where the refinement does not apply (:func:`refinement_blocker`)."""
    if refinement_blocker(objective, predictor, pe_dim) is None:
        return dict(RECOMMENDED)
    return dict(SCREENED)


@dataclass(frozen=True)
class DosaConfig:
    """All knobs of a DOSA run (the paper's defaults)."""

    starts: int = 7
    steps: int = 1490
    round_every: int = 500
    lr: float | None = None
    variant: str = "paper"
    start: str = "heuristic"
    start_k: int = 100
    smooth: float | None = None
    reset_adam: bool | None = None
    pe_dim: int | None = None
    max_pe_dim: int | None = None
    max_sp_kb: float | None = None
    max_acc_kb: float | None = None
    max_area_mm2: float | None = None
    predictor: str | None = None
    #: What the search minimises (:data:`dosa.evaluation.OBJECTIVES`).
    objective: str = "edp"
    #: Mapping strings of a previous design of the same network (one per layer): start 0
    #: begins from them and their minimal hardware instead of a random start.
    warm_start: tuple[str, ...] | None = None
    #: The previous design's own hardware ({pe_dim, sp_kb, acc_kb}; needs ``warm_start``): the
    #: warm mappings on it are a candidate too (when inside the bounds), so the answer is never
    #: worse than the previous design, whatever hardware its refinement chose.
    warm_hardware: dict[str, Any] | None = None
    #: Starts taken from the best points of the power-of-two hardware grid inside the bounds,
    #: scored with the heuristic mapper, instead of random hardware (0 = none).
    screen: int = 0
    #: Samples (network evaluations) of the exact refinement of the best design after the
    #: gradient search (:func:`dosa.search.best_known.refine_design`; 0 = none). It optimises
    #: network EDP on the analytical model, so it needs the EDP objective, no learned
    #: predictor and a free pe_dim.
    refine_samples: int = 0
    #: Compile the step loss with ``torch.compile`` (inductor, one graph; needs a C++
    #: compiler): about twice the gradient steps per second on CPU, after a first compilation
    #: per network shape and configuration (seconds to a minute; inductor caches it on disk).
    #: Compiled arithmetic may differ from eager in the last bits, so it is part of the run
    #: key. Analytical model only.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
        for name in ("starts", "steps", "round_every", "start_k"):
            positive_int(name, getattr(self, name))
        for name in ("lr", "smooth"):
            positive_number(name, getattr(self, name), optional=True)
        check_objective(self.objective)
        if isinstance(self.screen, bool) or not isinstance(self.screen, int) \
                or not 0 <= self.screen <= self.starts:
            raise ValueError(f"screen must be an integer in [0, starts={self.starts}], "
                             f"got {self.screen!r}")
        if isinstance(self.refine_samples, bool) or not isinstance(self.refine_samples, int) \
                or self.refine_samples < 0:
            raise ValueError(f"refine_samples must be an integer >= 0 (0 = no refinement), "
                             f"got {self.refine_samples!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        if self.compile and self.predictor not in ANALYTICAL:
            raise ValueError(f"compile=True needs the analytical model (predictor None or "
                             f"'analytical'), got predictor={self.predictor!r}")
        blocker = refinement_blocker(self.objective, self.predictor, self.pe_dim)
        if self.refine_samples and blocker is not None:
            raise ValueError(f"refine_samples > 0 (the exact refinement optimises network EDP "
                             f"on the analytical model with a free pe_dim) needs {blocker} in "
                             f"{REFINEMENT_NEEDS[blocker]}, got {getattr(self, blocker)!r}; "
                             f"set refine_samples=0")
        if self.warm_start is not None:
            if isinstance(self.warm_start, str) or not all(
                    isinstance(m, str) for m in self.warm_start):
                raise ValueError("warm_start must be a list of mapping strings (one per layer), "
                                 f"got {self.warm_start!r}")
            object.__setattr__(self, "warm_start", tuple(self.warm_start))
        if self.warm_hardware is not None:
            if self.warm_start is None:
                raise ValueError("warm_hardware needs warm_start (the mappings it holds)")
            if not isinstance(self.warm_hardware, dict):
                raise ValueError("warm_hardware must be a dict with pe_dim, sp_kb and acc_kb, "
                                 f"got {self.warm_hardware!r}")
            try:
                Hardware.from_dict(self.warm_hardware)
            except ValueError as err:
                raise ValueError(f"warm_hardware: {err}") from None
        self.bounds()  # validates the hardware bounds (one implementation for every method)
        if self.refine_samples:
            self.refinement()

    def refinement(self) -> BestKnownConfig:
        """The exact refinement's configuration inside these bounds (refused, naming
        ``refine_samples``, where the bounds leave it nothing to search)."""
        try:
            return refinement_config(self.bounds())
        except ValueError as err:
            raise ValueError(f"refine_samples > 0: {err}") from None

    def learning_rate(self, workload: str) -> float:
        if self.lr is not None:
            return self.lr
        if self.variant == "improved":
            return IMPROVED_LR
        return PAPER_LR.get(workload, DEFAULT_LR)

    def smooth_temperature(self) -> float | None:
        if self.smooth is not None:
            return self.smooth
        return 0.05 if self.variant == "improved" else None

    def restarts_adam(self) -> bool:
        return self.reset_adam if self.reset_adam is not None else self.variant == "improved"

    def bounds(self) -> HardwareBounds:
        return HardwareBounds(self.pe_dim, self.max_pe_dim, self.max_sp_kb, self.max_acc_kb,
                              self.max_area_mm2)

    def feasible(self, hw: Hardware) -> bool:
        """Does ``hw`` honour the hardware bounds?"""
        return self.bounds().feasible(hw)


class _Problem:
    """Tensors of one network, replicated for G starts searched together, and θ <-> factors."""

    def __init__(self, network: Network, cfg: DosaConfig, groups: int = 1) -> None:
        self.network = network
        self.cfg = cfg
        self.layers = len(network.layers)
        self.groups = groups
        self.base_dims = torch.tensor(network.dims_array(), dtype=torch.float64)
        self.base_strides = torch.tensor(network.strides_array(), dtype=torch.float64)
        self.dims = self.base_dims.repeat(groups, 1)
        self.strides = self.base_strides.repeat(groups, 1)
        self.counts = torch.tensor(network.counts_array(), dtype=torch.float64)
        self.scale = torch.tensor([c[3] for c in COORDS], dtype=torch.float64)
        self.log_space = cfg.variant == "improved"
        self.max_spatial = cfg.pe_dim if cfg.pe_dim is not None else cfg.max_pe_dim
        # each coordinate's slot in the flattened (temporal, spatial) factor tables [2 * 4 * 7]
        self.slots = torch.tensor([(kind == "s") * 28 + 7 * lvl + d
                                   for kind, lvl, d, _ in COORDS])

    def batch(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer dims and strides for g designs of the network, [g·L, 7] and [g·L, 2]."""
        if g == self.groups:
            return self.dims, self.strides
        return self.base_dims.repeat(g, 1), self.base_strides.repeat(g, 1)

    def coords_of(self, mappings: list[Mapping]) -> torch.Tensor:
        t, s, _ = stack_mappings(mappings)
        cols = [(s if kind == "s" else t)[:, lvl, d] for kind, lvl, d, _ in COORDS]
        return torch.stack(cols, dim=1)

    def theta_of(self, coords: torch.Tensor) -> torch.Tensor:
        return torch.log(coords) if self.log_space else coords / self.scale

    def coords_from_theta(self, theta: torch.Tensor) -> torch.Tensor:
        return torch.exp(theta) if self.log_space else theta * self.scale

    def factors(self, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Full temporal/spatial tables [B, 4, 7]; DRAM factors derived (raw, spec §4.8)."""
        n = coords.shape[0]
        flat = torch.ones(n, 56, dtype=torch.float64).index_copy(1, self.slots, coords)
        temporal, spatial = flat[:, :28].view(n, 4, 7), flat[:, 28:].view(n, 4, 7)
        inner = (temporal[:, :3] * spatial[:, :3]).prod(dim=1)
        dram = self.batch(n // self.layers)[0] / inner
        return torch.cat([temporal[:, :3], dram.unsqueeze(1)], dim=1), spatial

    def network_terms(self, temporal: torch.Tensor, spatial: torch.Tensor, rank: torch.Tensor,
                      smooth: float | None, predictor: Any, discrete: bool = False,
                      hardware: Hardware | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-layer cycles and energy [G, L] on the derived min-HW [G, 3] of each start
        (or on ``hardware``, the same for every start)."""
        g, n_layers = temporal.shape[0] // self.layers, self.layers
        dims, strides = self.batch(g)
        caps = capacities(dims, strides, temporal, spatial)
        if hardware is not None:
            hw = torch.tensor([hardware.as_tuple()], dtype=torch.float64).expand(g, 3)
        else:
            hw = min_hw(caps["o1"].view(g, n_layers), (caps["w2"] + caps["i2"]).view(g, n_layers),
                        caps["max_spatial"].view(g, n_layers), smooth=smooth,
                        pe_dim=self.cfg.pe_dim)
        if discrete and hardware is None:
            hw = discretize_hw(hw)
        hw_rows = hw.repeat_interleave(n_layers, dim=0)
        out = evaluate(dims, strides, temporal, spatial, rank, hw_rows, caps)
        cycles = out.cycles if predictor is None else predictor(
            dims, strides, temporal, spatial, rank, hw_rows, out)
        return cycles.view(g, n_layers), out.energy_uj.view(g, n_layers), hw


@dataclass
class _Candidate:
    value: float  # the objective's value
    edp: float
    hardware: Hardware
    mappings: list[str]
    samples: int


def _exact(problem: _Problem, mappings: list[Mapping], predictor: Any,
           hardware: Hardware | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluation-mode per-layer cycles/energy [G, L] and hardware [G, 3] of rounded designs
    (on their minimal hardware, or on ``hardware``)."""
    t, s, r = stack_mappings(mappings)
    with torch.no_grad():
        cycles, energy, hw = problem.network_terms(t, s, r, None, predictor, discrete=True,
                                                   hardware=hardware)
    return cycles.numpy(), energy.numpy(), hw.numpy()


def _order_search(problem: _Problem, mappings: list[Mapping], predictor: Any
                  ) -> tuple[list[Mapping], int]:
    """Greedy per-layer choice among the canonical DRAM orders by the exact network objective
    (EDP in the paper, §5.7).

    Loop orders do not change tile sizes, so the min-HW - and the other layers' scores - stay
    fixed while one layer's order is chosen. (Trying every order of the DRAM loops instead of
    the three canonical ones found the same designs on ResNet-50 and BERT, so it is not offered.)
    """
    counts = problem.counts.numpy()
    cur_c, cur_e, hw = _exact(problem, mappings, predictor)
    cur_c, cur_e = cur_c[0].copy(), cur_e[0].copy()
    variants, owner = [], []
    for i, m in enumerate(mappings):
        for order in DRAM_ORDERS.values():
            variants.append(m.with_order(3, order))
            owner.append(i)
    owner_t = torch.tensor(owner)
    t, s, r = stack_mappings(variants)
    hw_rows = torch.from_numpy(hw).expand(len(variants), 3)
    dims, strides = problem.base_dims[owner_t], problem.base_strides[owner_t]
    with torch.no_grad():
        out = evaluate(dims, strides, t, s, r, hw_rows)
        cyc = out.cycles if predictor is None else predictor(dims, strides, t, s, r, hw_rows, out)
    cyc, en = cyc.numpy(), out.energy_uj.numpy()
    owner_np = np.asarray(owner)
    chosen = list(mappings)
    for layer in range(len(mappings)):
        idx = np.nonzero(owner_np == layer)[0]
        other_c = (counts * cur_c).sum() - counts[layer] * cur_c[layer]
        other_e = (counts * cur_e).sum() - counts[layer] * cur_e[layer]
        n = counts[layer]
        value = objective_of(problem.cfg.objective, other_c + n * cyc[idx], other_e + n * en[idx])
        current = objective_of(problem.cfg.objective, other_c + n * cur_c[layer],
                               other_e + n * cur_e[layer])
        k = int(np.argmin(value))
        if value[k] < current:
            chosen[layer] = variants[idx[k]]
            cur_c[layer], cur_e[layer] = cyc[idx[k]], en[idx[k]]
    return [m.canonical() for m in chosen], len(variants) + len(mappings)


def _load_predictor(spec: str | None) -> tuple[Any, dict[str, Any]]:
    """The latency predictor of ``spec`` and the evaluator description stored in the result.

    None/"analytical" -> the model's own latency; "dnn"/"both" -> the predictor trained by
    notebook 04; anything else -> a saved predictor file. The file's sha256 is recorded, so a
    result always says which trained model its latencies come from.
    """
    from dosa.search.result import ANALYTICAL

    if spec is None or spec == "analytical":
        return None, dict(ANALYTICAL)
    from dosa.claims import display_path
    from dosa.learned import file_sha256, load_predictor, predictor_path

    path = predictor_path(spec)
    predictor = load_predictor(path)
    for p in getattr(predictor, "parameters", lambda: [])():
        p.requires_grad_(False)
    if hasattr(predictor, "eval"):
        predictor.eval()
    evaluator = {"latency": f"learned predictor {spec!r}", "energy": "analytical",
                 "predictor_file": display_path(path), "predictor_sha256": file_sha256(path)}
    return predictor, evaluator


def _start_hardware(cfg: DosaConfig, seed: int, start: int) -> Hardware:
    """Random start hardware of one start (its own generator, so starts are independent)."""
    rng = np.random.default_rng([seed, start])
    for _ in range(1000):
        hw = random_hardware(rng, 1, pe_dim=cfg.pe_dim)[0]
        if cfg.feasible(hw):
            return hw
    raise ValueError("no random start hardware satisfies the hardware bounds "
                     f"(max_pe_dim={cfg.max_pe_dim}, max_sp_kb={cfg.max_sp_kb}, "
                     f"max_acc_kb={cfg.max_acc_kb}, max_area_mm2={cfg.max_area_mm2})")


def _bound_penalty(cfg: DosaConfig, hw: torch.Tensor) -> torch.Tensor:
    """Squared relative excess over each hardware bound, per start [G] (zero inside)."""
    pen = torch.zeros(hw.shape[0], dtype=torch.float64)
    for col, bound in ((0, cfg.max_pe_dim), (1, cfg.max_sp_kb), (2, cfg.max_acc_kb)):
        if bound is not None:
            pen = pen + torch.relu(hw[:, col] / bound - 1) ** 2
    if cfg.max_area_mm2 is not None:
        area = area_model().predict_torch(hw[:, 0], hw[:, 1], hw[:, 2])
        pen = pen + torch.relu(area / cfg.max_area_mm2 - 1) ** 2
    return pen


def _start_points(problem: _Problem, cfg: DosaConfig, seed: int, start: int
                  ) -> tuple[Hardware, list[Mapping], int, int]:
    """(start hw, mappings, samples, model evals) of one random start."""
    hw0 = _start_hardware(cfg, seed, start)
    if cfg.start == "heuristic":
        return hw0, heuristic_mappings(problem.network, hw0), 1, 0
    if cfg.start == "milp":
        return hw0, milp_mappings(problem.network, hw0), 1, 0
    rng = np.random.default_rng([seed, start, 1])
    mappings, evals = best_of_random_mappings(problem.network, hw0, cfg.start_k, rng)
    return hw0, mappings, cfg.start_k, evals


def _warm_start(problem: _Problem, cfg: DosaConfig) -> tuple[Hardware, list[Mapping], int, int]:
    """The given design as a start: its mappings, on the minimal hardware that runs them."""
    assert cfg.warm_start is not None
    network = problem.network
    if len(cfg.warm_start) != len(network.layers):
        raise ValueError(f"warm_start has {len(cfg.warm_start)} mappings; network "
                         f"{network.name!r} has {len(network.layers)} layers")
    mappings = [parse_mapping(text) for text in cfg.warm_start]
    for layer, m in zip(network.layers, mappings, strict=True):
        m.check(layer)  # a mapping of another network is refused here, naming the layer
    _, _, hw = _exact(problem, mappings, None)
    return Hardware(int(hw[0, 0]), float(hw[0, 1]), float(hw[0, 2])), mappings, 1, 0


def _screened_starts(problem: _Problem, cfg: DosaConfig, count: int
                     ) -> list[tuple[Hardware, list[Mapping], int, int]]:
    """Starts on the ``count`` best points of the power-of-two grid inside the bounds.

    Every point is scored with the heuristic mapper (one sample per point, the grid
    baseline's accounting); the samples and model evaluations are booked on the first
    screened start, so the run's total counts them once. The screen makes DOSA never worse
    than the grid baseline inside the same bounds: its best point is a start, and DOSA's
    answer is never worse than a start.
    """
    from dosa.search.grid import grid_points, score_points

    bounds = cfg.bounds()
    pe_dims = None if cfg.pe_dim is None else (cfg.pe_dim,)
    hws = [hw for hw in grid_points(pe_dims) if bounds.feasible(hw)]
    scored = [(value, i, hw, mappings, n) for i, (hw, (value, mappings, n))
              in enumerate(zip(hws, score_points(problem.network, hws, cfg.objective),
                               strict=True)) if math.isfinite(value)]
    if len(scored) < count:
        raise ValueError(f"screen={count}, but only {len(scored)} grid points within the "
                         f"hardware bounds ({bounds}) hold the network")
    scored.sort(key=lambda x: (x[0], x[1]))
    evals = sum(n for *_, n in scored)
    return [(hw, mappings, len(hws) if j == 0 else 0, evals if j == 0 else 0)
            for j, (_, _, hw, mappings, _) in enumerate(scored[:count])]


def _all_starts(problem: _Problem, cfg: DosaConfig, seed: int
                ) -> tuple[list[tuple[Hardware, list[Mapping], int, int]], list[str]]:
    """Start 0 from ``warm_start`` (if given), then ``screen`` screened starts, then random
    starts (numbered by their position, so a run without warm start or screen is unchanged),
    and each start's kind ("warm", "screen", "random")."""
    starts = [_warm_start(problem, cfg)] if cfg.warm_start is not None else []
    if cfg.screen:
        starts += _screened_starts(problem, cfg, min(cfg.screen, cfg.starts - len(starts)))
    kinds = ["warm"] * (cfg.warm_start is not None) + ["screen"] * (len(starts) - (
        cfg.warm_start is not None))
    starts += [_start_points(problem, cfg, seed, g) for g in range(len(starts), cfg.starts)]
    return starts, kinds + ["random"] * (cfg.starts - len(kinds))


def _offer(rec: dict[str, Any], value: float, edp: float, hw: Hardware,
           mappings: list[Mapping], samples: int) -> None:
    """A design inside the hardware bounds, found at ``samples`` by one start: a point of the
    run's trajectory, and the start's best when its objective ``value`` is the least yet."""
    rec["points"].append([samples, value])
    if rec["best"] is None or value < rec["best"].value:
        rec["best"] = _Candidate(value, edp, hw, [m.to_string() for m in mappings], samples)


def _consider_warm_hardware(problem: _Problem, cfg: DosaConfig, rec: dict[str, Any],
                            mappings: list[Mapping], predictor: Any) -> None:
    """The warm mappings on the warm design's own hardware as a candidate of start 0 (one more
    sample), when that hardware is inside the bounds; hardware that does not hold the
    mappings is refused, naming ``warm_hardware``."""
    assert cfg.warm_hardware is not None
    hw = Hardware.from_dict(cfg.warm_hardware)
    for layer, m in zip(problem.network.layers, mappings, strict=True):
        try:
            m.check(layer, hw)
        except ValueError as err:
            raise ValueError(f"warm_hardware {hw} does not hold the warm_start mappings: "
                             f"{err}") from None
    rec["samples"] += 1
    rec["model_evals"] += problem.layers
    if not cfg.feasible(hw):
        return
    cyc, en, _ = _exact(problem, mappings, predictor, hardware=hw)
    counts = problem.counts.numpy()
    _offer(rec, float(network_objective(counts, cyc[:1], en[:1], cfg.objective)[0]),
           float(network_edp(counts, cyc[:1], en[:1])[0]), hw, mappings, rec["samples"])


def _objective_loss(objective: str, cycles: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """The differentiable objective of normalised network cycles and energy per start."""
    if objective == "latency":
        return cycles
    if objective == "energy":
        return energy
    return cycles * energy


class _Adam:
    """Adam on one tensor: torch's own functional ``adam`` with the state and arguments of
    ``torch.optim.Adam``'s defaults, so the same steps to the bit. Not the class itself, whose
    first construction imports ``torch._dynamo`` (0.3-0.7 s of a ``dosa search`` command,
    measured A/B)."""

    def __init__(self, param: torch.Tensor, lr: float) -> None:
        self.param, self.lr = param, lr
        self.exp_avg = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.exp_avg_sq = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.steps = torch.tensor(0.0, dtype=torch.float64 if torch.get_default_dtype()
                                  == torch.float64 else torch.float32)

    def step(self) -> None:
        assert self.param.grad is not None
        with torch.no_grad():
            adam([self.param], [self.param.grad], [self.exp_avg], [self.exp_avg_sq], [],
                 [self.steps], foreach=False, amsgrad=False, beta1=0.9, beta2=0.999,
                 lr=self.lr, weight_decay=0.0, eps=1e-8, maximize=False)


def step_loss(problem: _Problem, theta: torch.Tensor, rank: torch.Tensor, smooth: float | None,
              predictor: Any, scale: tuple[torch.Tensor, torch.Tensor] | None
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """The loss of one gradient step over all starts: each start's objective of its network
    cycles and energy, normalised by ``scale`` (the first step's totals, returned for the next
    steps), plus the penalties for factors below 1 and for exceeding the hardware bounds."""
    cfg = problem.cfg
    temporal, spatial = problem.factors(problem.coords_from_theta(theta))
    cycles, energy, hw_t = problem.network_terms(temporal, spatial, rank, smooth, predictor)
    tot_c = (problem.counts * cycles).sum(dim=1)
    tot_e = (problem.counts * energy).sum(dim=1)
    if scale is None:
        scale = (tot_c.detach(), tot_e.detach())
    perf = _objective_loss(cfg.objective, tot_c / scale[0], tot_e / scale[1])
    invalid = ((torch.relu(1 - temporal) ** 2).sum(dim=(1, 2))
               + (torch.relu(1 - spatial) ** 2).sum(dim=(1, 2))).view(problem.groups,
                                                                     problem.layers)
    loss = (perf + perf.detach() * (invalid.sum(dim=1) + _bound_penalty(cfg, hw_t))).sum()
    return loss, scale


@functools.cache
def _compiled_step_loss() -> Callable[..., Any]:
    """:func:`step_loss` under ``torch.compile``, one per process (inductor caches it).

    The model's surrogate switch is marked constant here, not where it is defined: the mark
    imports ``torch._dynamo``, which cost every command 1.0 s at import (``-X importtime``).
    """
    torch.compiler.assume_constant_result(model._surrogate_on)  # marks the function in place
    return torch.compile(step_loss, dynamic=False, fullgraph=True)


@contextlib.contextmanager
def _compile_limits() -> Iterator[None]:
    """Dynamo's graph limits raised while a compiled search runs, and only then: the step
    loss specialises on the network's shape and on the configuration (two graphs each: the
    first step sets the scale), so a sweep needs far more than the default 8 graphs per
    function, past which a ``fullgraph`` compile fails (measured)."""
    from torch._dynamo import config as dynamo_config

    with dynamo_config.patch(recompile_limit=4096, accumulated_recompile_limit=4096):
        yield


def _compiling_step(*args: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """A compiled step that may build a graph: whatever inductor raises there (e.g. without a
    C++ compiler) becomes one line naming the option."""
    try:
        return _compiled_step_loss()(*args)
    except Exception as err:  # inductor's errors have no common base class
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(f"compile=True: torch.compile failed here ({type(err).__name__}: "
                         f"{first}); run without compile") from None


def _run_starts(network: Network, cfg: DosaConfig, seed: int, predictor: Any, lr: float,
                bar: Any) -> list[dict[str, Any]]:
    """All starts at once (one batch of G x L rows): GD with periodic rounding."""
    groups = cfg.starts
    problem = _Problem(network, cfg, groups)
    n_layers = problem.layers
    starts, kinds = _all_starts(problem, cfg, seed)
    mappings = [m.canonical() for _, ms, _, _ in starts for m in ms]
    # history: every rounded design (the search's path, plotted per start); points: those
    # inside the hardware bounds (the run's trajectory counts only what it may return)
    records = [{"start": g, "kind": kinds[g], "start_hw": starts[g][0].to_dict(), "best": None,
                "history": [], "points": [],
                "samples": starts[g][2], "model_evals": starts[g][3]} for g in range(groups)]
    counts = problem.counts.numpy()

    def consider(designs: list[Mapping], steps_done: int) -> None:
        cyc, en, hw = _exact(problem, designs, predictor)
        edp = network_edp(counts, cyc, en)
        value = network_objective(counts, cyc, en, cfg.objective)
        for g in range(groups):
            rec = records[g]
            rec["model_evals"] += n_layers
            rec["history"].append([rec["samples"] + steps_done, float(value[g])])
            hw_g = Hardware(int(hw[g, 0]), float(hw[g, 1]), float(hw[g, 2]))
            if cfg.feasible(hw_g):
                _offer(rec, float(value[g]), float(edp[g]), hw_g,
                       designs[g * n_layers:(g + 1) * n_layers], rec["samples"] + steps_done)

    consider(mappings, 0)
    if cfg.warm_hardware is not None:
        _consider_warm_hardware(problem, cfg, records[0], mappings[:n_layers], predictor)
    rank = torch.from_numpy(np.stack([m.rank for m in mappings]).copy())
    theta = problem.theta_of(problem.coords_of(mappings)).clone().requires_grad_(True)
    opt = _Adam(theta, lr)
    smooth = cfg.smooth_temperature()
    scale: tuple[torch.Tensor, torch.Tensor] | None = None
    # compiled: the first two steps build the graphs (without and with the scale)
    steps = [_compiling_step] * 2 + [_compiled_step_loss()] if cfg.compile else [step_loss]
    for step in range(cfg.steps):
        loss, scale = steps[min(step, len(steps) - 1)](problem, theta, rank, smooth, predictor,
                                                      scale)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}")
        theta.grad = None
        loss.backward()
        opt.step()
        bar.update(1)
        if (step + 1) % cfg.round_every == 0 or step + 1 == cfg.steps:
            with torch.no_grad():
                temporal, spatial = problem.factors(problem.coords_from_theta(theta))
            t_np, s_np, r_np = temporal.numpy(), spatial.numpy(), rank.numpy()
            rounded: list[Mapping] = []
            for g in range(groups):
                sl = slice(g * n_layers, (g + 1) * n_layers)
                designs = [round_mapping(t_np[i], s_np[i], r_np[i], lay,
                                         max_spatial=problem.max_spatial)
                           for i, lay in zip(range(sl.start, sl.stop), network.layers,
                                             strict=True)]
                designs, n = _order_search(problem, designs, predictor)
                records[g]["model_evals"] += n
                rounded += designs
            consider(rounded, step + 1)
            best = min((r["best"].value for r in records if r["best"] is not None),
                       default=math.inf)
            bar.set_postfix({f"best_{cfg.objective}": f"{best:.4g}"})
            if step + 1 < cfg.steps:
                rank = torch.from_numpy(np.stack([m.rank for m in rounded]).copy())
                with torch.no_grad():
                    theta.copy_(problem.theta_of(problem.coords_of(rounded)))
                if cfg.restarts_adam():
                    opt = _Adam(theta, lr)
    for rec in records:
        rec["samples"] += cfg.steps
        rec["model_evals"] += cfg.steps * n_layers
        rec["best"] = None if rec["best"] is None else asdict(rec["best"])
    return records


def dosa_search(network: Network | str, seed: int, *, progress: bool = False,
                checkpoint_dir: str | Path | None = None, **options: Any) -> SearchResult:
    """Run DOSA on ``network`` (a Network, a built-in name or a YAML path); options are the
    fields of :class:`DosaConfig`.

    ``checkpoint_dir`` is accepted for the common method signature but unused: a paper-budget
    run takes seconds, so an interrupted run restarts cleanly instead of resuming.
    """
    network = as_network(network)
    seed = check_seed(seed)
    cfg = config_from_options(DosaConfig, options, "DOSA")
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    predictor, evaluator = _load_predictor(cfg.predictor)
    lr = cfg.learning_rate(network.name)
    bar = tqdm(total=cfg.steps, disable=not progress, unit="step",
               desc=f"dosa {network.name} ({cfg.starts} starts)")
    try:
        # G x L rows per step: small ops, where threads only spin
        with single_threaded(), _compile_limits() if cfg.compile else contextlib.nullcontext():
            records = _run_starts(network, cfg, seed, predictor, lr, bar)
    finally:
        bar.close()

    trajectory = Trajectory()
    offset = 0
    model_evals = 0
    for rec in records:
        for s, e in rec["points"]:
            trajectory.record(offset + int(s), e)
        offset += rec["samples"]
        model_evals += rec["model_evals"]
    feasible = [r for r in records if r["best"] is not None]
    if not feasible:
        raise ValueError("no start produced a design within the hardware bounds")
    winner = min(feasible, key=lambda r: r["best"]["value"])
    mappings = [parse_mapping(s) for s in winner["best"]["mappings"]]
    hw = Hardware.from_dict(winner["best"]["hardware"])
    value = winner["best"]["value"]
    refinement = None
    if cfg.refine_samples:
        layers = len(network.layers)
        with single_threaded():
            edp, hw_r, maps_r, evals, history = refine_design(
                network, hw, mappings, cfg.refinement(), seed, cfg.refine_samples * layers,
                edp=winner["best"]["edp"])
        for n, e in history:
            trajectory.record(offset + math.ceil(n / layers), e)
        refinement = {"samples": math.ceil(evals / layers), "model_evals": evals,
                      "edp_before": value, "edp_after": min(edp, value),
                      "hardware_before": hw.to_dict()}
        offset += refinement["samples"]
        model_evals += evals
        if edp < value:
            value, hw, mappings = edp, hw_r, maps_r
    extra: dict[str, Any] = {
        "best_start": winner["start"],
        "starts": [{"start": r["start"], "kind": r["kind"], "start_hw": r["start_hw"],
                    "best_edp": None if r["best"] is None else r["best"]["edp"],
                    "best_value": None if r["best"] is None else r["best"]["value"],
                    "history": r["history"]} for r in records],
        "learning_rate": lr,
        "sample_accounting": "1 per gradient step + 1 per start point (paper, spec §5.9)"
                             + ("; refinement: layer evaluations / layers" if refinement else ""),
        "refinement": refinement,
    }
    result = finish_result(method="dosa", seed=seed, network=network, hardware=hw,
                           mappings=mappings, samples=offset, model_evals=model_evals,
                           wall_s=time.perf_counter() - t0, trajectory=trajectory,
                           config=asdict(cfg), extra=extra, predictor=predictor,
                           evaluator=evaluator, objective=cfg.objective)
    if not math.isclose(result.objective_value, value, rel_tol=1e-9):
        raise AssertionError(f"exact re-score {result.objective_value} != search score {value}")
    return result


__all__ = ["DosaConfig", "dosa_search", "order_to_rank", "PAPER_LR", "RECOMMENDED", "SCREENED",
           "VARIANTS", "recommended"]
