"""dosa sweep: runs planned, refused or run on Dask; a sweep equals the runs done one by one."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dosa.cli import main
from dosa.experiments import search_to_folder
from dosa.sweep import (
    COLUMNS,
    SWEEP_CSV,
    SweepTask,
    parallel_map,
    plan_sweep,
    run_sweep,
    run_task,
    workload_id,
)
from dosa.workload import load_network

TINY = {"layers": [{"name": "conv", "R": 3, "S": 3, "P": 14, "Q": 14, "C": 64, "K": 64},
                   {"name": "fc", "C": 128, "K": 256}]}
#: Tiny budgets: a few seconds per run on one core.
CONFIGS = {"dosa": {"starts": 1, "steps": 12, "round_every": 6, "variant": "improved"},
           "random": {"num_hw": 2, "mappings_per_layer": 8}}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY, sort_keys=False))
    return path


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump({"layers": [{"name": "a", "C": 8, "Kx": 3}]}))
    return path


# --- planning ---------------------------------------------------------------------------------


def test_plan_covers_every_run_tightest_budget_first(tiny: Path) -> None:
    tasks = plan_sweep([str(tiny), "BERT"], ["dosa", "random"], [0, 3], CONFIGS,
                       budgets=[None, 2, 0.5])
    assert len(tasks) == 2 * 2 * 2 * 3
    first = tasks[:3]
    assert [t.budget for t in first] == [0.5, 2.0, None]
    assert [t.folder for t in first] == ["tiny/dosa@0.5mm2/seed0", "tiny/dosa@2mm2/seed0",
                                         "tiny/dosa@unbounded/seed0"]
    assert tasks[-1].folder == "bert/random@unbounded/seed3"
    assert first[0].search_config() == {**CONFIGS["dosa"], "max_area_mm2": 0.5}
    assert "max_area_mm2" not in first[2].search_config()


def test_plan_without_budgets_names_the_objective(tiny: Path) -> None:
    plain = plan_sweep([str(tiny)], ["random"], [1], CONFIGS)
    assert [t.folder for t in plain] == ["tiny/random/seed1"]
    assert plain[0].search_config() == CONFIGS["random"]  # edp: left out, as in dosa search
    lat = plan_sweep([str(tiny)], ["grid"], [0], {}, objective="latency")
    assert lat[0].folder == "tiny/grid-latency/seed0"
    assert lat[0].search_config() == {"objective": "latency"}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"methods": ["random-paper"], "budgets": [1.0]}, "--area-budgets applies to --methods"),
    ({"methods": ["bo-paper"], "objective": "energy"}, "--objective energy applies to"),
    ({"methods": ["dosa", "dosa"]}, "--methods: duplicate"),
    ({"seeds": [1, 1]}, "--seeds: duplicate"),
    ({"seeds": []}, "--seeds must list"),
    ({"budgets": [0.0]}, "budgets"),
    ({"workloads": ["a/net.yaml", "b/net.yaml"]}, "would share the result folder net/"),
])
def test_plan_refuses_what_it_cannot_honour(kwargs: dict, message: str) -> None:
    args = {"workloads": ["bert"], "methods": ["dosa"], "seeds": [0], "configs": {}, **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_sweep(args.pop("workloads"), args.pop("methods"), args.pop("seeds"),
                   args.pop("configs"), **args)


def test_workload_ids() -> None:
    assert workload_id("ResNet50") == "resnet50"
    assert workload_id("nets/my_net.onnx") == "my_net"


# --- tasks ------------------------------------------------------------------------------------


def test_task_failure_is_a_row_not_an_exception(tmp_path: Path, broken: Path, tiny: Path) -> None:
    row = run_task(SweepTask(str(broken), "random", 0, None, "edp", (), "broken/random/seed0"),
                   str(tmp_path / "out"))
    assert row["status"] == "failed" and "Kx" in row["error"] and math.isnan(row["edp"])
    chained = run_task(SweepTask(str(tiny), "dosa", 0, 2.0, "edp", (), "tiny/dosa@2mm2/seed0"),
                       str(tmp_path / "out"), previous=row)
    assert chained["status"] == "failed"
    assert chained["error"] == "not run: its warm start broken/random/seed0 failed"


# --- on a Dask cluster ------------------------------------------------------------------------


@pytest.fixture
def submitted_keys(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The key of every task submitted to any Dask client while the test runs."""
    from distributed import Client

    keys: list[str] = []
    submit = Client.submit

    def spy(self: Client, *args: object, **kwargs: object):
        keys.append(str(kwargs["key"]))
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(Client, "submit", spy)
    return keys


