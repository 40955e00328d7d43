"""Throughput of DOSA's gradient search: gradient steps per second on a whole network.

One step = min-HW from all layers' mappings, the model on every layer of every start, the
network EDP loss and its backward pass, and an Adam update. All starts of a run are one batch,
so a step of a 7-start run evaluates 7 x 24 ResNet-50 layer mappings.

    python benchmarks/bench_search.py [--workload resnet50] [--steps 300] [--claims]
"""

from __future__ import annotations

import argparse
import time

import torch

from dosa.claims import claim, update_claims
from dosa.search.dosa_gd import dosa_search
from dosa.workload import load_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="resnet50")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--claims", action="store_true", help="record the 7-start figure")
    args = parser.parse_args()
    network = load_network(args.workload)
    print(f"torch {torch.__version__}; {args.workload}: {len(network.layers)} unique layers")
    print(f"{'starts':>7} | {'steps/s':>9} | {'layer-mapping evals/s':>22}")
    rates = {}
    for starts in (1, 7):
        # a short and a long run differ only in gradient steps (start points and the final
        # rounding are the same), so their time difference is the cost of the extra steps
        def timed(steps: int, n: int = starts) -> float:
            t0 = time.perf_counter()
            dosa_search(network, 0, starts=n, steps=steps, round_every=10_000)
            return time.perf_counter() - t0

        timed(5)  # warm-up
        short, long = timed(5), timed(args.steps + 5)
        rates[starts] = args.steps / (long - short)
        evals = rates[starts] * starts * len(network.layers)
        print(f"{starts:>7} | {rates[starts]:>9.1f} | {evals:>22,.0f}")
    if args.claims:
        update_claims({f"bench.dosa_steps_per_s.{args.workload}": claim(
            rates[7], None, "steps/s (7 starts batched)", "benchmarks/bench_search.py",
            deterministic=False)})


if __name__ == "__main__":
    main()
