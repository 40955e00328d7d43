"""Run a search method on a workload with a seed and a configuration; results live on disk.

A run is identified by its *key* (:func:`run_key`): the network's content (every layer's dims,
strides and count, and its name, which selects the paper's learning rate), the method, the seed,
the full configuration, a fingerprint of the code that computes results, and the content hash of
any predictor file. A stored result is reused only when its key is identical, so a cache can
never answer for another network, another option, older code or a retrained predictor.

Notebooks call :func:`run_label`: runs are cached in :func:`dosa.claims.runs_dir` (``build/runs``,
never in git, so ``make reproduce`` on a fresh clone recomputes every search while the notebooks
of one reproduce share runs and an interrupted sweep resumes), and each run is also exported to
``artifacts/results/<experiment>/<workload>/<label>/seed<k>/`` as the committed reference.
The CLI calls :func:`search_to_folder`, which refuses (naming ``--force``) to replace a folder
that holds a different result.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dosa.claims import artifacts_dir, runs_dir
from dosa.io import atomic_write_text
from dosa.search.dosa_gd import RECOMMENDED, SCREENED
from dosa.search.options import PAPER_SEEDS
from dosa.search.result import MAPPINGS_FILE, RESULT_FILE, ResultError, SearchResult
from dosa.workload import Network, load_network

log = logging.getLogger(__name__)

MethodFn = Callable[..., SearchResult]


#: Search methods: name -> (module, function); each is called as
#: fn(network, seed, *, progress, checkpoint_dir, **config) -> SearchResult.
METHODS = {
    "dosa": ("dosa.search.dosa_gd", "dosa_search"),
    "random": ("dosa.search.random_search", "random_search"),
    "bo": ("dosa.search.bayes", "bayes_search"),
    "bo-flat": ("dosa.search.bayes", "bayes_flat_search"),
    "random-paper": ("dosa.search.paper_baselines", "random_paper_search"),
    "bo-paper": ("dosa.search.paper_baselines", "bo_paper_search"),
    "grid": ("dosa.search.grid", "grid_search"),
    "best-known": ("dosa.search.best_known", "best_known_search"),
}


#: Named run configurations ("labels") shared by the notebooks, per profile. A label maps to a
#: method and its keyword arguments; notebooks 02 and 03 ask for the same labels, so they share
#: the stored runs. Full budgets are the paper's (spec §5.10, §6): ~10,000 samples per method.
LABELS = {"dosa": "dosa", "dosa-improved": "dosa", "dosa-screen": "dosa", "dosa-refine": "dosa",
          "random": "random", "bo": "bo",
          "dosa-both-pe16": "dosa",
          # the original baselines (spec §6.1, §6.2) and their ablations (notebook 03)
          "random-paper": "random-paper", "random-paper-regp": "random-paper",
          "bo-paper": "bo-paper", "bo-paper-nobug": "bo-paper", "bo-paper-keepall": "bo-paper",
          "grid": "grid", "best-known": "best-known"}
#: DOSA derives its hardware; to compare at equal design space it is bounded by the largest
#: configuration the baselines may sample (pe_dim 128, 2048 KB buffers, spec §1.2).
SPACE_BOUNDS = {"max_pe_dim": 128, "max_sp_kb": 2048.0, "max_acc_kb": 2048.0}
#: The smoke profile's small grid (the full grid has 1,008 points).
_SMOKE_GRID = {"pe_dims": [16, 128], "sp_kb": [64.0, 512.0], "acc_kb": [32.0, 256.0]}
_SMOKE_BO_PAPER = {"num_hw": 4, "proposals": 2, "mappings_per_hw": 20,
                   "candidates_per_layer": 60, "top_k": 5}
BUDGETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "dosa": {"starts": 7, "steps": 1490, "round_every": 500, "variant": "paper",
                 **SPACE_BOUNDS},
        "dosa-improved": {"starts": 7, "steps": 1490, "round_every": 100,
                          "variant": "improved", **SPACE_BOUNDS},
        # improved schedule + hardware screen (notebook 08's ablation; latency/energy designs)
        "dosa-screen": {"starts": 7, **SCREENED, **SPACE_BOUNDS},
        # the recommended configuration (the default of `dosa search`, notebook 08)
        "dosa-refine": {"starts": 7, **RECOMMENDED, **SPACE_BOUNDS},
        "random": {"num_hw": 10, "mappings_per_layer": 1000},
        "bo": {"num_hw": 100},
        # FireSim setting (spec §8.2): 16x16 array, latency from the learned "both" predictor
        "dosa-both-pe16": {"starts": 7, "steps": 1490, "round_every": 100,
                           "variant": "improved", "pe_dim": 16, "predictor": "both",
                           "max_sp_kb": 2048.0, "max_acc_kb": 2048.0},
        "random-paper": {"num_hw": 10, "mappings_per_layer": 1000},
        "random-paper-regp": {"num_hw": 10, "mappings_per_layer": 1000, "register_p": True},
        "bo-paper": {},  # the original's defaults: 100 + 10 hardware, 100 + 1000 mappings
        "bo-paper-nobug": {"argsort_bug": False},
        "bo-paper-keepall": {"keep_all": True},
        "grid": {},  # all 1,008 power-of-two points
        "best-known": {**SPACE_BOUNDS},
    },
    "smoke": {
        "dosa": {"starts": 1, "steps": 30, "round_every": 10, "variant": "paper",
                 **SPACE_BOUNDS},
        "dosa-improved": {"starts": 1, "steps": 30, "round_every": 10, "variant": "improved",
                          **SPACE_BOUNDS},
        "dosa-screen": {"starts": 2, "steps": 30, "round_every": 10, "variant": "improved",
                        "screen": 1, **SPACE_BOUNDS},
        "dosa-refine": {"starts": 2, "steps": 30, "round_every": 10, "variant": "improved",
                        "screen": 1, "refine_samples": 300, **SPACE_BOUNDS},
        "random": {"num_hw": 2, "mappings_per_layer": 50},
        "bo": {"num_hw": 4, "initial_hw": 2, "mappings_per_hw": 20,
               "candidates_per_layer": 100, "top_k": 5},
        "dosa-both-pe16": {"starts": 1, "steps": 20, "round_every": 10, "variant": "improved",
                           "pe_dim": 16, "predictor": "both", "max_sp_kb": 2048.0,
                           "max_acc_kb": 2048.0},
        "random-paper": {"num_hw": 2, "mappings_per_layer": 50},
        "random-paper-regp": {"num_hw": 2, "mappings_per_layer": 50, "register_p": True},
        "bo-paper": dict(_SMOKE_BO_PAPER),
        "bo-paper-nobug": {**_SMOKE_BO_PAPER, "argsort_bug": False},
        "bo-paper-keepall": {**_SMOKE_BO_PAPER, "keep_all": True},
        "grid": dict(_SMOKE_GRID),
        "best-known": {"top_points": 2, "random_per_layer": 50, "rounds": 1, "refine_starts": 1,
                       "local_steps": 1, "final_local_steps": 1, **SPACE_BOUNDS},
    },
}
WORKLOADS = {"full": ("resnet50", "bert", "unet", "retinanet"), "smoke": ("bert",)}
SEEDS = {"full": (0, 1, 2, 3, 4), "smoke": (0,)}
#: Seeds on which the recommended DOSA configuration is chosen (never the evaluation seeds).
TUNING_SEEDS = {"full": (1000, 1001, 1002), "smoke": (1000,)}
#: Seeds per label where they differ from SEEDS: the faithful baselines use the paper's seeds,
#: our random search 20 seeds (its spread over hardware draws), the deterministic grid one.
LABEL_SEEDS: dict[str, dict[str, tuple[int, ...]]] = {
    "full": {"random": tuple(range(20)), "random-paper": PAPER_SEEDS,
             "random-paper-regp": PAPER_SEEDS, "bo-paper": PAPER_SEEDS,
             "bo-paper-nobug": PAPER_SEEDS, "bo-paper-keepall": PAPER_SEEDS, "grid": (0,),
             "best-known": (0,)},
    "smoke": {"random": (0, 1), "grid": (0,), "best-known": (0,)},
}


def seeds_for(label: str, profile: str) -> tuple[int, ...]:
    """The seeds a notebook runs ``label`` with in ``profile``."""
    if profile not in BUDGETS:
        raise ValueError(f"profile must be one of {sorted(BUDGETS)}, got {profile!r}")
    return LABEL_SEEDS[profile].get(label, SEEDS[profile])


def default_workers() -> int:
    """Processes for independent runs: ``$DOSA_WORKERS`` or the CPUs this process may use."""
    text = os.environ.get("DOSA_WORKERS")
    if text is not None:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"DOSA_WORKERS must be a positive integer, got {text!r}")
        return value
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def run_label(label: str, workload: str, seed: int, profile: str, *, experiment: str,
              root: str | Path | None = None, export: str | Path | None = None,
              progress: bool = False) -> SearchResult:
    """Run (or reuse the identical cached run of) the named configuration ``label`` of
    ``profile`` (see BUDGETS)."""
    if profile not in BUDGETS:
        raise ValueError(f"profile must be one of {sorted(BUDGETS)}, got {profile!r}")
    if label not in LABELS:
        raise ValueError(f"label must be one of {sorted(LABELS)}, got {label!r}")
    return run(workload, LABELS[label], seed, experiment=experiment,
               config=BUDGETS[profile][label], root=root, export=export, progress=progress,
               label=label)


Job = tuple[str, str, int]  # (workload, label, seed)


def run_labels(jobs: Iterable[Job], profile: str, *, experiment: str,
               workers: int | None = None, progress: bool = False
               ) -> dict[Job, SearchResult]:
    """:func:`run_label` for each (workload, label, seed), ``workers`` runs at a time.

    Every search runs single-threaded and is deterministic in its key, so running runs in
    parallel processes gives the same numbers as running them one after another. Each run is
    cached on its own, so an interrupted sweep resumes where it stopped. The profile, labels
    and workloads are checked before any process starts; the first failing run stops the
    sweep (pending runs are cancelled) and is named in the error.
    """
    from dosa.sweep import parallel_map  # not at the top: dosa.sweep imports this module

    jobs = list(dict.fromkeys(jobs))
    if profile not in BUDGETS:
        raise ValueError(f"profile must be one of {sorted(BUDGETS)}, got {profile!r}")
    for _, label, _ in jobs:
        if label not in LABELS:
            raise ValueError(f"label must be one of {sorted(LABELS)}, got {label!r}")
    for workload in {w for w, _, _ in jobs}:
        load_network(workload)
    results = parallel_map(functools.partial(_run_job, profile=profile, experiment=experiment),
                           jobs, workers=workers, desc=experiment, progress=progress)
    return dict(zip(jobs, results, strict=True))


def _run_job(job: Job, *, profile: str, experiment: str) -> SearchResult:
    """One job of :func:`run_labels`; a failure names the job."""
    workload, label, seed = job
    try:
        return run_label(label, workload, seed, profile, experiment=experiment)
    except Exception as err:
        message = f"{experiment} run {workload}/{label}/seed {seed}: {err}"
        try:
            named = type(err)(message)
        except Exception:  # an exception type that takes other arguments
            named = RuntimeError(message)
        raise named from err


def method_fn(name: str) -> MethodFn:
    """The search function of a method name (imported on demand)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {sorted(METHODS)}")
    module, attr = METHODS[name]
    return getattr(importlib.import_module(module), attr)