def test_sweep_on_a_local_cluster_equals_single_runs(tmp_path: Path, tiny: Path,
                                                     broken: Path) -> None:
    """Two worker processes; a broken workload fails alone; a rerun does no work."""
    out = tmp_path / "sweep"
    tasks = plan_sweep([str(tiny), str(broken)], ["dosa", "random"], [0, 1], CONFIGS,
                       budgets=[0.6, None])
    frame = run_sweep(tasks, out, workers=2, progress=False)
    assert list(frame.columns) == list(COLUMNS) and len(frame) == 16
    written = pd.read_csv(out / SWEEP_CSV)
    assert list(written.folder) == list(frame.folder)
    assert written.edp.equals(frame.edp.astype(float))
    assert list(written.status) == list(frame.status)
    good = frame[frame.workload == "tiny"]
    bad = frame[frame.workload == "broken"]
    assert (good.status == "done").all() and (bad.status == "failed").all()
    assert bad.error.str.contains("Kx|warm start").all()

    # every run equals the same run done on its own (the DOSA chain: warm start included)
    network = load_network(tiny)
    for _, row in good.iterrows():
        budget = None if math.isnan(row.area_budget_mm2) else row.area_budget_mm2
        config = dict(CONFIGS[row.method])
        if budget is not None:
            config["max_area_mm2"] = budget
        if row.method == "dosa" and budget is None:
            tighter = good[(good.method == "dosa") & (good.seed == row.seed)
                           & (good.area_budget_mm2 == 0.6)].folder.item()
            from dosa.search.result import SearchResult
            from dosa.tradeoff import warm_config

            config.update(warm_config(SearchResult.read(out / tighter)))
        alone, _ = search_to_folder(network, row.method, int(row.seed), config,
                                    tmp_path / "alone" / row.folder)
        assert (alone.edp, alone.cycles, alone.samples) == (row.edp, row.cycles, row.samples)
    # a looser budget is never worse for DOSA (warm-started chain)
    for seed in (0, 1):
        dosa = good[(good.method == "dosa") & (good.seed == seed)]
        assert dosa.edp.iloc[1] <= dosa.edp.iloc[0]

    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    again = run_sweep(tasks, out, workers=2, progress=False)
    assert (again[again.workload == "tiny"].status == "reused").all()
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == stamps
    assert again.edp.equals(frame.edp)


def test_sweep_task_keys_differ_between_sweeps(tmp_path: Path, tiny: Path,
                                              submitted_keys: list[str]) -> None:
    """Two sweeps of the same plan on one shared cluster submit different task keys, so the
    second never picks up the first's futures (it writes into its own folder)."""
    from distributed import LocalCluster

    keys = submitted_keys
    tasks = plan_sweep([str(tiny)], ["random"], [0], CONFIGS)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        for name in ("a", "b"):
            frame = run_sweep(tasks, tmp_path / name, scheduler=cluster.scheduler_address,
                              progress=False)
            assert (frame.status == "done").all()
    assert len(keys) == 2 and keys[0] != keys[1]
    assert all(k.startswith("dosa-sweep-") and k.endswith(tasks[0].folder) for k in keys)


def test_unreachable_scheduler_is_refused(tmp_path: Path, tiny: Path) -> None:
    tasks = plan_sweep([str(tiny)], ["random"], [0], CONFIGS)
    with pytest.raises(ValueError, match="--scheduler tcp://127.0.0.1:9: no Dask scheduler"):
        run_sweep(tasks, tmp_path / "o", scheduler="tcp://127.0.0.1:9", connect_timeout_s=0.5)
    assert not (tmp_path / "o").exists()


# --- parallel_map: the notebooks' sweeps on the same Dask cluster ----------------------------


def test_parallel_map_runs_on_dask_and_raises_the_first_failure(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With more than one worker the items are tasks of a Dask LocalCluster (the engine of
    `dosa sweep`): results in item order, and a failing task's own exception is raised."""
    from dosa import sweep

    monkeypatch.delenv("DOSA_SCHEDULER", raising=False)
    clusters = []
    real = sweep.dask_client

    def spy(*args: object, **kwargs: object):
        clusters.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "dask_client", spy)
    assert parallel_map(math.sqrt, [4.0, 9.0, 16.0], workers=2) == [2.0, 3.0, 4.0]
    assert clusters == [((2, None), {"tasks": 3, "source": "DOSA_SCHEDULER"})]
    with pytest.raises(ValueError, match="math domain error"):
        parallel_map(math.sqrt, [4.0, -1.0, 9.0], workers=2)


