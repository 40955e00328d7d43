"""Bayesian-optimisation baselines of Fig. 7 (spec §6.2), on scikit-optimize / scikit-learn.

``bayes_search`` ("bo") is the paper's nested BO, made sane (spec §9 item 17):

* Outer loop: a scikit-optimize :class:`~skopt.Optimizer` (GP surrogate, EI or LCB acquisition,
  ``acq_optimizer="sampling"``) over the hardware in log2 space - log2 pe_dim 1..7, log2 KB of
  scratchpad and accumulator 0..11, the random-hardware grid of spec §1.2 - minimising the *log*
  of the network EDP (the original fit a GP to raw EDP). Hardware bounds (``max_*``, as in DOSA)
  restrict the space to the feasible grid points (:class:`HardwareSpace`). Each proposal is
  evaluated by the inner search; proposals follow the acquisition function, so the original's
  double-argsort bug (its final 10 "best" proposals were effectively arbitrary grid points) has
  no counterpart here.
* Inner loop, per proposed hardware and per layer: ``mappings_per_hw`` random valid mappings are
  evaluated with the model; a GP (scikit-learn's regressor with a fixed kernel, written out in
  :func:`standard_scale` and :func:`gp_lcb` with the same float operations, so the same bits, but
  without the estimators' per-call overhead: a 100-hardware ResNet-50 run went from 28.5 to
  16.4 s) is fitted to their log per-layer EDP on a compact 17-number encoding of the mapping
  (:func:`encode_mappings`, instead of the original's 84 raw columns with meaningless
  permutation keys); ``candidates_per_layer`` further random valid
  mappings are ranked by the lower confidence bound mean - 1·std and the ``top_k`` best are
  evaluated. The layer keeps the least-EDP mapping among everything evaluated.

  The per-layer GP uses *fixed* kernel hyperparameters (constant 1 x Matérn-5/2 with isotropic
  length scale sqrt(#features) on standardised features, white noise 1e-2, normalised targets),
  as the original did (it used sklearn's fixed default kernel). Fitting the hyperparameters
  (ARD, L-BFGS) ranked held-out mappings only marginally better (Spearman 0.89 vs 0.89) and cost
  ~100x more, which would make a 100-hardware ResNet-50 run take many minutes.

``bayes_flat_search`` ("bo-flat") is plain scikit-optimize BO over the three hardware numbers with
a deterministic heuristic mapper (:func:`dosa.search.starts.heuristic_mappings`) inside.

Both minimise network EDP by default; ``objective="latency"`` or ``"energy"`` puts that objective
everywhere EDP stands above (the log of it for both GPs, the per-layer choice, the best design).
The heuristic mapper of "bo-flat" itself stays EDP-driven.

Sample accounting (paper): one proposed hardware counts ``mappings_per_hw`` samples for "bo"
(100 in the paper) and 1 sample (one network design point) for "bo-flat". ``model_evals`` counts
layer-mapping model evaluations: per hardware and layer the random training mappings plus the
``top_k`` LCB picks for "bo"; one per layer per hardware for "bo-flat" (evaluations made inside
the heuristic mapper, if any, are not counted).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from skopt import Optimizer
from skopt.space import Integer
from skopt.utils import cook_estimator
from tqdm import tqdm

from dosa.evaluation import network_objective, objective_of
from dosa.hardware import Hardware
from dosa.mapping import Mapping
from dosa.search.options import (
    HardwareBounds,
    check_objective,
    check_seed,
    grid_hardware,
    positive_int,
)
from dosa.search.random_search import Samples, evaluate_samples, pick_best
from dosa.search.result import SearchResult, Trajectory, finish_result
from dosa.search.sampler import sample_mappings, single_threaded
from dosa.workload import Network, as_network

log = logging.getLogger(__name__)

R, S, P, Q, C, K, N = range(7)
ACQ_FUNCS = ("EI", "LCB")
LCB_KAPPA = 1.0  # inner-loop lower confidence bound: mean - 1·std (as the original)
GP_NOISE = 1e-2  # white noise on standardised log-objective targets
NUM_FEATURES = 17
ACQ_POINTS = 1000  # random hardware points on which the outer acquisition is minimised


def encode_mappings(temporal: np.ndarray, spatial: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Compact numeric features of sampler mappings -> float64 [m, 17].

    The free coordinates of the legal mapspace: log2 of Csp, Ksp, the 7 accumulator (L1)
    temporal factors and the register P factor (DRAM factors are the remainder, so they add no
    information), plus the DRAM loop order as each dim's position among the DRAM loops that
    exist (factor > 1), innermost 0; absent loops get 7.
    """
    factors = np.stack([spatial[:, 1, C], spatial[:, 2, K], *(temporal[:, 1, d] for d in range(7)),
                        temporal[:, 0, P]], axis=1)
    exists = temporal[:, 3] > 1
    key = np.where(exists, rank[:, 3], rank[:, 3] + 7)
    pos = np.argsort(np.argsort(key, axis=1, kind="stable"), axis=1, kind="stable")
    pos = np.where(exists, pos, 7).astype(np.float64)
    return np.concatenate([np.log2(factors.astype(np.float64)), pos], axis=1)