def run_dir(root: Path, experiment: str, workload: str, label: str, seed: int) -> Path:
    return Path(root) / experiment / workload / label / f"seed{seed}"


RESULT_FILES = frozenset({RESULT_FILE, MAPPINGS_FILE})


class StaleResultError(ValueError):
    """A result folder holds another run's result (or a damaged one)."""


#: Files whose content determines search results: the whole package's code and data, except
#: the modules that only present results (CLI, plots, claims, notebook checks, reports) and
#: timeloop.py (exports results; a network it reads is in the key by content) and sweep.py
#: (schedules runs on a cluster; each run's result comes from :func:`run`).
_CODE_SUFFIXES = (".py", ".json", ".yaml")
_PRESENTATION = frozenset({"__init__.py", "cli.py", "plots.py", "claims.py", "notebook.py",
                           "reproduce.py", "comparison.py", "timeloop.py", "sweep.py"})


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over every source and data file of the ``dosa`` package (path and content).

    Deliberately coarse: any change to a module that computes results invalidates cached
    runs, so a cache can never survive a change of the model, a search method or a default.
    """
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in _CODE_SUFFIXES
                       and "__pycache__" not in p.parts
                       and p.relative_to(package).as_posix() not in _PRESENTATION):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


#: Packages whose numerics enter results (the lock file pins them; a change recomputes).
_NUMERIC_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "scikit-optimize")


@functools.lru_cache(maxsize=1)
def environment_versions() -> dict[str, str]:
    """Versions of the numeric packages, part of every run key."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in _NUMERIC_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def network_digest(network: Network) -> str:
    """sha256 of the network's content: name, and each layer's name, dims, strides, count."""
    text = json.dumps(network.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(config: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(config), sort_keys=True, default=str))


