"""Throughput of the batched Gemmini-TL model: layer-mapping evaluations per second.

Measures (a) the exact model under ``torch.no_grad`` (what scoring and the baselines use) and
(b) a forward + backward pass with gradients on the temporal and spatial factors (what one
DOSA gradient step costs), for several batch sizes. Rows are random valid mappings of the
ResNet-50 layers (``round_mapping`` of random real-valued factor tables, random loop orders)
on random power-of-two hardware, drawn from a pool of distinct rows.

    python benchmarks/bench_model.py [--batch-sizes 1 1000 100000] [--repeats 7]
                                     [--device cpu|cuda] [--json PATH] [--claims]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dosa.claims import claim, update_claims
from dosa.mapping import Mapping, round_mapping, stack_mappings
from dosa.model import evaluate
from dosa.workload import load_network

SOURCE = "benchmarks/bench_model.py"
CLAIM_BATCH = 100_000
POOL = 4096
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def make_pool(size: int, seed: int) -> Batch:
    """``size`` random valid (layer, mapping, hardware) rows for the ResNet-50 layers."""
    rng = np.random.default_rng(seed)
    layers = load_network("resnet50").layers
    dims, strides, temporal, spatial, rank = [], [], [], [], []
    for i in range(size):
        layer = layers[i % len(layers)]
        hi = np.log(2 * np.array(layer.dims, dtype=np.float64))
        t = np.exp(rng.uniform(np.log(0.5), hi, size=(4, 7)))
        s = np.exp(rng.uniform(np.log(0.5), hi, size=(4, 7)))
        r = np.array([rng.permutation(7) for _ in range(4)])
        m = round_mapping(t, s, r, layer, max_spatial=int(2 ** rng.integers(1, 8)))
        dims.append(layer.dims)
        strides.append(layer.strides)
        temporal.append(m.temporal)
        spatial.append(m.spatial)
        rank.append(m.rank)
    hw = np.stack([2.0 ** rng.integers(1, 8, size), 2.0 ** rng.integers(0, 12, size),
                   2.0 ** rng.integers(0, 12, size)], axis=1)
    t, s, r = stack_mappings([Mapping(a, b, c) for a, b, c in zip(temporal, spatial, rank,
                                                                  strict=True)])
    return (torch.tensor(dims, dtype=torch.float64), torch.tensor(strides, dtype=torch.float64),
            t, s, r, torch.from_numpy(hw))


def take(pool: Batch, n: int, seed: int, device: torch.device) -> Batch:
    idx = torch.from_numpy(np.random.default_rng(seed).integers(0, len(pool[0]), n))
    return tuple(x[idx].contiguous().to(device) for x in pool)  # type: ignore[return-value]


def exact_step(batch: Batch) -> Callable[[], None]:
    def run() -> None:
        with torch.no_grad():
            evaluate(*batch)
    return run


def grad_step(batch: Batch) -> Callable[[], None]:
    dims, strides, t0, s0, rank, hw = batch

    def run() -> None:
        t = t0.clone().requires_grad_(True)
        s = s0.clone().requires_grad_(True)
        out = evaluate(dims, strides, t, s, rank, hw)
        (out.cycles * out.energy_uj).sum().backward()
    return run


def time_it(fn: Callable[[], None], batch_size: int, repeats: int, device: torch.device,
            min_time: float = 0.2) -> dict[str, float]:
    """Median evals/s over ``repeats`` timings, each of enough calls to last ``min_time``."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()  # warm-up (allocator, kernels, lazy init)
    fn()
    sync()
    start = time.perf_counter()
    fn()
    sync()
    one = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(min_time / one))
    rates = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        sync()
        rates.append(batch_size * calls / (time.perf_counter() - start))
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates),
            "calls_per_timing": calls, "seconds_per_call": batch_size / statistics.median(rates)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 1000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    parser.add_argument("--claims", action="store_true",
                        help=f"record bench.model_evals_per_s (batch {CLAIM_BATCH:,}, exact)")
    args = parser.parse_args(argv)
    if args.claims and CLAIM_BATCH not in args.batch_sizes:
        parser.error(f"--claims needs batch size {CLAIM_BATCH} among --batch-sizes")

    if args.device == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available; skipping the benchmark.")
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    device_name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                   else platform.processor() or platform.machine())
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "device": args.device, "device_name": device_name,
            "python": platform.python_version()}
    print(f"torch {info['torch']}  threads {info['threads']}  (cpu_count {info['cpu_count']})  "
          f"device {args.device} ({device_name})")

    t0 = time.perf_counter()
    pool = make_pool(POOL, args.seed)
    print(f"pool of {POOL} random valid ResNet-50 layer mappings built in "
          f"{time.perf_counter() - t0:.1f} s")

    results = []
    header = (f"{'batch':>9} | {'exact evals/s':>15} | {'fwd+bwd evals/s':>15} | "
              f"{'exact s/call':>12}")
    print(header)
    print("-" * len(header))
    for n in args.batch_sizes:
        batch = take(pool, n, args.seed + n, device)
        exact = time_it(exact_step(batch), n, args.repeats, device)
        grad = time_it(grad_step(batch), n, args.repeats, device)
        results.append({"batch": n, "exact": exact, "grad": grad})
        print(f"{n:>9,} | {exact['median']:>15,.0f} | {grad['median']:>15,.0f} | "
              f"{exact['seconds_per_call']:>12.3g}", flush=True)

    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1) + "\n")
        print(f"wrote {args.json}")
    if args.claims:
        rows = [r for r in results if r["batch"] == CLAIM_BATCH]
        key = "bench.model_evals_per_s" + ("" if args.device == "cpu" else f"_{args.device}")
        update_claims({key: claim(rows[0]["exact"]["median"], None, "evals/s", SOURCE,
                                          deterministic=False)})
        print(f"recorded claim {key}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
