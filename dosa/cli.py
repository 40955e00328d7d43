"""Command line: ``dosa evaluate``, ``dosa search``, ``dosa sweep``, ``dosa export-timeloop``,
``dosa fetch-data``, ``dosa claims``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

log = logging.getLogger("dosa")
T = TypeVar("T")

#: Seeds feed ``numpy.random.default_rng`` and skopt, which take unsigned 32-bit seeds.
SEED_MAX = 2**32 - 1
#: The search methods (dosa.experiments.METHODS less the internal "bo-flat"). The faithful
#: baselines (random-paper, bo-paper) run the original's fixed design spaces and objective
#: (EDP), so they refuse hardware bounds and other objectives rather than silently ignore them.
SEARCH_METHODS: tuple[str, ...] = ("dosa", "random", "bo", "random-paper", "bo-paper", "grid",
                                   "best-known")
#: What a search may minimise (dosa.evaluation.OBJECTIVES, repeated so that the CLI answers
#: --help and bad options without importing torch).
OBJECTIVES = ("edp", "latency", "energy")
_BOUNDS = ("dosa", "random", "bo", "grid")
#: ``--variant`` of ``dosa search`` when none is given: dosa_gd.RECOMMENDED.
RECOMMENDED_VARIANT = "recommended"
_MAX_BOUNDS = (*_BOUNDS, "best-known")
#: ``dosa search`` option (argparse dest) -> the methods it applies to. The one source for
#: which options reach a method (:func:`method_config`), which are refused with a method
#: they do not apply to (:func:`_check_search_options`) and the methods named in --help.
SEARCH_OPTIONS: dict[str, tuple[str, ...]] = {
    "pe_dim": _BOUNDS,
    "max_pe_dim": _MAX_BOUNDS,
    "max_sp_kb": _MAX_BOUNDS,
    "max_acc_kb": _MAX_BOUNDS,
    "max_area_mm2": _MAX_BOUNDS,
    "objective": ("dosa", "random", "bo", "grid"),
    "starts": ("dosa",),
    "steps": ("dosa",),
    "round_every": ("dosa",),
    "lr": ("dosa",),
    "variant": ("dosa",),
    "start": ("dosa",),
    "predictor": ("dosa",),
    "screen": ("dosa",),
    "refine_samples": ("dosa",),
    "compile": ("dosa",),
    "warm_start": ("dosa",),
    "num_hw": ("random", "bo", "random-paper", "bo-paper"),
    "mappings_per_layer": ("random", "random-paper"),
    "register_p": ("random-paper",),
    "mappings_per_hw": ("bo", "bo-paper"),
    "candidates_per_layer": ("bo", "bo-paper"),
    "top_k": ("bo", "bo-paper"),
    "proposals": ("bo-paper",),
    "argsort_bug": ("bo-paper",),
    "keep_all": ("bo-paper",),
}


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one stderr line (``prog: error: ...``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _flag(dest: str) -> str:
    """``max_sp_kb`` -> ``--max-sp-kb``."""
    return "--" + dest.replace("_", "-")


def _for_methods(dest: str, text: str) -> str:
    """Help text of a search option, naming the methods it applies to (from the table)."""
    return f"{text} [--method {', '.join(SEARCH_OPTIONS[dest])}]"


def _seed(text: str) -> int:
    """argparse type of ``--seed``: an integer the random generators accept."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(
            f"must be an integer in [0, {SEED_MAX}], got {text!r}")
    return value