def run_key(network: Network, method: str, seed: int, config: Mapping[str, Any]
            ) -> dict[str, Any]:
    """Everything that determines a run's result (stored as the result's ``provenance``)."""
    from dosa.learned import file_sha256, predictor_path

    predictor = config.get("predictor")
    key: dict[str, Any] = {
        "workload": network.name, "network_sha256": network_digest(network),
        "method": method, "seed": int(seed), "config": _canonical(config),
        "code_sha256": code_fingerprint(), "environment": environment_versions(),
        "predictor_sha256": None,
    }
    if predictor not in (None, "analytical"):
        key["predictor_sha256"] = file_sha256(predictor_path(str(predictor)))
    return key


def stored_result(out: Path, key: Mapping[str, Any]) -> SearchResult | None:
    """The result in ``out`` if its key equals ``key``; None if ``out`` holds no result.

    Raises :class:`StaleResultError` (saying what differs) when ``out`` holds another run's
    result or a damaged folder.
    """
    out = Path(out)
    if not out.exists():
        return None
    if not out.is_dir():
        raise StaleResultError(f"{out} exists and is not a folder")
    if not (out / RESULT_FILE).exists() and not any(out.iterdir()):
        return None
    try:
        stored = SearchResult.read(out)
    except (ResultError, KeyError, TypeError, ValueError) as err:
        raise StaleResultError(f"{out} holds a damaged or incomplete result ({err}); "
                               "use --force to replace it") from err
    have = stored.provenance
    diff = sorted(k for k in key if have.get(k) != key[k])
    if diff:
        raise StaleResultError(f"{out} holds a result of another run (differs in: "
                               f"{', '.join(diff)}); use --force to replace it, or another "
                               "--out")
    return stored