#: Isotropic Matérn length scale on standardised features.
LENGTH_SCALE = math.sqrt(NUM_FEATURES)
#: scikit-learn's default jitter added to the training kernel's diagonal.
GP_JITTER = 1e-10


def _layer_gp() -> GaussianProcessRegressor:
    """The per-layer GP as a scikit-learn estimator: the reference :func:`gp_lcb` reproduces
    (tests compare them bit for bit)."""
    kernel = (ConstantKernel(1.0, "fixed")
              * Matern(length_scale=LENGTH_SCALE, length_scale_bounds="fixed", nu=2.5)
              + WhiteKernel(GP_NOISE, "fixed"))
    return GaussianProcessRegressor(kernel, optimizer=None, alpha=GP_JITTER, normalize_y=True)


def _matern52(dists: np.ndarray) -> np.ndarray:
    k = dists * math.sqrt(5)
    return (1.0 + k + k ** 2 / 3.0) * np.exp(-k)


def standard_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and scale of ``x`` [n, d] with ``StandardScaler.fit``'s float operations.

    Population variance by the corrected two-pass sum; a column whose variance is within
    rounding of 0 (scikit-learn's ``_is_constant_feature`` bound) gets scale 1, so constant
    columns standardise to 0 instead of dividing by ~0. Same operations, so the same bits,
    without the estimator's per-call validation (both BO baselines use it).
    """
    n = x.shape[0]
    total = np.sum(x, axis=0)
    mean = total / n
    dev = x - mean
    correction = np.sum(dev, axis=0)
    dev **= 2
    var = (np.sum(dev, axis=0) - correction ** 2 / n) / n
    eps = np.finfo(np.float64).eps
    constant = var <= n * eps * var + (n * mean * eps) ** 2
    scale = np.sqrt(var)
    scale[constant] = 1.0
    return mean, scale


def gp_lcb(x_train: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Lower confidence bound (mean - :data:`LCB_KAPPA` std) of :func:`_layer_gp` fitted to
    (``x_train``, ``y``) at ``x_test``, with the fixed kernel written out.

    The same float operations in the same order as scikit-learn's fit and predict (so the same
    bits), without the estimator's per-call validation and kernel-object overhead, which was
    most of a BO run's time (one fit and one predict per layer and hardware).
    """
    y_mean = np.mean(y, axis=0)
    y_std = np.std(y, axis=0)
    y_std = 1.0 if y_std == 0.0 else y_std
    k = squareform(_matern52(pdist(x_train / LENGTH_SCALE, metric="euclidean")))
    np.fill_diagonal(k, 1)
    k = k + GP_NOISE * np.eye(len(x_train))
    k[np.diag_indices_from(k)] += GP_JITTER
    chol = cholesky(k, lower=True, check_finite=False)
    alpha = cho_solve((chol, True), (y - y_mean) / y_std, check_finite=False)
    k_trans = _matern52(cdist(x_test / LENGTH_SCALE, x_train / LENGTH_SCALE,
                              metric="euclidean"))
    mean = y_std * (k_trans @ alpha) + y_mean
    v = solve_triangular(chol, k_trans.T, lower=True, check_finite=False)
    var = np.full(len(x_test), 1.0 + GP_NOISE) - np.einsum("ij,ji->i", v.T, v)
    var[var < 0] = 0.0
    return mean - LCB_KAPPA * np.sqrt(var * y_std ** 2)


def lcb_top_k(train: tuple[np.ndarray, np.ndarray, np.ndarray], log_edp: np.ndarray,
              cands: tuple[np.ndarray, np.ndarray, np.ndarray], top_k: int) -> np.ndarray:
    """Indices of the ``top_k`` candidates of least GP lower confidence bound (mean - std).

    ``log_edp`` is the log of whatever per-layer objective the search minimises (EDP by default).
    """
    if len(cands[0]) <= top_k:
        return np.arange(len(cands[0]))
    x_train, x_test = encode_mappings(*train), encode_mappings(*cands)
    mean, scale = standard_scale(x_train)
    lcb = gp_lcb((x_train - mean) / scale, log_edp, (x_test - mean) / scale)
    return np.argsort(lcb, kind="stable")[:top_k]


def _take(arrays: tuple[np.ndarray, np.ndarray, np.ndarray], idx: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return arrays[0][idx], arrays[1][idx], arrays[2][idx]


def inner_search(network: Network, hw: Hardware, rng: np.random.Generator, *,
                 mappings_per_hw: int, candidates_per_layer: int, top_k: int,
                 objective: str = "edp"
                 ) -> tuple[list[Mapping], np.ndarray, np.ndarray, int]:
    """GP-guided per-layer mapping search on one hardware config.

    The GP models the log per-layer ``objective``. Returns the per-layer least-``objective``
    mappings, their cycles and energy [L], and the number of layer-mapping model evaluations
    made.
    """
    train = [sample_mappings(layer, hw, mappings_per_hw, rng) for layer in network]
    cycles, energy = evaluate_samples(network, hw, train)
    log_edp = np.log(objective_of(objective, cycles, energy))
    bounds = np.cumsum([0] + [len(t[0]) for t in train])
    picked: Samples = []
    for i, layer in enumerate(network):
        cands = sample_mappings(layer, hw, candidates_per_layer, rng)
        idx = lcb_top_k(train[i], log_edp[bounds[i]:bounds[i + 1]], cands, top_k)
        picked.append(_take(cands, idx))
    p_cycles, p_energy = evaluate_samples(network, hw, picked)
    # Everything evaluated for a layer competes: its training mappings and its LCB picks.
    p_bounds = np.cumsum([0] + [len(t[0]) for t in picked])
    merged: Samples = []
    m_cycles, m_energy = [], []
    for i in range(len(network)):
        merged.append(tuple(np.concatenate([a, b]) for a, b in zip(train[i], picked[i],
                                                                     strict=True)))
        m_cycles += [cycles[bounds[i]:bounds[i + 1]], p_cycles[p_bounds[i]:p_bounds[i + 1]]]
        m_energy += [energy[bounds[i]:bounds[i + 1]], p_energy[p_bounds[i]:p_bounds[i + 1]]]
    mappings, best_c, best_e = pick_best(merged, np.concatenate(m_cycles),
                                         np.concatenate(m_energy), objective)
    return mappings, best_c, best_e, int(len(cycles) + len(p_cycles))


class HardwareSpace:
    """The feasible hardware grid as a scikit-optimize space in log2 units.

    Axes log2 pe_dim (absent when pe_dim is fixed), log2 scratchpad KB and log2 accumulator KB,
    each narrowed to the exponents the feasible grid points use, so box bounds (max_pe_dim,
    max_sp_kb, max_acc_kb) simply shrink the Integer ranges; an axis left with one value is
    fixed instead of searched (skopt needs low < high). When the feasible points do not fill
    that box (an area bound cuts off a corner), :attr:`constraint` is skopt's
    ``space_constraint``: skopt then filters its random initial points, its acquisition samples
    and its duplicate fallback through it, so every proposal is feasible. That is the simplest
    deterministic choice: the GP keeps the ordered log2 lattice (a categorical index over the
    candidates would be one-hot encoded and lose it), and no evaluation is spent on an invented
    penalty value. With no bounds the space is exactly the pre-bounds one (no constraint), so
    unbounded runs reproduce earlier results.
    """

    AXES = ("log2_pe_dim", "log2_sp_kb", "log2_acc_kb")

    def __init__(self, bounds: HardwareBounds,
                 usable: Callable[[Hardware], bool] | None = None) -> None:
        self.bounds = bounds
        points = [hw for hw in bounds.require_candidates() if usable is None or usable(hw)]
        if not points:
            raise ValueError(f"no hardware inside the bounds ({bounds}) can run the network "
                             "with the heuristic mapper")
        coords = np.array([[0 if bounds.pe_dim is not None else round(math.log2(hw.pe_dim)),
                            round(math.log2(hw.sp_kb)), round(math.log2(hw.acc_kb))]
                           for hw in points], dtype=np.int64)
        low, high = coords.min(axis=0), coords.max(axis=0)
        self._searched = [a for a in range(3) if high[a] > low[a]]
        self._base = coords[0]
        self.dimensions = [Integer(int(low[a]), int(high[a]), name=self.AXES[a])
                           for a in self._searched]
        allowed = {tuple(int(v) for v in row[self._searched]) for row in coords}
        box = math.prod(int(high[a] - low[a] + 1) for a in self._searched)
        self._allowed = allowed
        self.constraint: Callable[[list[int]], bool] | None = (
            None if len(allowed) == box else self._is_allowed)

    def _is_allowed(self, x: list[int]) -> bool:
        return tuple(int(v) for v in x) in self._allowed

    def to_hardware(self, x: list[int]) -> Hardware:
        """The hardware of a point of :attr:`dimensions` (fixed axes filled in)."""
        full = self._base.copy()
        full[self._searched] = [int(v) for v in x]
        return grid_hardware(int(full[0]), int(full[1]), int(full[2]), self.bounds.pe_dim)


def _hardware_bo(network: Network, seed: int, *, num_hw: int, initial_hw: int,
                 bounds: HardwareBounds, acq_func: str, progress: bool, desc: str,
                 samples_per_hw: int,
                 evaluate_hw: Callable[[Hardware], tuple[list[Mapping], float, int]],
                 usable: Callable[[Hardware], bool] | None = None, objective: str = "edp"
                 ) -> tuple[Hardware, list[Mapping], int, Trajectory, list[dict[str, Any]]]:
    """The outer skopt loop shared by both BO variants: minimise the log of the network
    ``objective`` (the value ``evaluate_hw`` returns) over hw.

    skopt's default GP (Matérn-5/2 ARD, Gaussian noise, normalised y) but with one L-BFGS run per
    fit instead of three and the acquisition evaluated on 1000 random points instead of 10000:
    the grid has at most 7 x 12 x 12 = 1008 points, and the defaults cost 3x more time. Only
    hardware inside ``bounds`` is proposed (:class:`HardwareSpace`); when a single grid point
    is feasible there is nothing to optimise and every proposal is that point. ``usable``
    further restricts the proposals (bo-flat: hardware its heuristic mapper can fill).
    """
    positive_int("num_hw", num_hw)
    positive_int("initial_hw", initial_hw)
    if acq_func not in ACQ_FUNCS:
        raise ValueError(f"acq_func must be one of {ACQ_FUNCS}, got {acq_func!r}")
    space = HardwareSpace(bounds, usable)  # raises before any work when no hardware fits
    opt: Optimizer | None = None
    if space.dimensions:
        gp = cook_estimator("GP", space=space.dimensions, random_state=seed,
                            n_restarts_optimizer=0)
        opt = Optimizer(space.dimensions, base_estimator=gp, acq_func=acq_func,
                        acq_optimizer="sampling", acq_optimizer_kwargs={"n_points": ACQ_POINTS},
                        n_initial_points=min(initial_hw, num_hw),
                        initial_point_generator="random", random_state=seed,
                        space_constraint=space.constraint)
    traj = Trajectory()
    best: tuple[float, Hardware, list[Mapping]] | None = None
    evals = 0
    history: list[dict[str, Any]] = []
    with single_threaded():
        for i in tqdm(range(num_hw), desc=desc, disable=not progress):
            x: list[int] = []
            if opt is not None:
                with warnings.catch_warnings():
                    # A repeated proposal makes skopt fall back to a random point; fine here.
                    warnings.filterwarnings("ignore", message="The objective has been evaluated")
                    x = [int(v) for v in opt.ask()]
            hw = space.to_hardware(x)
            if not bounds.feasible(hw):  # guaranteed by HardwareSpace; checked, not assumed
                raise RuntimeError(f"BO proposed {hw}, outside the bounds ({bounds})")
            mappings, value, n_eval = evaluate_hw(hw)
            evals += n_eval
            if not (math.isfinite(value) and value > 0):
                raise FloatingPointError(f"network {objective} {value} on {hw} is not a "
                                         "positive number")
            if opt is not None:
                opt.tell(x, math.log(value))
            traj.record((i + 1) * samples_per_hw, value)
            history.append({**hw.to_dict(), objective: value})
            log.debug("%s hw %d/%d %s: network %s %.4g", desc, i + 1, num_hw, hw, objective,
                      value)
            if best is None or value < best[0]:
                best = (value, hw, mappings)
    assert best is not None
    return best[1], best[2], evals, traj, history


def bayes_search(network: Network | str, seed: int, *, num_hw: int = 100,
                 initial_hw: int = 10, mappings_per_hw: int = 100,
                 candidates_per_layer: int = 1000, top_k: int = 10, pe_dim: int | None = None,
                 max_pe_dim: int | None = None, max_sp_kb: float | None = None,
                 max_acc_kb: float | None = None, max_area_mm2: float | None = None,
                 acq_func: str = "EI", objective: str = "edp", progress: bool = False,
                 checkpoint_dir: Path | None = None) -> SearchResult:
    """Nested BO baseline ("bo"): skopt over hardware, GP-ranked random mappings per layer.

    ``network`` is a :class:`Network` or a built-in name / YAML path. ``initial_hw`` of the
    ``num_hw`` proposals are random; the rest follow ``acq_func`` ("EI" or "LCB").
    ``pe_dim`` fixes the array side; ``max_pe_dim``, ``max_sp_kb``, ``max_acc_kb`` and
    ``max_area_mm2`` bound the hardware as in DOSA (only feasible grid points are proposed).
    ``objective`` (edp, latency, energy) is what both GPs model (as its log) and what picks
    the mappings and the design. Deterministic in ``seed``. ``checkpoint_dir`` is accepted for
    the common method signature but unused (a full run takes well under a minute).
    """
    seed = check_seed(seed)
    objective = check_objective(objective)
    network = as_network(network)
    mappings_per_hw = positive_int("mappings_per_hw", mappings_per_hw)
    candidates_per_layer = positive_int("candidates_per_layer", candidates_per_layer)
    top_k = positive_int("top_k", top_k)
    bounds = HardwareBounds(pe_dim=pe_dim, max_pe_dim=max_pe_dim, max_sp_kb=max_sp_kb,
                            max_acc_kb=max_acc_kb, max_area_mm2=max_area_mm2)
    del checkpoint_dir
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)

    def evaluate_hw(hw: Hardware) -> tuple[list[Mapping], float, int]:
        mappings, cycles, energy, n_eval = inner_search(
            network, hw, rng, mappings_per_hw=mappings_per_hw,
            candidates_per_layer=candidates_per_layer, top_k=top_k, objective=objective)
        value = network_objective(network.counts_array(), cycles, energy, objective)
        return mappings, float(value), n_eval

    hw, mappings, evals, traj, history = _hardware_bo(
        network, seed, num_hw=num_hw, initial_hw=initial_hw, bounds=bounds, acq_func=acq_func,
        progress=progress, desc=f"bo {network.name}", samples_per_hw=mappings_per_hw,
        evaluate_hw=evaluate_hw, objective=objective)
    num_hw, initial_hw = int(num_hw), int(initial_hw)  # validated by _hardware_bo
    config = {"num_hw": num_hw, "initial_hw": initial_hw, "mappings_per_hw": mappings_per_hw,
              "candidates_per_layer": candidates_per_layer, "top_k": top_k,
              **bounds.to_dict(), "acq_func": acq_func, "objective": objective}
    return finish_result(method="bo", seed=seed, network=network, hardware=hw, mappings=mappings,
                         samples=num_hw * mappings_per_hw, model_evals=evals,
                         wall_s=time.perf_counter() - t0, trajectory=traj, config=config,
                         extra={"hardware_tried": history}, objective=objective)


def bayes_flat_search(network: Network | str, seed: int, *, num_hw: int = 100,
                      initial_hw: int = 10, pe_dim: int | None = None,
                      max_pe_dim: int | None = None, max_sp_kb: float | None = None,
                      max_acc_kb: float | None = None, max_area_mm2: float | None = None,
                      acq_func: str = "EI", objective: str = "edp", progress: bool = False,
                      checkpoint_dir: Path | None = None) -> SearchResult:
    """Flat BO baseline ("bo-flat"): skopt over the 3 hardware numbers, heuristic mapper inside.

    Each proposal is one network design point (1 sample). Hardware arguments, ``objective``
    (outer GP and best design only: the heuristic mapper is fixed) and ``network`` as for
    :func:`bayes_search`. Deterministic in ``seed`` as long as the heuristic mapper is
    deterministic. ``checkpoint_dir`` is unused.
    """
    from dosa.evaluation import score_network
    from dosa.search.starts import heuristic_fits, heuristic_mappings

    seed = check_seed(seed)
    objective = check_objective(objective)
    network = as_network(network)
    bounds = HardwareBounds(pe_dim=pe_dim, max_pe_dim=max_pe_dim, max_sp_kb=max_sp_kb,
                            max_acc_kb=max_acc_kb, max_area_mm2=max_area_mm2)
    del checkpoint_dir
    t0 = time.perf_counter()

    def evaluate_hw(hw: Hardware) -> tuple[list[Mapping], float, int]:
        mappings = list(heuristic_mappings(network, hw))
        score = score_network(network, mappings, hw, check=True)
        value = score.edp if objective == "edp" else float(
            objective_of(objective, score.cycles, score.energy_uj))
        return mappings, value, len(network)

    hw, mappings, evals, traj, history = _hardware_bo(
        network, seed, num_hw=num_hw, initial_hw=initial_hw, bounds=bounds, acq_func=acq_func,
        progress=progress, desc=f"bo-flat {network.name}", samples_per_hw=1,
        evaluate_hw=evaluate_hw, usable=lambda hw: heuristic_fits(network, hw),
        objective=objective)
    num_hw, initial_hw = int(num_hw), int(initial_hw)  # validated by _hardware_bo
    config = {"num_hw": num_hw, "initial_hw": initial_hw, **bounds.to_dict(),
              "acq_func": acq_func, "objective": objective}
    return finish_result(method="bo-flat", seed=seed, network=network, hardware=hw,
                         mappings=mappings, samples=num_hw, model_evals=evals,
                         wall_s=time.perf_counter() - t0, trajectory=traj, config=config,
                         extra={"hardware_tried": history}, objective=objective)
