"""Speed of DOSA's gradient search: steps per second, and the wall time of a whole search.

One step = min-HW from all layers' mappings, the model on every layer of every start, the
network EDP loss and its backward pass, and an Adam update. All starts of a run are one batch,
so a step of a 7-start run evaluates 7 x 24 ResNet-50 layer mappings. The whole search is the
paper's budget (``--variant paper``: 7 starts x 1,490 steps), timed in-process (the search
alone, best of ``--repeats``) and as the ``dosa search`` command (imports, network loading and
the result folder included). Also the hardware-grid screen and the whole search of the
recommended configuration, the default of ``dosa search``, which starts with that screen and
ends with the exact refinement (its steps and refinement samples are ``RECOMMENDED``'s, so the
figure is comparable only between runs of the same preset). Last, the step rate and
the paper-budget search with the step compiled (``--compile``: ``torch.compile``, the fusion
the sweeps issue names as the likely lever), and the first compiled search, which compiles.

    python benchmarks/bench_search.py [--workload resnet50] [--steps 300] [--repeats 3] [--claims]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from typing import Any

import torch

from dosa.claims import claim, update_claims
from dosa.search.dosa_gd import RECOMMENDED, dosa_search
from dosa.search.grid import grid_points, score_points
from dosa.search.starts import _grow_tile
from dosa.workload import load_network

SOURCE = "benchmarks/bench_search.py"


def timing(value: float, unit: str) -> dict[str, Any]:
    """A claim of this benchmark: a timing, shown by ``make claims`` but never flagged."""
    return claim(value, None, unit, SOURCE, deterministic=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="resnet50")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3,
                        help="paper-budget searches timed in-process (the best counts)")
    parser.add_argument("--claims", action="store_true",
                        help="record the 7-start step rate and the search times")
    args = parser.parse_args()
    network = load_network(args.workload)
    print(f"torch {torch.__version__}; {args.workload}: {len(network.layers)} unique layers")
    print(f"{'starts':>7} | {'steps/s':>9} | {'layer-mapping evals/s':>22}")
    # a short and a long run differ only in gradient steps (start points and the final
    # rounding are the same), so their time difference is the cost of the extra steps
    def timed(steps: int, starts: int, compile: bool = False) -> float:
        t0 = time.perf_counter()
        dosa_search(network, 0, starts=starts, steps=steps, round_every=10_000, compile=compile)
        return time.perf_counter() - t0

    def step_rate(starts: int, compile: bool = False) -> float:
        short = timed(5, starts, compile)
        long = timed(args.steps + 5, starts, compile)
        return args.steps / (long - short)

    def paper_search(compile: bool = False) -> float:
        """The best of ``--repeats`` paper-budget searches, in seconds."""
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            dosa_search(network, 0, variant="paper", compile=compile)
            times.append(time.perf_counter() - t0)
        return min(times)

    rates = {}
    for starts in (1, 7):
        timed(5, starts)  # warm-up
        rates[starts] = step_rate(starts)
        evals = rates[starts] * starts * len(network.layers)
        print(f"{starts:>7} | {rates[starts]:>9.1f} | {evals:>22,.0f}")
    search = paper_search()
    # The recommended configuration (`dosa search`'s default) first scores every point of the
    # power-of-two hardware grid with the heuristic mapper, and ends with the exact refinement;
    # both timed cold (tile memo cleared).
    _grow_tile.cache_clear()
    t0 = time.perf_counter()
    points = grid_points(None)
    score_points(network, points)
    screen = time.perf_counter() - t0
    _grow_tile.cache_clear()
    t0 = time.perf_counter()
    dosa_search(network, 0, **RECOMMENDED)
    default = time.perf_counter() - t0
    print(f"hardware grid screen ({len(points)} points, heuristic mapper): {screen:.2f} s; "
          f"default (recommended) DOSA search: {default:.2f} s")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "dosa.cli", "search", "--workload", args.workload,
                        "--variant", "paper", "--quiet", "--out", f"{tmp}/run"],
                       check=True, stdout=subprocess.DEVNULL)
        command = time.perf_counter() - t0
    print(f"paper-budget DOSA search (7 starts x 1,490 steps): {search:.2f} s "
          f"(best of {args.repeats}); `dosa search --variant paper`: {command:.2f} s")
    # Last, as inductor leaves compile workers behind that would disturb the timings above:
    # the same with the step compiled (--compile); the first search includes the compilation
    # (shorter when inductor's on-disk cache already holds it).
    compiled_claims = {}
    try:
        t0 = time.perf_counter()
        dosa_search(network, 0, starts=7, steps=5, round_every=10_000, compile=True)
    except ValueError as err:  # no C++ compiler here: the compiled figures are not measured
        print(f"{err}: compiled timings skipped")
    else:
        first_compiled = time.perf_counter() - t0
        compiled_rate = step_rate(7, compile=True)
        compiled = paper_search(compile=True)
        print(f"compiled step (--compile): {compiled_rate:.1f} steps/s (7 starts; eager "
              f"{rates[7]:.1f}); paper-budget search {compiled:.2f} s (eager "
              f"{search:.2f}); first search, compilation included: "
              f"{first_compiled:.1f} s")
        compiled_claims = {
            f"bench.compiled_steps_per_s.{args.workload}": timing(
                compiled_rate, "steps/s (7 starts, --compile)"),
            f"bench.dosa_compiled_search_s.{args.workload}": timing(
                compiled, "s (paper budget, --compile, search only)"),
            f"bench.compile_first_search_s.{args.workload}": timing(
                first_compiled, "s (first 5-step --compile search: compilation)")}
    if args.claims:
        update_claims({
            f"bench.dosa_steps_per_s.{args.workload}": timing(
                rates[7], "steps/s (7 starts batched)"),
            f"bench.dosa_search_s.{args.workload}": timing(
                search, "s (paper budget, search only)"),
            f"bench.dosa_command_s.{args.workload}": timing(
                command, "s (dosa search --variant paper)"),
            f"bench.grid_screen_s.{args.workload}": timing(
                screen, "s (heuristic mapper on the 1,008-point grid)"),
            f"bench.dosa_default_search_s.{args.workload}": timing(
                default, "s (recommended configuration, search only)"),
            **compiled_claims})


if __name__ == "__main__":
    main()