def search_to_folder(network: Network, method: str, seed: int, config: Mapping[str, Any],
                     out: str | Path, *, force: bool = False, progress: bool = False
                     ) -> tuple[SearchResult, bool]:
    """Run one search into ``out`` (``dosa search``); returns (result, reused from ``out``).

    An identical stored run is reused; a different or damaged one is refused with
    :class:`StaleResultError` unless ``force``. The folder is written as one unit.
    """
    out = Path(out).expanduser().resolve()
    fn = method_fn(method)
    key = run_key(network, method, seed, config)
    foreign = sorted(p.name for p in out.iterdir()
                     if p.name not in RESULT_FILES) if out.is_dir() else []
    if foreign:  # never replace (even with --force) a folder that holds the user's files
        raise StaleResultError(f"{out} holds files that are not a dosa result "
                               f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''})"
                               "; use a new or empty folder")
    if not force:
        stored = stored_result(out, key)
        if stored is not None:
            log.info("reusing the identical run in %s", out)
            return stored, True
    result = fn(network, seed, progress=progress, checkpoint_dir=out, **dict(config))
    result.provenance = key
    result.write(out, network)
    return result, False


#: Folder of the run cache's key index: one file per key digest naming the folder (relative
#: to the cache root) that holds that run, so an identical run stored under another
#: experiment or label is found without recomputing it (``stored_result`` still checks the
#: whole key, so a stale or overwritten entry only means a recomputation).
KEY_INDEX = ".by-key"