def _positive_int(text: str) -> int:
    """argparse type of counts and sizes: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _count(text: str) -> int:
    """argparse type of counts that may be zero: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    """argparse type of rates and bounds: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
    return value


def _on_off(text: str) -> bool:
    """argparse type of switches that default on in one method and off in another."""
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"must be on or off, got {text!r}")
    return text == "on"


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from dosa.evaluation import REASON_COLUMN, VALID_COLUMN, evaluate_frame
    from dosa.io import atomic_write_text, check_output_file

    # A bad --out fails in milliseconds, before a large CSV is read and scored (the check
    # also creates and removes a probe file, since os.access says yes to root on /proc).
    out_path = check_output_file(args.out, "--out")
    src = Path(args.csv)
    if not src.is_file():
        what = "is a folder" if src.is_dir() else "does not exist"
        raise ValueError(f"--csv {args.csv!r}: input CSV {what}; expected a CSV file")
    try:
        frame = pd.read_csv(src, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"--csv {args.csv!r}: not UTF-8 text (byte {err.start}); expected a "
                         "CSV file") from err
    except OSError as err:
        raise ValueError(f"--csv {args.csv!r}: cannot be read ({err.strerror or err})") from err
    except ValueError as err:  # pandas' EmptyDataError, ParserError, ...
        reason = " ".join(str(err).split())
        raise ValueError(f"--csv {args.csv!r}: not a CSV file ({reason})") from err
    scored = evaluate_frame(frame, source=str(src), allow_invalid=args.allow_invalid)
    if not args.allow_invalid:
        scored = scored.drop(columns=[VALID_COLUMN])  # all True; keep the plain column set
    stale = [c for c in (*scored.columns, VALID_COLUMN, REASON_COLUMN) if c in frame.columns]
    out = pd.concat([frame.drop(columns=stale), scored], axis=1)
    atomic_write_text(out_path, out.to_csv(index=False))
    log.info("wrote %d rows to %s", len(out), args.out)
    return 0


def _check_search_options(args: argparse.Namespace, methods: Sequence[str] | None = None,
                          flag: str = "--method") -> None:
    """Refuse an option given with no method it applies to (see SEARCH_OPTIONS).

    Silently ignoring e.g. ``--num-hw`` with ``--method dosa`` would let a user believe a
    run used a budget it never saw. ``--objective edp`` is accepted by every method, since
    every method minimises EDP; another objective is refused by those that minimise EDP only.
    ``methods`` (default: ``args.method``) are the methods of the run(s); a sweep's option
    goes to those of its methods it applies to.
    """
    methods = [args.method] if methods is None else list(methods)
    for dest, allowed in SEARCH_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "objective":
            if value == "edp":
                continue
            others = [m for m in methods if m not in allowed]
            if others:
                raise ValueError(f"--objective {value} applies to {flag} {', '.join(allowed)} "
                                 f"(not {', '.join(others)}, which minimises EDP only)")
            continue
        if not any(m in allowed for m in methods):
            raise ValueError(f"{_flag(dest)} applies to {flag} {', '.join(allowed)} "
                             f"(not {', '.join(methods)})")


def method_config(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """Keyword arguments of ``method`` from the options that were given and apply to it
    (``dosa search`` and ``dosa sweep`` alike, so a sweep's run is the single run).

    ``--objective edp`` is left out: it is every method's default, so a run with it shares
    the stored run (run key) of the same run without it.
    """
    config = {dest: getattr(args, dest) for dest, methods in SEARCH_OPTIONS.items()
              if method in methods and getattr(args, dest, None) is not None
              and not (dest == "objective" and args.objective == "edp")}
    if method == "dosa" and config.get("variant", RECOMMENDED_VARIANT) == RECOMMENDED_VARIANT:
        from dosa.search.dosa_gd import recommended

        preset = recommended(config.get("objective", "edp"), config.get("predictor"),
                             config.get("pe_dim"))
        config = {**preset, **{k: v for k, v in config.items() if k != "variant"}}
        if args.screen is None and "starts" in config:  # fewer starts than the preset screens
            config["screen"] = min(config["screen"], config["starts"])
    return config


#: What the exact refinement needs (dosa_gd.REFINEMENT_NEEDS), in flags.
_REFINEMENT_FLAGS = {"objective": "--objective edp", "pe_dim": "no --pe-dim",
                     "predictor": "no --predictor (or --predictor analytical)"}


def _check_dosa_options(args: argparse.Namespace) -> None:
    """``--screen`` and ``--refine-samples`` against the options they depend on. DosaConfig
    checks both too, but names its fields; here the error names the flags."""
    from dosa.search.dosa_gd import DosaConfig, refinement_blocker

    if args.screen is not None:
        starts = args.starts if args.starts is not None else DosaConfig().starts
        if args.screen > starts:
            raise ValueError(f"--screen {args.screen} exceeds the number of starts ({starts}, "
                             "see --starts); allowed: 0 to the number of starts")
    if args.refine_samples:
        blocker = refinement_blocker(args.objective or "edp", args.predictor, args.pe_dim)
        if blocker is not None:
            raise ValueError(f"--refine-samples {args.refine_samples} (the exact refinement "
                             "optimises network EDP on the analytical model with a free "
                             f"pe_dim) needs {_REFINEMENT_FLAGS[blocker]}; give "
                             "--refine-samples 0 or leave it out")


def _warm_start(folder: str, network: Any) -> dict[str, Any]:
    """DOSA's warm-start options from a previous ``dosa search`` result of the same network:
    its mappings (as strings) and its own hardware (:func:`dosa.tradeoff.warm_config`).

    A result of another network (name, layer count or, when the result records it, the
    network's content) is refused: its mappings would not fit the layers searched now.
    """
    from dosa.experiments import network_digest
    from dosa.search.result import RESULT_FILE, SearchResult

    path = Path(folder).expanduser()
    if not (path / RESULT_FILE).is_file():
        what = ("does not exist" if not path.exists() else
                f"has no {RESULT_FILE}" if path.is_dir() else "is not a folder")
        raise ValueError(f"--warm-start {folder}: {what}; expected a dosa search result folder")
    try:
        previous = SearchResult.read(path)
    except (ValueError, KeyError, TypeError) as err:  # ResultError is a ValueError
        raise ValueError(f"--warm-start {folder}: not a readable dosa search result "
                         f"({one_line(err)})") from None
    if previous.workload != network.name or len(previous.mappings) != len(network.layers):
        raise ValueError(f"--warm-start {folder}: a result of network {previous.workload!r} "
                         f"({len(previous.mappings)} layers), not of {network.name!r} "
                         f"({len(network.layers)} layers)")
    digest = previous.provenance.get("network_sha256")
    if digest is not None and digest != network_digest(network):
        raise ValueError(f"--warm-start {folder}: a result of another version of network "
                         f"{network.name!r} (its layers differ)")
    from dosa.tradeoff import warm_config

    return warm_config(previous)


def _diverged(args: argparse.Namespace, network_name: str) -> str:
    """One-line advice for a DOSA run whose loss became NaN/inf (usually a too-large --lr)."""
    from dosa.search.dosa_gd import DosaConfig

    variant = "improved" if args.variant in (None, RECOMMENDED_VARIANT) else args.variant
    default = DosaConfig(variant=variant).learning_rate(network_name)
    if args.lr is None:
        return (f"the search diverged (non-finite loss) at the default --lr {default:g}; "
                f"try a smaller --lr")
    return (f"--lr {args.lr:g} made the search diverge (non-finite loss); try a smaller --lr "
            f"(default: {default:g})")


def _cmd_search(args: argparse.Namespace) -> int:
    from dosa.io import check_output_dir

    # Cheap checks first: a bad option or --out fails in milliseconds, before any import of
    # the search code or any search work.
    _check_search_options(args)
    out = check_output_dir(args.out, "--out")
    _check_dosa_options(args)

    from dosa.experiments import search_to_folder
    from dosa.workload import WorkloadError, load_network

    try:
        network = load_network(args.workload)  # a malformed workload fails before any search
    except WorkloadError as err:
        raise ValueError(f"--workload {err}") from None
    config = method_config(args, args.method)
    if args.warm_start is not None:
        config.update(_warm_start(args.warm_start, network))
    try:
        result, loaded = search_to_folder(network, args.method, args.seed, config, out,
                                          force=args.force, progress=not args.quiet)
    except FloatingPointError:
        raise ValueError(_diverged(args, network.name)) from None
    if loaded:
        log.info("result already complete in %s (use --force to recompute)", out)
    stored = result.to_json()
    summary = {k: stored[k] for k in ("method", "seed", "workload", "hardware", "cycles",
                                      "energy_uj", "edp", "area_mm2", "samples", "wall_s")}
    if stored.get("objective", "edp") != "edp":  # EDP runs print what they always printed
        summary["objective"] = stored["objective"]
    print(json.dumps(summary, indent=1))
    return 0


def _list(parse: Callable[[str], T], flag: str) -> Callable[[str], list[T]]:
    """argparse type of a comma-separated list whose items ``parse`` reads."""

    def read(text: str) -> list[T]:
        items = [t.strip() for t in text.split(",")]
        if not all(items):
            raise argparse.ArgumentTypeError(f"{flag} takes a comma-separated list without "
                                             f"empty items, got {text!r}")
        return [parse(t) for t in items]

    return read


def _budget(text: str) -> float | None:
    if text.lower() in ("none", "unbounded"):
        return None
    return _positive_float(text)


def _method(text: str) -> str:
    if text not in SEARCH_METHODS:
        raise argparse.ArgumentTypeError(f"unknown method {text!r}; allowed: "
                                         f"{', '.join(SEARCH_METHODS)}")
    return text


def _cmd_sweep(args: argparse.Namespace) -> int:
    from dosa.io import check_output_dir

    _check_search_options(args, args.methods, flag="--methods")
    if args.area_budgets is not None and args.max_area_mm2 is not None:
        raise ValueError("--max-area-mm2 and --area-budgets are exclusive; give the budgets as "
                         "--area-budgets")
    if args.scheduler is not None and args.workers is not None:
        raise ValueError("--workers sizes the local cluster; with --scheduler the cluster's "
                         "own workers run the tasks (give one of them)")
    out = check_output_dir(args.out, "--out")
    if "dosa" in args.methods:
        _check_dosa_options(args)
    if args.scheduler is None:  # with a cluster, paths are the workers' (checked there)
        from dosa.workload import BUILTIN_NETWORKS

        for workload in args.workloads:
            if (workload.lower() not in BUILTIN_NETWORKS
                    and not Path(workload).expanduser().exists()):
                raise ValueError(f"--workloads {workload}: neither a built-in network "
                                 f"({', '.join(BUILTIN_NETWORKS)}) nor an existing file or "
                                 "folder")

    from dosa.sweep import plan_sweep, run_sweep

    configs = {m: method_config(args, m) for m in args.methods}
    tasks = plan_sweep(args.workloads, args.methods, args.seeds, configs,
                       budgets=args.area_budgets, objective=args.objective or "edp")
    if not args.verbose:  # Dask's INFO chatter (cluster start and stop) only with -v
        import distributed  # noqa: F401  (configures its loggers on import; then quieten)

        logging.getLogger("distributed").setLevel(logging.WARNING)
    frame = run_sweep(tasks, out, workers=args.workers, scheduler=args.scheduler,
                      force=args.force, progress=not args.quiet)
    failed = frame[frame.status == "failed"]  # each is logged with its error by run_sweep
    print(f"{len(frame)} runs ({(frame.status == 'done').sum()} done, "
          f"{(frame.status == 'reused').sum()} reused, {len(failed)} failed): "
          f"{out / 'sweep.csv'}")
    return 1 if len(failed) else 0


def _cmd_export_timeloop(args: argparse.Namespace) -> int:
    from dosa.timeloop import export_timeloop

    print(export_timeloop(args.result_dir, args.out_dir))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from dosa import data

    # Every key is checked before the first (possibly long) download starts.
    unknown = [key for key in args.keys if key not in data.FILES]
    if unknown:
        raise ValueError(f"unknown data file key(s) {', '.join(map(repr, unknown))}; "
                         f"allowed keys: {', '.join(sorted(data.FILES))}")
    for key in args.keys or sorted(data.FILES):
        path = data.path(key)
        print(f"{key}: {path}")
    return 0


def _cmd_claims(args: argparse.Namespace) -> int:
    from dosa.claims import main as claims_main

    return claims_main([] if args.path is None else ["--path", args.path], prog="dosa claims")


def _add_method_options(se: argparse.ArgumentParser, *, warm_start: bool = True) -> None:
    """The method options of ``dosa search`` (SEARCH_OPTIONS), shared by ``dosa sweep``."""

    def option(group: argparse._ActionsContainer, dest: str, text: str, **kwargs: Any) -> None:
        group.add_argument(_flag(dest), dest=dest, help=_for_methods(dest, text), **kwargs)

    option(se, "objective", "what the search minimises: edp (default), latency (cycles) or "
           "energy (uJ); random-paper, bo-paper and best-known minimise EDP only",
           choices=OBJECTIVES)
    h = se.add_argument_group("hardware bounds")
    option(h, "pe_dim", "fix the PE array side (e.g. 16 for FireSim)", type=_positive_int)
    option(h, "max_pe_dim", "largest PE array side", type=_positive_int)
    option(h, "max_sp_kb", "largest scratchpad (KB)", type=_positive_float)
    option(h, "max_acc_kb", "largest accumulator (KB)", type=_positive_float)
    option(h, "max_area_mm2", "largest area (mm²)", type=_positive_float)
    g = se.add_argument_group("dosa options")
    option(g, "starts", "number of start points (default and paper: 7)", type=_positive_int)
    option(g, "steps", "gradient steps per start (default 400, or 1346 for the latency and "
           "energy objectives, a --predictor or a --pe-dim; paper: 1490)",
           type=_positive_int)
    option(g, "round_every", "steps between roundings (default 100; paper: 500)",
           type=_positive_int)
    option(g, "lr", "learning rate (paper: per workload)", type=_positive_float)
    option(g, "variant", "search configuration: recommended (default: the improved schedule "
           "with --screen 3, --round-every 100, --steps 400 and --refine-samples 6600; for "
           "another objective, a --predictor or a --pe-dim: --steps 1346 and no refinement; "
           "each overridable), improved, or paper (the published schedule and defaults)",
           choices=[RECOMMENDED_VARIANT, "improved", "paper"])
    option(g, "start", "start-point generator (default heuristic)",
           choices=["heuristic", "random", "milp"])
    option(g, "predictor", "latency predictor: analytical or a saved .pt file")
    option(g, "screen", "starts taken from the best points of the hardware grid within the "
           "bounds instead of random hardware (0 to --starts; default 3, paper and improved: 0)",
           type=_count, metavar="N")
    option(g, "refine_samples", "samples (network evaluations) of the exact refinement of the "
           "best design: mapping optimisation and a buffer-size pattern search (needs the EDP "
           "objective, no --predictor and no --pe-dim; default 6600 with --variant recommended "
           "where those hold, else 0)", type=_count, metavar="N")
    option(g, "compile", "compile the gradient step with torch.compile (needs a C++ compiler): "
           "about twice the steps/s after a first compilation; results may differ from eager in "
           "the last bits", action="store_const", const=True)
    if warm_start:
        option(g, "warm_start", "a previous dosa search result folder of the same network: "
               "the first start begins from its mappings, and its design on its own hardware "
               "is a candidate (so the answer is never worse where that hardware is allowed)",
               metavar="DIR")
    b = se.add_argument_group("baseline options")
    option(b, "num_hw", "hardware points (random, random-paper: 10; bo: 100; bo-paper: 100 "
           "random training points, then --proposals)",
           type=_positive_int)
    option(b, "mappings_per_layer", "mappings per layer per hardware point (default 1000)",
           type=_positive_int)
    option(b, "mappings_per_hw", "random mappings per layer that train the mapping GP "
           "(default 100)", type=_positive_int)
    option(b, "candidates_per_layer", "further random mappings the GP ranks (default 1000)",
           type=_positive_int)
    option(b, "top_k", "lowest-LCB candidates evaluated per layer (default 10)",
           type=_positive_int)
    option(b, "proposals", "hardware points the outer GP proposes after the --num-hw "
           "training points (default 10; 0: training only)", type=_count)
    option(b, "register_p", "allow a temporal P loop at the registers (original: off)",
           type=_on_off, metavar="{on,off}")
    option(b, "argsort_bug", "the original's double argsort of the proposals (default on)",
           type=_on_off, metavar="{on,off}")
    option(b, "keep_all", "keep each layer's best of all evaluated mappings, not of the top_k "
           "(default off)", type=_on_off, metavar="{on,off}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dosa", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="score rows in the published CSV format with the model")
    ev.add_argument("--csv", required=True, help="input CSV (prob.*, arch.*, mapping.mapping)")
    ev.add_argument("--out", required=True, help="output CSV with model.cycle/energy/area added")
    ev.add_argument("--allow-invalid", action="store_true",
                    help="score physically impossible rows anyway; marked in model.valid")
    ev.set_defaults(func=_cmd_evaluate)

    se = sub.add_parser("search", help="co-search hardware and mappings for a network")
    se.add_argument("--workload", required=True,
                    help="built-in network (resnet50, bert, unet, retinanet), a YAML or ONNX "
                    "file, or a folder of Timeloop problem YAMLs")
    se.add_argument("--method", default="dosa", choices=SEARCH_METHODS)
    se.add_argument("--seed", type=_seed, default=0,
                    help=f"random seed, an integer in [0, {SEED_MAX}] (default 0); random-paper "
                    "and bo-paper seed Python's random with it as the original did (paper "
                    "seeds: 0, 100, 1111, 8888, 99999); grid is deterministic and only "
                    "records it")
    se.add_argument("--out", required=True, help="result folder (result.json, mappings.csv)")
    se.add_argument("--force", action="store_true",
                    help="recompute even if --out holds a result (also replaces another run's)")
    se.add_argument("--quiet", action="store_true", help="no progress bar")

    _add_method_options(se)
    missing = set(SEARCH_OPTIONS) - {a.dest for a in se._actions}
    assert not missing, f"SEARCH_OPTIONS without a --option: {missing}"
    se.set_defaults(func=_cmd_search)

    sw = sub.add_parser("sweep", help="many searches (workloads x methods x seeds x area "
                        "budgets) as tasks on Dask distributed")
    sw.add_argument("--workloads", required=True, type=_list(str, "--workloads"),
                    help="comma-separated networks, as --workload of dosa search")
    sw.add_argument("--methods", default=["dosa"], type=_list(_method, "--methods"),
                    help=f"comma-separated methods (default dosa): {', '.join(SEARCH_METHODS)}")
    sw.add_argument("--seeds", default=[0], type=_list(_seed, "--seeds"),
                    help="comma-separated seeds (default 0)")
    sw.add_argument("--area-budgets", type=_list(_budget, "--area-budgets"),
                    help="comma-separated area budgets in mm² (none: unbounded) for "
                    f"{', '.join(_BOUNDS)}; DOSA runs are warm-started from budget to budget")
    sw.add_argument("--out", required=True,
                    help="sweep folder: <workload>/<label>/seed<k>/ per run, and sweep.csv")
    sw.add_argument("--workers", type=_positive_int,
                    help="processes of the local Dask cluster (default: the CPUs)")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="an existing Dask scheduler (tcp://host:port) instead of a local "
                    "cluster; its workers must see --out and the workload files")
    sw.add_argument("--force", action="store_true", help="recompute complete runs too")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_method_options(sw, warm_start=False)
    sw.set_defaults(func=_cmd_sweep)

    tl = sub.add_parser("export-timeloop",
                        help="write a search result as Timeloop inputs (arch, problems, mappings)")
    tl.add_argument("result_dir", help="a dosa search result folder (result.json, mappings.csv)")
    tl.add_argument("out_dir", help="new or empty folder for arch.yaml, problems/, mappings/")
    tl.set_defaults(func=_cmd_export_timeloop)

    fe = sub.add_parser("fetch-data", help="download and verify the published DOSA datasets")
    fe.add_argument("keys", nargs="*", help="which files (default: all)")
    fe.set_defaults(func=_cmd_fetch)

    cl = sub.add_parser("claims", help="print the claims table of artifacts/claims.json")
    cl.add_argument("--path", help="claims.json to read")
    cl.set_defaults(func=_cmd_claims)
    return parser


#: Errors that describe bad input or a bad environment (files, data, options): reported as
#: one line with exit 2. Anything else (AssertionError, TypeError, ...) is a bug in dosa and
#: keeps its traceback.
_USER_ERRORS = (ValueError, RuntimeError, OSError, FloatingPointError)
_BUG_ERRORS = (NotImplementedError, RecursionError)  # RuntimeErrors that are our bugs


def one_line(err: BaseException) -> str:
    """The error message on one line (YAML and OS errors can span several)."""
    text = " ".join(str(err).split())
    return text or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dosa``: exit 0 on success, 2 on bad input, 130 on Ctrl-C."""
    command = "dosa"
    try:
        args = build_parser().parse_args(argv)
        command = f"dosa {args.command}"
        # INFO for dosa's own loggers only: third-party INFO chatter (e.g. torch's exit-time
        # cache statistics) stays hidden unless it is a warning.
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (``dosa ... | head``): not an error of the command.
        # Point stdout at devnull so the interpreter's final flush does not complain.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # stdout is not a real file (e.g. captured in tests)
            pass
        return 141  # 128 + SIGPIPE, as a shell reports it
    except _BUG_ERRORS:
        raise
    except _USER_ERRORS as err:
        print(f"{command}: error: {one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
