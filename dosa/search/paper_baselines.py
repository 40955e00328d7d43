"""The Fig. 7 baselines as the original code ran them (spec §1.2, §6.1, §6.2, §9 item 17).

:mod:`dosa.search.random_search` ("random") and :mod:`dosa.search.bayes` ("bo") are *sane*
baselines. The paper's 2.80x (random / DOSA) and 12.59x (BO / DOSA) come from the original
baselines, whose quirks this module reproduces deliberately, so that the gap can be explained by
measurement rather than argument. Mappings are scored with the project's model (the stand-in for
Timeloop), so only the search procedures are the original's.

``random_paper_search`` ("random-paper"), spec §6.1:

* hardware = the first ``num_hw`` configs of ``gen_random_hw_config`` driven by Python's
  ``random`` seeded with ``seed`` (the paper's seeds are 0, 100, 1111, 8888, 99999):
  ``[2**randint(1, 7), 2**randint(0, 11), 2**randint(0, 11)]`` per config, which reproduces the
  seed-0 list of spec §1.2;
* the original mapspace ``mapspace_real_gemmini.yaml``: *no* temporal loop at the registers (the
  sane sampler allows P there; ``register_p=True`` is that ablation);
* per layer the least per-layer-EDP mapping, network EDP = (Σ n·cycles)(Σ n·energy);
  ``mappings_per_layer`` samples per hardware.

``bo_paper_search`` ("bo-paper"), spec §6.2 (``dataset/dse/bo.py``):

* outer training: ``num_hw`` random configs of the BO grid (pe even 2..128, scratchpad and
  accumulator 8..1024 KB in steps of 8: 64 x 128 x 128 = 1,048,576 points), drawn with Python's
  ``random`` seeded with ``seed``;
* inner loop per hardware and layer: ``mappings_per_hw`` random mappings train a GP
  (scikit-learn, fixed kernel 1.0 x RBF(1.0), alpha 1e-10, no hyperparameter optimisation,
  StandardScaler on the 84-column raw mapping vectors of spec §3.1 and on the raw EDP);
  ``candidates_per_layer`` further random mappings are ranked by LCB = mean - 1·std and the layer
  keeps the best *true* EDP among the ``top_k`` lowest. The training mappings are thrown away
  (``keep_all=True`` is the ablation that keeps the best of everything evaluated);
* outer model: the same GP on the raw 3-d hardware vectors -> network EDP, LCB over the whole
  grid, ``proposals`` configs evaluated with the inner loop. With ``argsort_bug=True`` (the
  original) the proposals are ``grid[argsort(argsort(lcb))[:proposals]]`` - the configs whose
  grid *indices* equal the LCB *ranks* of grid entries 0..proposals-1, essentially arbitrary;
  ``argsort_bug=False`` takes the ``proposals`` lowest-LCB configs;
* sample accounting as Fig. 7 plots it: ``mappings_per_hw`` per training config, plus one for
  the final proposal round (x = 10001 in the paper), although every (hardware, layer) evaluates
  ``mappings_per_hw + candidates_per_layer`` mappings in the original.

:func:`gp_lcb` computes that scikit-learn GP's LCB in numpy/scipy with the same operations,
minus scikit-learn's per-call overhead (4x faster a call). ``tests/test_paper_baselines.py``
checks it against scikit-learn's: ``test_gp_lcb_matches_sklearn_*`` (same LCB to 1e-9, same full
ranking, on real mapping vectors and a hardware grid) and
``test_bo_paper_search_same_with_sklearn_gp`` (identical results with scikit-learn's GP).

Unspecified by the spec, chosen here: how the BO's Python ``random`` draws a grid config (one
``random.choice`` per axis: pe, then scratchpad, then accumulator), the grid enumeration order
(pe outermost, accumulator innermost, as ``itertools.product``), and that the final design is the
best of *all* evaluated configs (the plotted running minimum), not only of the proposals.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.linalg import cho_solve, cholesky, solve_triangular
from scipy.spatial.distance import cdist, pdist, squareform
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel
from tqdm import tqdm

from dosa.evaluation import network_edp
from dosa.hardware import Hardware
from dosa.mapping import NUM_DIMS, NUM_LEVELS, Mapping
from dosa.search.bayes import standard_scale
from dosa.search.options import (
    LOG2_ACC_KB_RANGE,
    LOG2_PE_RANGE,
    LOG2_SP_KB_RANGE,
    check_objective,
    check_seed,
    positive_int,
)
from dosa.search.random_search import Samples, evaluate_samples, hardware_loop, pick_best
from dosa.search.result import SearchResult, Trajectory, finish_result
from dosa.search.sampler import (
    DEFAULT_MAX_TRIES,
    sample_mappings,
    single_threaded,
)
from dosa.workload import Layer, Network, as_network

log = logging.getLogger(__name__)

R, S, P, Q, C, K, N = range(NUM_DIMS)


#: The BO hardware grid of ``dataset/dse/bo.py`` (spec §1.2): pe even, buffers multiples of 8 KB.
BO_PE_VALUES = tuple(range(2, 129, 2))
BO_SP_KB_VALUES = tuple(range(8, 1025, 8))
BO_ACC_KB_VALUES = tuple(range(8, 1025, 8))

LCB_KAPPA = 1.0  # both GPs rank by mean - 1.0 * std
GP_ALPHA = 1e-10  # scikit-learn's default jitter, as the original used
FLAT_LEN = 3 * NUM_DIMS * NUM_LEVELS  # 84
PREDICT_CHUNK = 1 << 16  # grid rows per GP prediction call (bounds memory at ~50 MB)

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def _edp_only(method: str, objective: object, instead: str) -> None:
    """Refuse an objective other than EDP: these baselines reproduce the original, which
    minimised EDP only; ``instead`` names the method that searches other objectives."""
    if check_objective(objective) != "edp":
        raise ValueError(f"{method} reproduces the original baseline, which minimises EDP only "
                         f"(got objective {objective!r}); use method {instead} for latency or "
                         "energy")


# ----------------------------------------------------------------------------------------------
# Hardware of the original code
# ----------------------------------------------------------------------------------------------
def paper_random_hardware(seed: int, n: int) -> list[Hardware]:
    """The first ``n`` configs of ``gen_random_hw_config`` after ``random.seed(seed)``.

    Uses a private :class:`random.Random`, whose stream equals the global one after
    ``random.seed(seed)``, so the caller's global random state is left alone.
    """
    seed = check_seed(seed)
    positive_int("n", n)
    rnd = random.Random(seed)
    out = []
    for _ in range(n):
        pe = 2 ** rnd.randint(*LOG2_PE_RANGE)
        sp = 2 ** rnd.randint(*LOG2_SP_KB_RANGE)
        acc = 2 ** rnd.randint(*LOG2_ACC_KB_RANGE)
        out.append(Hardware(pe, float(sp), float(acc)))
    return out


def bo_grid(pe_values: Sequence[int] = BO_PE_VALUES, sp_kb_values: Sequence[int] = BO_SP_KB_VALUES,
            acc_kb_values: Sequence[int] = BO_ACC_KB_VALUES) -> np.ndarray:
    """All (pe, sp_KB, acc_KB) of the BO grid as float64 [G, 3], pe outermost, acc innermost."""
    for name, values in (("pe_values", pe_values), ("sp_kb_values", sp_kb_values),
                         ("acc_kb_values", acc_kb_values)):
        if len(values) == 0:
            raise ValueError(f"{name} must not be empty")
    axes = np.meshgrid(np.asarray(pe_values, dtype=np.float64),
                       np.asarray(sp_kb_values, dtype=np.float64),
                       np.asarray(acc_kb_values, dtype=np.float64), indexing="ij")
    return np.stack([a.ravel() for a in axes], axis=1)  # C order: pe outermost, acc innermost


def bo_random_hardware(rnd: random.Random, n: int, pe_values: Sequence[int],
                       sp_kb_values: Sequence[int], acc_kb_values: Sequence[int]
                       ) -> list[Hardware]:
    """``n`` random BO-grid configs (one ``choice`` per axis: pe, scratchpad, accumulator)."""
    return [Hardware(int(rnd.choice(pe_values)), float(rnd.choice(sp_kb_values)),
                     float(rnd.choice(acc_kb_values))) for _ in range(n)]


# ----------------------------------------------------------------------------------------------
# The original mapspace (no register temporal loops)
# ----------------------------------------------------------------------------------------------
def paper_sample_mappings(layer: Layer, hw: Hardware, n: int, rng: np.random.Generator, *,
                          register_p: bool = False, max_tries: int = DEFAULT_MAX_TRIES) -> Arrays:
    """``n`` random valid mappings of ``mapspace_real_gemmini.yaml``: no register loops.

    ``register_p=True`` is the project's sampler unchanged (P allowed at the registers), the
    ablation; see :func:`dosa.search.sampler.sample_mappings`.
    """
    return sample_mappings(layer, hw, n, rng, max_tries=max_tries, register_p=register_p)


# ----------------------------------------------------------------------------------------------
# The original's 84-column mapping features and fixed-kernel GP
# ----------------------------------------------------------------------------------------------
def flat_mapping_vectors(temporal: np.ndarray, spatial: np.ndarray, rank: np.ndarray
                         ) -> np.ndarray:
    """The original flat mapping vector (spec §3.1) of each mapping -> float64 [m, 84].

    Levels outermost first (L3, L2, L1, L0), each [7 spatial, 7 temporal, 7 perm keys]. The
    perm keys are what ``process_mapping`` makes of Timeloop's printed mapping (spec §3.3): the
    loops that exist (factor > 1), outermost first, get 6, 5, 4, ...; absent dims get 7; an empty
    level prints the placeholder ``N1``, whose N gets 6.
    """
    m = temporal.shape[0]
    # Dims first ([dims, m, levels], contiguous) so the loop below works on whole slabs.
    exists = np.ascontiguousarray((temporal > 1).transpose(2, 0, 1))
    rk = np.ascontiguousarray(rank.transpose(2, 0, 1))
    # Number of existing loops outside each dim's loop at its level: 7 slab operations, ~4x
    # faster than one [m, 4, 7, 7] comparison summed over its short last axis.
    outer = np.zeros(exists.shape, dtype=np.int8)
    for e in range(NUM_DIMS):
        outer += (rk[e] > rk) & exists[e]
    keys = np.where(exists, 6 - outer, 7)
    keys[N][~exists.any(axis=0)] = 6  # keys[N] is a view: empty levels' placeholder N
    out = np.empty((m, NUM_LEVELS, 3, NUM_DIMS), dtype=np.float64)
    out[:, :, 0] = spatial[:, ::-1]  # levels outermost first
    out[:, :, 1] = temporal[:, ::-1]
    out[:, :, 2] = keys.transpose(1, 2, 0)[:, ::-1]
    return out.reshape(m, FLAT_LEN)


def fixed_gp() -> GaussianProcessRegressor:
    """``GaussianProcessRegressor()`` as scikit-learn < 1.8 built it: fixed 1.0 x RBF(1.0).

    scikit-learn >= 1.8 optimises the default kernel's hyperparameters, so the kernel is passed
    explicitly with fixed bounds and ``optimizer=None``. :func:`gp_lcb` computes this model's
    LCB without scikit-learn; the tests check it against this estimator.
    """
    kernel = ConstantKernel(1.0, constant_value_bounds="fixed") * RBF(
        1.0, length_scale_bounds="fixed")
    return GaussianProcessRegressor(kernel=kernel, alpha=GP_ALPHA, optimizer=None)


def gp_lcb(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, *,
           kappa: float = LCB_KAPPA) -> np.ndarray:
    """LCB (standardised units) of the original pipeline: scale X and y, fixed GP, mean - κ·std.

    The original ran ``StandardScaler`` + :func:`fixed_gp`; this is the same computation
    (scaler arithmetic, pdist/cdist squared distances, ``exp(-d/2)``, ``K + 1e-10·I``, lower
    Cholesky, triangular solve, variance clipped at 0, ``PREDICT_CHUNK`` test rows at a time)
    without scikit-learn's per-call validation, which cost 3/4 of the time on these small
    problems. Columns constant over training and test rows are skipped: they add exactly 0 to
    every squared distance. The ranking is what matters and the standardisation of y is a
    positive affine map, so the LCB is kept in standardised units.
    """
    x_train = np.asarray(x_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    x_test = np.asarray(x_test, dtype=np.float64)
    if x_train.ndim != 2 or x_test.ndim != 2 or y.ndim != 1 or len(y) != len(x_train) \
            or len(x_train) == 0 or x_test.shape[1] != x_train.shape[1]:
        raise ValueError(f"need x_train [n, d], y_train [n], x_test [m, d] with n >= 1, got "
                         f"{x_train.shape}, {y.shape}, {x_test.shape}")
    if not (np.isfinite(x_train).all() and np.isfinite(y).all() and np.isfinite(x_test).all()):
        raise ValueError("gp_lcb inputs must be finite")  # as scikit-learn's validation
    mean, scale = standard_scale(x_train)
    y_mean, y_scale = standard_scale(y[:, None])
    y_std = ((y[:, None] - y_mean) / y_scale)[:, 0]
    varying = (x_train != x_train[0]).any(axis=0) | (x_test != x_train[0]).any(axis=0)
    mean, scale = mean[varying], scale[varying]
    x_std = (x_train[:, varying] - mean) / scale
    k = squareform(np.exp(-0.5 * pdist(x_std, "sqeuclidean")))
    np.fill_diagonal(k, 1.0)
    k[np.diag_indices_from(k)] += GP_ALPHA
    try:
        chol = cholesky(k, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:  # scikit-learn re-raises with this hint
        exc.args = ("The kernel, 1**2 * RBF(length_scale=1), is not returning a positive "
                    "definite matrix. Try gradually increasing the 'alpha' parameter of your "
                    "GaussianProcessRegressor estimator.", *exc.args)
        raise
    alpha = cho_solve((chol, True), y_std, check_finite=False)
    out = np.empty(len(x_test), dtype=np.float64)
    for lo in range(0, len(x_test), PREDICT_CHUNK):
        chunk = (x_test[lo:lo + PREDICT_CHUNK, varying] - mean) / scale
        k_star = np.exp(-0.5 * cdist(chunk, x_std, "sqeuclidean"))
        mu = k_star @ alpha
        v = solve_triangular(chol, k_star.T, lower=True, check_finite=False)
        var = np.ones(len(chunk), dtype=np.float64)
        var -= np.einsum("ij,ji->i", v.T, v)
        var[var < 0] = 0.0  # test points on training points: -1e-16
        out[lo:lo + PREDICT_CHUNK] = mu - kappa * np.sqrt(var)
    return out


def propose(lcb: np.ndarray, k: int, *, argsort_bug: bool) -> np.ndarray:
    """Grid indices of the ``k`` outer proposals.

    Correct: the ``k`` lowest LCB. Original (``argsort_bug``): ``argsort(argsort(lcb))[:k]``,
    i.e. the LCB ranks of grid entries 0..k-1 used as grid indices.
    """
    order = np.argsort(lcb, kind="stable")
    if argsort_bug:
        order = np.argsort(order, kind="stable")
    return order[:k]


# ----------------------------------------------------------------------------------------------
# Inner loop and the two searches
# ----------------------------------------------------------------------------------------------
def _take(arrays: Arrays, idx: np.ndarray) -> Arrays:
    return arrays[0][idx], arrays[1][idx], arrays[2][idx]


def _concat(a: Arrays, b: Arrays) -> Arrays:
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])


def paper_inner_search(network: Network, hw: Hardware, rng: np.random.Generator, *,
                       mappings_per_hw: int, candidates_per_layer: int, top_k: int,
                       keep_all: bool = False) -> tuple[list[Mapping], np.ndarray, np.ndarray,
                                                        int, int]:
    """The original ``layers_optimize`` on one hardware config (spec §6.2, inner loop).

    Returns per-layer mappings, their cycles and energy [L], the model evaluations made here
    (training mappings + the ``top_k`` picks, or all candidates with ``keep_all``) and the
    evaluations the original made (training + all candidates). The random draws do not depend
    on ``keep_all``, so both settings see the same mappings for the same ``rng`` state.
    """
    train = [paper_sample_mappings(layer, hw, mappings_per_hw, rng) for layer in network]
    cycles, energy = evaluate_samples(network, hw, train)
    bounds = np.cumsum([0] + [len(t[0]) for t in train])
    cands = [paper_sample_mappings(layer, hw, candidates_per_layer, rng) for layer in network]
    original_evals = int(len(cycles) + sum(len(c[0]) for c in cands))
    pool: Samples
    if keep_all:
        pool = [_concat(t, c) for t, c in zip(train, cands, strict=True)]
        c_cycles, c_energy = evaluate_samples(network, hw, cands)
        c_bounds = np.cumsum([0] + [len(c[0]) for c in cands])
        p_cycles = np.concatenate([np.concatenate([cycles[bounds[i]:bounds[i + 1]],
                                                   c_cycles[c_bounds[i]:c_bounds[i + 1]]])
                                   for i in range(len(network))])
        p_energy = np.concatenate([np.concatenate([energy[bounds[i]:bounds[i + 1]],
                                                   c_energy[c_bounds[i]:c_bounds[i + 1]]])
                                   for i in range(len(network))])
        evals = len(cycles) + len(c_cycles)
    else:  # the GP only decides which candidates are evaluated; keep_all evaluates them all
        pool = []
        for i, cand in enumerate(cands):
            edp = cycles[bounds[i]:bounds[i + 1]] * energy[bounds[i]:bounds[i + 1]]
            if len(cand[0]) <= top_k:
                idx = np.arange(len(cand[0]))
            else:
                lcb = gp_lcb(flat_mapping_vectors(*train[i]), edp, flat_mapping_vectors(*cand))
                idx = np.argsort(lcb, kind="stable")[:top_k]
            pool.append(_take(cand, idx))
        p_cycles, p_energy = evaluate_samples(network, hw, pool)
        evals = len(cycles) + len(p_cycles)
    mappings, best_c, best_e = pick_best(pool, p_cycles, p_energy)
    return mappings, best_c, best_e, int(evals), original_evals


def random_paper_search(network: Network | str, seed: int, *, num_hw: int = 10,
                        mappings_per_layer: int = 1000, register_p: bool = False,
                        objective: str = "edp", progress: bool = False,
                        checkpoint_dir: Path | None = None) -> SearchResult:
    """The original random baseline ("random-paper", spec §6.1); deterministic in ``seed``.

    Hardware from Python ``random.seed(seed)`` as ``gen_random_hw_config`` (spec §1.2), mappings
    from the original mapspace (``register_p=True``: P allowed at the registers, the ablation),
    drawn with ``numpy.random.default_rng(seed)``. ``objective`` must be "edp" (accepted so a
    uniform config fails with a clear message). ``checkpoint_dir`` is unused (seconds).
    """
    seed = check_seed(seed)
    _edp_only("random-paper", objective, "random")
    network = as_network(network)
    num_hw = positive_int("num_hw", num_hw)
    mappings_per_layer = positive_int("mappings_per_layer", mappings_per_layer)
    del checkpoint_dir
    t0 = time.perf_counter()
    hws = paper_random_hardware(seed, num_hw)
    best, evals, traj, tried = hardware_loop(
        network, hws, mappings_per_layer, np.random.default_rng(seed), register_p=register_p,
        desc=f"random-paper {network.name}", progress=progress)
    config = {"num_hw": num_hw, "mappings_per_layer": mappings_per_layer,
              "register_p": bool(register_p)}
    return finish_result(method="random-paper", seed=seed, network=network, hardware=best[1],
                         mappings=best[2], samples=num_hw * mappings_per_layer,
                         model_evals=evals, wall_s=time.perf_counter() - t0, trajectory=traj,
                         config=config, extra={"hardware_tried": tried})


def bo_paper_search(network: Network | str, seed: int, *, num_hw: int = 100, proposals: int = 10,
                    mappings_per_hw: int = 100, candidates_per_layer: int = 1000,
                    top_k: int = 10, argsort_bug: bool = True, keep_all: bool = False,
                    grid: tuple[Sequence[int], Sequence[int], Sequence[int]] | None = None,
                    objective: str = "edp", progress: bool = False,
                    checkpoint_dir: Path | None = None) -> SearchResult:
    """The original nested BO ("bo-paper", spec §6.2); deterministic in ``seed``.

    ``num_hw`` random training configs (the original's hw_training_size), then ``proposals``
    (hw_trial_size) configs picked by the outer GP's LCB over ``grid`` (default: the BO grid),
    with the original double-argsort bug unless ``argsort_bug=False``. ``keep_all=True`` keeps
    each layer's best of all evaluated mappings instead of the best of the ``top_k`` LCB picks.
    Hardware is drawn with ``random.Random(seed)``, mappings with
    ``numpy.random.default_rng(seed)``. ``objective`` must be "edp", as for
    :func:`random_paper_search`. ``checkpoint_dir`` is unused (15-20 s a run on ResNet-50).
    """
    seed = check_seed(seed)
    _edp_only("bo-paper", objective, "bo")
    network = as_network(network)
    num_hw = positive_int("num_hw", num_hw)
    if isinstance(proposals, bool) or not isinstance(proposals, int | np.integer) \
            or proposals < 0:
        raise ValueError(f"proposals must be a non-negative integer, got {proposals!r}")
    proposals = int(proposals)
    mappings_per_hw = positive_int("mappings_per_hw", mappings_per_hw)
    candidates_per_layer = positive_int("candidates_per_layer", candidates_per_layer)
    top_k = positive_int("top_k", top_k)
    del checkpoint_dir
    t0 = time.perf_counter()
    axes = grid if grid is not None else (BO_PE_VALUES, BO_SP_KB_VALUES, BO_ACC_KB_VALUES)
    grid_points = bo_grid(*axes)
    train_hws = bo_random_hardware(random.Random(seed), num_hw, *axes)
    rng = np.random.default_rng(seed)
    counts = network.counts_array()
    traj = Trajectory()
    best: tuple[float, Hardware, list[Mapping]] | None = None
    evals = original_evals = 0
    tried: list[dict[str, Any]] = []

    def run(hw: Hardware, phase: str) -> float:
        nonlocal best, evals, original_evals
        mappings, cycles, energy, n_eval, n_orig = paper_inner_search(
            network, hw, rng, mappings_per_hw=mappings_per_hw,
            candidates_per_layer=candidates_per_layer, top_k=top_k, keep_all=keep_all)
        evals += n_eval
        original_evals += n_orig
        edp = float(network_edp(counts, cycles, energy))
        if not (math.isfinite(edp) and edp > 0):
            raise FloatingPointError(f"network EDP {edp} on {hw} is not a positive number")
        tried.append({**hw.to_dict(), "edp": edp, "phase": phase})
        log.debug("bo-paper %s %s: network EDP %.4g", phase, hw, edp)
        if best is None or edp < best[0]:
            best = (edp, hw, mappings)
        return edp

    with single_threaded():
        bar = tqdm(total=num_hw + proposals, desc=f"bo-paper {network.name}",
                   disable=not progress)
        train_edp = []
        for i, hw in enumerate(train_hws):
            train_edp.append(run(hw, "train"))
            traj.record((i + 1) * mappings_per_hw, train_edp[-1])
            bar.update()
        samples = num_hw * mappings_per_hw
        proposal_idx: list[int] = []
        if proposals:
            x_train = np.array([h.as_tuple() for h in train_hws], dtype=np.float64)
            t_lcb = time.perf_counter()
            lcb = gp_lcb(x_train, np.array(train_edp), grid_points)
            log.info("bo-paper %s: outer LCB over %d grid points in %.1f s", network.name,
                     len(grid_points), time.perf_counter() - t_lcb)
            proposal_idx = [int(i) for i in propose(lcb, proposals, argsort_bug=argsort_bug)]
            samples += 1  # Fig. 7 plots the proposal round as one more sample (x = 10001)
            for gi in proposal_idx:
                pe, sp, acc = grid_points[gi]
                traj.record(samples, run(Hardware(int(pe), float(sp), float(acc)), "proposal"))
                bar.update()
        bar.close()
    assert best is not None
    prop_edps = [t["edp"] for t in tried if t["phase"] == "proposal"]
    config = {"num_hw": num_hw, "proposals": proposals, "mappings_per_hw": mappings_per_hw,
              "candidates_per_layer": candidates_per_layer, "top_k": top_k,
              "argsort_bug": bool(argsort_bug), "keep_all": bool(keep_all),
              "grid_size": int(len(grid_points))}
    extra = {"hardware_tried": tried, "proposal_grid_indices": proposal_idx,
             "train_best_edp": min(train_edp),
             "proposal_best_edp": min(prop_edps) if prop_edps else None,
             "original_mapping_evals": original_evals}
    return finish_result(method="bo-paper", seed=seed, network=network, hardware=best[1],
                         mappings=best[2], samples=samples, model_evals=evals,
                         wall_s=time.perf_counter() - t0, trajectory=traj, config=config,
                         extra=extra)