def test_parallel_map_uses_the_cluster_named_by_dosa_scheduler(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        monkeypatch.setenv("DOSA_SCHEDULER", cluster.scheduler_address)
        # even with one local worker the items go to the named cluster
        assert parallel_map(math.sqrt, [4.0, 9.0], workers=1) == [2.0, 3.0]
        assert "map" in cluster.scheduler.task_prefixes  # the tasks ran there
    monkeypatch.setenv("DOSA_SCHEDULER", "tcp://127.0.0.1:9")
    with pytest.raises(ValueError, match="DOSA_SCHEDULER tcp://127.0.0.1:9: no Dask scheduler"):
        parallel_map(math.sqrt, [4.0, 9.0], workers=1)


def test_parallel_map_task_keys_differ_between_calls(monkeypatch: pytest.MonkeyPatch,
                                                     submitted_keys: list[str]) -> None:
    """Two maps with the same ``desc`` on one shared cluster (two notebooks on the same
    DOSA_SCHEDULER) submit different task keys, so neither can take the other's results."""
    from distributed import LocalCluster

    keys = submitted_keys
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        monkeypatch.setenv("DOSA_SCHEDULER", cluster.scheduler_address)
        assert parallel_map(math.sqrt, [4.0, 9.0], desc="fig7") == [2.0, 3.0]
        assert parallel_map(math.sqrt, [16.0, 25.0], desc="fig7") == [4.0, 5.0]
        assert "fig7" in cluster.scheduler.task_prefixes  # the token leaves the prefix alone
    assert len(keys) == 4 and len(set(keys)) == 4
    first, second = ({k.rsplit("-", 1)[0] for k in pair} for pair in (keys[:2], keys[2:]))
    assert len(first) == len(second) == 1 and first != second
    assert all(k.startswith("fig7-") for k in keys)


# --- CLI --------------------------------------------------------------------------------------


def _error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(("given", "message"), [
    (["--methods", "dosa,nope"], "unknown method 'nope'"),
    (["--seeds", "0,,1"], "without empty items"),
    (["--area-budgets", "1,-2"], "--area-budgets"),
    (["--num-hw", "3"], "--num-hw applies to --methods random, bo, random-paper, bo-paper "
                        "(not dosa)"),
    (["--methods", "dosa,bo-paper", "--objective", "latency"],
     "--objective latency applies to --methods dosa, random, bo, grid (not bo-paper"),
    (["--area-budgets", "1", "--max-area-mm2", "2"], "exclusive"),
    (["--workers", "2", "--scheduler", "tcp://x:1"], "--workers sizes the local cluster"),
    (["--starts", "2", "--screen", "3"], "--screen 3 exceeds"),
    (["--methods", "dosa,random", "--refine-samples", "100", "--pe-dim", "16"],
     "--refine-samples 100 (the exact refinement optimises network EDP on the analytical model "
     "with a free pe_dim) needs no --pe-dim; give --refine-samples 0 or leave it out"),
    (["--workloads", "bert,missing.yaml"], "--workloads missing.yaml: neither a built-in"),
    (["--warm-start", "x"], "unrecognized arguments"),
])
def test_cli_refuses_bad_options_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             given: list[str], message: str) -> None:
    argv = ["sweep", "--out", str(tmp_path / "o")]
    if "--workloads" not in given:
        argv += ["--workloads", "bert"]
    try:
        code = main(argv + given)
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    assert code == 2
    assert message in _error(capsys)
    assert not (tmp_path / "o").exists()


def test_cli_reports_failed_runs_and_exits_1(tmp_path: Path, broken: Path, tiny: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    code = main(["sweep", "--workloads", f"{tiny},{broken}", "--methods", "random",
                 "--num-hw", "1", "--mappings-per-layer", "4", "--out", str(out),
                 "--workers", "1", "--quiet"])
    assert code == 1
    assert "2 runs (1 done, 0 reused, 1 failed)" in capsys.readouterr().out
    rows = pd.read_csv(out / SWEEP_CSV)
    assert rows.set_index("workload").status.to_dict() == {"tiny": "done", "broken": "failed"}
    assert (out / "tiny" / "random" / "seed0" / "result.json").is_file()


def test_local_workers_do_not_trim_memory_eagerly() -> None:
    """Dask's default MALLOC_TRIM_THRESHOLD_=65536 made searches 2.7x slower; the local
    cluster's workers run without it (and single-threaded BLAS, as Dask sets)."""
    import os

    from dosa.sweep import dask_client

    with dask_client(1, tasks=1) as client:
        env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                  os.environ.get("OMP_NUM_THREADS")))
    assert list(env.values()) == [(os.environ.get("MALLOC_TRIM_THRESHOLD_"), "1")]
