"""Command line: ``dosa evaluate``, ``dosa search``, ``dosa fetch-data``, ``dosa claims``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("dosa")


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from dosa.evaluation import evaluate_frame
    from dosa.io import atomic_write_text

    src = Path(args.csv)
    if not src.is_file():
        raise FileNotFoundError(f"input CSV {src} does not exist")
    frame = pd.read_csv(src)
    scored = evaluate_frame(frame, source=str(src))
    out = pd.concat([frame.drop(columns=[c for c in scored.columns if c in frame.columns]),
                     scored], axis=1)
    atomic_write_text(Path(args.out), out.to_csv(index=False))
    log.info("wrote %d rows to %s", len(out), args.out)
    return 0


def _search_config(args: argparse.Namespace) -> dict[str, Any]:
    """Method keyword arguments from the CLI options that were given."""
    config: dict[str, Any] = {}
    common = {"pe_dim": args.pe_dim}
    per_method = {
        "dosa": {"starts": args.starts, "steps": args.steps, "round_every": args.round_every,
                 "lr": args.lr, "variant": args.variant, "start": args.start,
                 "max_pe_dim": args.max_pe_dim, "max_sp_kb": args.max_sp_kb,
                 "max_acc_kb": args.max_acc_kb, "max_area_mm2": args.max_area_mm2,
                 "predictor": args.predictor},
        "random": {"num_hw": args.num_hw, "mappings_per_layer": args.mappings_per_layer},
        "bo": {"num_hw": args.num_hw},
    }
    for key, value in {**common, **per_method[args.method]}.items():
        if value is not None:
            config[key] = value
    return config


def _cmd_search(args: argparse.Namespace) -> int:
    from dosa.experiments import method_fn
    from dosa.search.result import RESULT_FILE, SearchResult
    from dosa.workload import load_network

    network = load_network(args.workload)  # a malformed workload fails before any search
    config = _search_config(args)
    out = Path(args.out)
    result_path = out / RESULT_FILE
    if result_path.exists() and not args.force:
        stored = SearchResult.read(out)
        if (stored.method, stored.seed, stored.extra.get("run_config")) == (
                args.method, args.seed, config):
            log.info("result already complete in %s (use --force to recompute)", out)
            print(json.dumps({k: stored.to_json()[k] for k in
                              ("method", "seed", "workload", "hardware", "edp")}))
            return 0
    fn = method_fn(args.method)
    result = fn(network, args.seed, progress=not args.quiet, checkpoint_dir=out, **config)
    result.extra["run_config"] = config
    result.write(out, network)
    summary = {k: result.to_json()[k] for k in ("method", "seed", "workload", "hardware",
                                                "cycles", "energy_uj", "edp", "area_mm2",
                                                "samples", "wall_s")}
    print(json.dumps(summary, indent=1))
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from dosa import data

    for key in args.keys or sorted(data.FILES):
        path = data.path(key)
        print(f"{key}: {path}")
    return 0


def _cmd_claims(args: argparse.Namespace) -> int:
    from dosa.claims import main as claims_main

    return claims_main([] if args.path is None else ["--path", args.path])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dosa", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    ev = sub.add_parser("evaluate", help="score rows in the published CSV format with the model")
    ev.add_argument("--csv", required=True, help="input CSV (prob.*, arch.*, mapping.mapping)")
    ev.add_argument("--out", required=True, help="output CSV with model.cycle/energy/area added")
    ev.set_defaults(func=_cmd_evaluate)

    se = sub.add_parser("search", help="co-search hardware and mappings for a network")
    se.add_argument("--workload", required=True,
                    help="built-in network (resnet50, bert, unet, retinanet) or a YAML file")
    se.add_argument("--method", default="dosa", choices=["dosa", "random", "bo"])
    se.add_argument("--seed", type=int, default=0)
    se.add_argument("--out", required=True, help="result folder (result.json, mappings.csv)")
    se.add_argument("--force", action="store_true", help="recompute even if a result exists")
    se.add_argument("--quiet", action="store_true", help="no progress bar")
    se.add_argument("--pe-dim", type=int, help="fix the PE array side (e.g. 16 for FireSim)")
    g = se.add_argument_group("dosa options")
    g.add_argument("--starts", type=int, help="number of start points (paper: 7)")
    g.add_argument("--steps", type=int, help="gradient steps per start (paper: 1490)")
    g.add_argument("--round-every", type=int, help="steps between roundings (paper: 500)")
    g.add_argument("--lr", type=float, help="learning rate (paper: per workload)")
    g.add_argument("--variant", choices=["paper", "improved"], help="search configuration")
    g.add_argument("--start", choices=["heuristic", "random", "milp"],
                   help="start-point generator (default heuristic)")
    g.add_argument("--predictor", help="latency predictor: analytical or a saved .pt file")
    g.add_argument("--max-pe-dim", type=int, help="hardware bound: largest PE array side")
    g.add_argument("--max-sp-kb", type=float, help="hardware bound: largest scratchpad (KB)")
    g.add_argument("--max-acc-kb", type=float, help="hardware bound: largest accumulator (KB)")
    g.add_argument("--max-area-mm2", type=float, help="hardware bound: largest area (mm²)")
    b = se.add_argument_group("baseline options")
    b.add_argument("--num-hw", type=int, help="hardware points (random: 10, bo: 100)")
    b.add_argument("--mappings-per-layer", type=int, help="random: mappings per layer per hw")
    se.set_defaults(func=_cmd_search)

    fe = sub.add_parser("fetch-data", help="download and verify the published DOSA datasets")
    fe.add_argument("keys", nargs="*", help="which files (default: all)")
    fe.set_defaults(func=_cmd_fetch)

    cl = sub.add_parser("claims", help="print the claims table of artifacts/claims.json")
    cl.add_argument("--path", help="claims.json to read")
    cl.set_defaults(func=_cmd_claims)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except (ValueError, RuntimeError, FileNotFoundError) as err:
        print(f"dosa {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