def key_digest(key: Mapping[str, Any]) -> str:
    """sha256 of a run key's canonical JSON: the name of its entry in :data:`KEY_INDEX`."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def _indexed_result(root: Path, key: Mapping[str, Any]) -> tuple[SearchResult, str] | None:
    """The identical run stored anywhere under ``root`` (via its key index), or None."""
    entry = root / KEY_INDEX / key_digest(key)
    try:
        where = entry.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    folder = (root / where).resolve()
    if not folder.is_relative_to(root.resolve()):
        return None
    try:
        stored = stored_result(folder, key)
    except StaleResultError:
        return None
    return (stored, where) if stored is not None else None


def run(workload: str | Network, method: str, seed: int, *, experiment: str,
        config: dict[str, Any] | None = None, root: str | Path | None = None,
        export: str | Path | None = None, progress: bool = False, force: bool = False,
        label: str | None = None) -> SearchResult:
    """Run one search, or reuse the cached run with exactly the same key.

    ``root`` is the cache (default :func:`dosa.claims.runs_dir`); the result is also exported
    to ``export`` (default ``<artifacts>/results``). ``label`` names the result folder
    (default: the method), so two configurations of one method live side by side. A run with
    the same key stored under another experiment or label (e.g. an area study's unbounded
    budget and Fig. 7's run) is copied, not recomputed.
    """
    network = workload if isinstance(workload, Network) else load_network(workload)
    config = dict(config or {})
    key = run_key(network, method, seed, config)
    name = label or method
    root = Path(root) if root is not None else runs_dir()
    cache = run_dir(root, experiment, network.name, name, seed)
    result = None
    if not force:
        try:
            result = stored_result(cache, key)
        except StaleResultError as err:
            log.info("recomputing: %s", err)
        if result is not None:
            log.info("reusing the identical run %s/%s/%s seed %d from this reproduce",
                     experiment, network.name, name, seed)
        elif (found := _indexed_result(root, key)) is not None:
            result, where = found
            log.info("reusing the identical run in %s for %s/%s/%s seed %d", where,
                     experiment, network.name, name, seed)
            result.write(cache, network)
    if result is None:
        log.info("running %s/%s/%s seed %d", experiment, network.name, name, seed)
        result = method_fn(method)(network, seed, progress=progress, checkpoint_dir=cache,
                                   **config)
        result.provenance = key
        result.write(cache, network)
    atomic_write_text(root / KEY_INDEX / key_digest(key),
                      cache.relative_to(root).as_posix() + "\n")
    target = Path(export) if export is not None else artifacts_dir() / "results"
    result.write(run_dir(target, experiment, network.name, name, seed), network)
    return result


def summary_frame(results: Mapping[tuple[str, str, int], SearchResult]) -> pd.DataFrame:
    """One row per run of ``{(workload, label, seed): result}`` (the notebooks' run tables)."""
    rows = []
    for (workload, label, seed), r in results.items():
        rows.append({"workload": workload, "label": label, "method": r.method, "seed": seed,
                     "edp": r.edp, "cycles": r.cycles, "energy_uj": r.energy_uj,
                     "area_mm2": r.area_mm2, "pe_dim": r.hardware.pe_dim,
                     "sp_kb": r.hardware.sp_kb, "acc_kb": r.hardware.acc_kb,
                     "samples": r.samples, "model_evals": r.model_evals, "wall_s": r.wall_s})
    return pd.DataFrame(rows)


def fixed_hardware_baselines(network: Network, hardware: dict[str, Any], *, seed: int = 0,
                             random_k: int = 1000) -> pd.DataFrame:
    """EDP of fixed hardware points with the heuristic mapper and with best-of-k random mappings.

    ``hardware`` maps a label (e.g. "gemmini-default") to a :class:`~dosa.hardware.Hardware`.
    """
    import numpy as np

    from dosa.evaluation import score_network
    from dosa.search.starts import best_of_random_mappings, heuristic_mappings

    rows = []
    for name, hw in hardware.items():
        designs = {"heuristic": heuristic_mappings(network, hw)}
        if random_k > 0:
            rng = np.random.default_rng([seed, 7])
            designs[f"best-of-{random_k}-random"] = best_of_random_mappings(
                network, hw, random_k, rng)[0]
        for mapper, mappings in designs.items():
            score = score_network(network, mappings, hw)
            rows.append({"workload": network.name, "hardware": name, "pe_dim": hw.pe_dim,
                         "sp_kb": hw.sp_kb, "acc_kb": hw.acc_kb, "mapper": mapper,
                         "cycles": score.cycles, "energy_uj": score.energy_uj,
                         "edp": score.edp, "area_mm2": hw.area_mm2()})
    return pd.DataFrame(rows)
