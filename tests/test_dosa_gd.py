"""DOSA gradient search: determinism, validity, constraints, CLI outputs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dosa.cli import main as cli_main
from dosa.evaluation import score_network
from dosa.mapping import parse_mapping
from dosa.search import dosa_gd
from dosa.search.dosa_gd import DosaConfig, dosa_search
from dosa.search.result import MAPPING_COLUMNS, SearchResult
from dosa.workload import Layer, Network, load_network

SMALL = {"starts": 2, "steps": 24, "round_every": 8}


@pytest.fixture(scope="module")
def bert() -> Network:
    return load_network("bert")


def test_same_seed_same_numbers_and_different_seeds_differ(bert: Network) -> None:
    a = dosa_search(bert, 0, **SMALL).to_json()
    b = dosa_search(bert, 0, **SMALL).to_json()
    c = dosa_search(bert, 1, **SMALL).to_json()
    for key in ("hardware", "cycles", "energy_uj", "edp", "samples", "trajectory"):
        assert a[key] == b[key], key
    assert (a["hardware"], a["edp"]) != (c["hardware"], c["edp"])


@pytest.mark.parametrize("variant", ["paper", "improved"])
def test_result_is_valid_and_exactly_scored(bert: Network, variant: str) -> None:
    res = dosa_search(bert, 3, variant=variant, **SMALL)
    for layer, m in zip(bert.layers, res.mappings, strict=True):
        parse_mapping(m.to_string()).check(layer, res.hardware)
    score = score_network(bert, res.mappings, res.hardware)
    assert score.edp == pytest.approx(res.edp, rel=1e-12)
    counts = bert.counts_array()
    assert res.edp == pytest.approx(np.dot(counts, res.layer_cycles)
                                    * np.dot(counts, res.layer_energy_uj), rel=1e-12)
    # sample accounting: one per step per start, plus one per start point
    assert res.samples == SMALL["starts"] * (SMALL["steps"] + 1)
    assert res.trajectory[-1][0] == res.samples
    edps = [e for _, e in res.trajectory]
    assert edps == sorted(edps, reverse=True)


def test_search_improves_on_its_start_points() -> None:
    net = load_network("resnet50")
    res = dosa_search(net, 0, starts=1, steps=60, round_every=20, variant="improved")
    history = res.extra["starts"][0]["history"]
    assert min(e for _, e in history[1:]) < history[0][1]


def test_hardware_bounds_are_honoured(bert: Network) -> None:
    res = dosa_search(bert, 0, max_pe_dim=8, max_sp_kb=64, max_acc_kb=16, **SMALL)
    assert res.hardware.pe_dim <= 8
    assert res.hardware.sp_kb <= 64 and res.hardware.acc_kb <= 16
    res = dosa_search(bert, 0, max_area_mm2=0.5, **SMALL)
    assert res.area_mm2 <= 0.5


def test_fixed_pe_dim(bert: Network) -> None:
    res = dosa_search(bert, 0, pe_dim=16, **SMALL)
    assert res.hardware.pe_dim == 16


@pytest.mark.parametrize("bad", [{"variant": "fast"}, {"starts": 0}, {"lr": -1.0},
                                 {"start": "cosa"}, {"max_sp_kb": float("nan")}])
def test_bad_options_name_the_field(bad: dict) -> None:
    field = next(iter(bad))
    with pytest.raises(ValueError, match=field):
        DosaConfig(**bad)


@pytest.mark.parametrize("layers", [
    [Layer("only", C=64, K=32, P=8, Q=8, R=3, S=3)],
    [Layer("fc1", C=256, K=512, P=128), Layer("fc2", C=512, K=10, count=3)],
    [Layer("s2", C=16, K=32, P=14, Q=14, R=3, S=3, Wstride=2, Hstride=2),
     Layer("pw", C=32, K=64, P=14, Q=14)],
])
def test_small_and_unusual_networks_search(layers: list[Layer]) -> None:
    net = Network("custom", tuple(layers))
    res = dosa_search(net, 0, starts=1, steps=10, round_every=5)
    for layer, m in zip(net.layers, res.mappings, strict=True):
        m.check(layer, res.hardware)
    assert np.isfinite(res.edp) and res.edp > 0


def test_cli_search_writes_result_and_resumes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["search", "--workload", "bert", "--method", "dosa", "--seed", "0", "--out",
            str(out), "--starts", "1", "--steps", "6", "--round-every", "3", "--quiet"]
    assert cli_main(args) == 0
    data = json.loads((out / "result.json").read_text())
    for key in ("method", "seed", "workload", "hardware", "cycles", "energy_uj", "edp",
                "area_mm2", "samples", "wall_s", "trajectory"):
        assert key in data
    assert set(data["hardware"]) == {"pe_dim", "sp_kb", "acc_kb"}
    frame = pd.read_csv(out / "mappings.csv")
    assert list(frame.columns) == MAPPING_COLUMNS
    assert data["edp"] == pytest.approx((frame["count"] * frame["cycles"]).sum()
                                        * (frame["count"] * frame["energy_uj"]).sum(), rel=1e-9)
    before = (out / "result.json").stat().st_mtime_ns
    assert cli_main(args) == 0  # complete result with the same config: loaded, not recomputed
    assert (out / "result.json").stat().st_mtime_ns == before
    assert SearchResult.read(out).edp == data["edp"]


def test_cli_rejects_malformed_workload_before_searching(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("layers:\n  - {name: a, C: 0, K: 4}\n")
    out = tmp_path / "run"
    code = cli_main(["search", "--workload", str(bad), "--out", str(out), "--quiet"])
    assert code == 2
    assert not out.exists()


@pytest.mark.parametrize("start", ["heuristic", "random", "milp"])
def test_every_start_generator_searches(bert: Network, start: str) -> None:
    res = dosa_search(bert, 0, start=start, start_k=20, starts=1, steps=10, round_every=5)
    for layer, m in zip(bert.layers, res.mappings, strict=True):
        m.check(layer, res.hardware)
    # the random start is charged its k candidate designs, the others one design
    assert res.samples == 10 + (20 if start == "random" else 1)


def test_predictor_run_reports_one_evaluator(bert: Network, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Trajectory and edp come from the same evaluator; the file is named by content hash;
    built-in predictor names resolve from the checkout, not from the current folder."""
    import torch

    from dosa.learned import FEATURE_NAMES, LatencyPredictor, file_sha256, save_predictor

    torch.manual_seed(0)
    model = LatencyPredictor("both", keep=range(len(FEATURE_NAMES)), hidden=(4,)).freeze()
    path = save_predictor(model, tmp_path / "art" / "models" / "both.pt")
    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / "art"))
    monkeypatch.chdir(tmp_path)
    res = dosa_search("bert", 0, predictor="both", **SMALL)
    assert res.evaluator["latency"] == "learned predictor 'both'"
    assert res.evaluator["predictor_sha256"] == file_sha256(path)
    assert res.trajectory[-1][1] == pytest.approx(res.edp, rel=1e-12)
    counts = bert.counts_array()
    assert res.edp == pytest.approx(np.dot(counts, res.layer_cycles)
                                    * np.dot(counts, res.layer_energy_uj), rel=1e-12)
    assert res.extra["analytical"]["edp"] != res.edp
    samples = [s for s, _ in res.trajectory]
    assert samples == sorted(set(samples))


def test_string_network_and_bad_options() -> None:
    assert dosa_search("bert", 0, starts=1, steps=4, round_every=2).workload == "bert"
    with pytest.raises(ValueError, match="seed must be an integer"):
        dosa_search("bert", -1, starts=1, steps=4)
    with pytest.raises(ValueError, match="unknown DOSA option"):
        dosa_search("bert", 0, num_hw=3)


# -- objectives, warm start, hardware screen ---------------------------------------------------
def test_latency_objective_gives_no_more_cycles_than_edp(bert: Network) -> None:
    opts = dict(SMALL, variant="improved", screen=1, max_area_mm2=2.0)
    edp = dosa_search(bert, 0, **opts)
    lat = dosa_search(bert, 0, objective="latency", **opts)
    energy = dosa_search(bert, 0, objective="energy", **opts)
    assert (edp.objective, lat.objective, energy.objective) == ("edp", "latency", "energy")
    assert lat.cycles <= edp.cycles
    assert energy.energy_uj <= edp.energy_uj
    assert lat.objective_value == lat.cycles
    assert lat.trajectory[-1][1] == pytest.approx(lat.cycles, rel=1e-12)
    assert lat.to_json()["objective"] == "latency" and lat.config["objective"] == "latency"
    assert max(r.area_mm2 for r in (edp, lat, energy)) <= 2.0


def test_invalid_objective_and_screen_are_refused() -> None:
    with pytest.raises(ValueError, match="objective must be one of edp, latency, energy"):
        DosaConfig(objective="power")
    with pytest.raises(ValueError, match=r"screen must be an integer in \[0, starts=2\]"):
        DosaConfig(starts=2, screen=3)
    with pytest.raises(ValueError, match="warm_start must be a list of mapping strings"):
        DosaConfig(warm_start="L3[WIO] K1")


def test_screen_is_never_worse_than_the_grid_in_the_same_bounds(bert: Network) -> None:
    from dosa.search.grid import grid_search

    for budget in (0.5, 2.0):
        grid = grid_search(bert, 0, max_area_mm2=budget)
        res = dosa_search(bert, 0, starts=2, steps=10, round_every=5, variant="improved",
                          screen=1, max_area_mm2=budget)
        assert res.edp <= grid.edp * (1 + 1e-12)
        assert res.area_mm2 <= budget
        # the screen's grid points are counted once, as the grid baseline counts them
        assert res.samples == grid.samples + 1 + 2 * 10
        assert [s["kind"] for s in res.extra["starts"]] == ["screen", "random"]


def test_warm_start_from_a_tighter_budget_is_never_worse(bert: Network) -> None:
    opts = dict(SMALL, variant="improved")
    tight = dosa_search(bert, 0, max_area_mm2=0.6, **opts)
    loose = dosa_search(bert, 0, max_area_mm2=1.5,
                        warm_start=[m.to_string() for m in tight.mappings], **opts)
    assert loose.edp <= tight.edp
    assert loose.extra["starts"][0]["kind"] == "warm"
    assert loose.extra["starts"][0]["start_hw"] == tight.hardware.to_dict()
    assert list(loose.config["warm_start"]) == [m.to_string() for m in tight.mappings]


def test_warm_start_of_another_network_is_refused(bert: Network) -> None:
    other = dosa_search(load_network("resnet50"), 0, starts=1, steps=2, round_every=2)
    strings = [m.to_string() for m in other.mappings]
    with pytest.raises(ValueError, match="warm_start has"):
        dosa_search(bert, 0, warm_start=strings, **SMALL)
    with pytest.raises(ValueError):
        dosa_search(bert, 0, warm_start=strings[:len(bert.layers)], **SMALL)


def test_refinement_is_never_worse_and_counted(bert: Network) -> None:
    opts = dict(SMALL, variant="improved", max_area_mm2=1.0)
    plain = dosa_search(bert, 0, **opts)
    refined = dosa_search(bert, 0, refine_samples=150, **opts)
    again = dosa_search(bert, 0, refine_samples=150, **opts)
    info = refined.extra["refinement"]
    # the gradient part is the same run; the refinement starts from its answer
    assert info["edp_before"] == pytest.approx(plain.edp, rel=1e-12)
    assert refined.edp == pytest.approx(info["edp_after"], rel=1e-12)
    assert refined.edp < plain.edp  # bert's small-step design leaves room on fixed hardware
    assert refined.area_mm2 <= 1.0
    assert refined.samples == plain.samples + info["samples"]
    assert refined.model_evals == plain.model_evals + info["model_evals"]
    assert (refined.edp, refined.hardware) == (again.edp, again.hardware)
    assert plain.extra["refinement"] is None
    # the trajectory ends at the refined design, counted at the run's last sample
    assert refined.trajectory[-1] == [refined.samples, pytest.approx(refined.edp, rel=1e-12)]


def test_refinement_stays_within_its_sample_budget(bert: Network) -> None:
    first_only = dosa_search(bert, 0, refine_samples=1, **SMALL).extra["refinement"]
    for budget in (1500, 4000):
        got = dosa_search(bert, 0, refine_samples=budget, **SMALL).extra["refinement"]
        # the pattern search stops before a neighbour whose cost would pass the budget
        assert first_only["samples"] < got["samples"] <= budget
    assert first_only["samples"] < 1500


def test_warm_hardware_keeps_the_previous_design_as_a_candidate(bert: Network) -> None:
    refined = dosa_search(bert, 0, refine_samples=1500, max_area_mm2=1.0, **SMALL)
    warm = [m.to_string() for m in refined.mappings]
    # a search that can barely move: the warm design on its own hardware must still win
    tiny = dict(starts=1, steps=1, round_every=1, max_area_mm2=2.0, warm_start=warm)
    with_hw = dosa_search(bert, 0, warm_hardware=refined.hardware.to_dict(), **tiny)
    assert with_hw.edp <= refined.edp
    assert with_hw.samples == dosa_search(bert, 0, **tiny).samples + 1
    # outside the bounds it is no candidate (the answer stays inside them)
    tight = dosa_search(bert, 0, warm_hardware=refined.hardware.to_dict(),
                        **{**tiny, "starts": 2, "screen": 1,
                           "max_area_mm2": refined.area_mm2 * 0.9})
    assert tight.area_mm2 <= refined.area_mm2 * 0.9
    with pytest.raises(ValueError, match="does not hold the warm_start mappings"):
        dosa_search(bert, 0, warm_hardware={"pe_dim": 2, "sp_kb": 1.0, "acc_kb": 1.0}, **tiny)
    with pytest.raises(ValueError, match="warm_hardware needs warm_start"):
        DosaConfig(warm_hardware=refined.hardware.to_dict())
    with pytest.raises(ValueError, match="warm_hardware: missing hardware field"):
        DosaConfig(warm_start=warm, warm_hardware={"pe_dim": 16})


@pytest.mark.parametrize("bad, message", [
    ({"refine_samples": -1}, "refine_samples must be an integer >= 0"),
    ({"refine_samples": True}, "refine_samples must be an integer >= 0"),
    ({"refine_samples": 10, "objective": "latency"}, "needs objective in"),
    ({"refine_samples": 10, "predictor": "dnn"}, "needs predictor in"),
    ({"refine_samples": 10, "pe_dim": 16}, "needs pe_dim in"),
])
def test_refinement_options_are_checked(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DosaConfig(**bad)


def test_recommended_configuration_per_objective() -> None:
    from dosa.search.dosa_gd import RECOMMENDED, SCREENED, recommended

    assert recommended() == RECOMMENDED and RECOMMENDED["refine_samples"] > 0
    for options in ({"objective": "latency"}, {"predictor": "both"}, {"pe_dim": 16}):
        assert recommended(**options) == SCREENED and "refine_samples" not in SCREENED
    # both presets stay at the paper's ~10,500 samples (7 starts, 1,008 screened points)
    paper = 7 * 1490 + 7
    for preset in (RECOMMENDED, SCREENED):
        total = 7 * preset["steps"] + 1008 + 7 + preset.get("refine_samples", 0)
        assert total <= paper


@pytest.mark.parametrize("bad, message", [
    ({"compile": "yes"}, "compile must be true or false"),
    ({"compile": True, "predictor": "dnn"}, "compile=True needs the analytical model"),
])
def test_compile_option_is_checked(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DosaConfig(**bad)


def test_compile_failure_is_one_clear_error(bert: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where inductor cannot build (e.g. no C++ compiler) the run stops at its first step with
    a ValueError naming the option, not a backend traceback."""
    from torch._dynamo import config as dynamo_config

    seen = []

    def broken(*args: object) -> None:
        seen.append(dynamo_config.recompile_limit)
        raise RuntimeError("C++ compile error\nlong backend log")

    limit = dynamo_config.recompile_limit
    monkeypatch.setattr(dosa_gd, "_compiled_step_loss", lambda: broken)
    with pytest.raises(ValueError, match=r"^compile=True: torch.compile failed here "
                       r"\(RuntimeError: C\+\+ compile error\); run without compile$"):
        dosa_search(bert, 0, compile=True, **SMALL)
    # dynamo's graph limits are raised while the compiled search runs, and only then
    assert seen == [4096] and dynamo_config.recompile_limit == limit < 4096


def test_an_eager_search_never_imports_dynamo() -> None:
    """Only ``--compile`` needs torch._dynamo; importing it cost every command 1.0 s."""
    code = ("import sys; from dosa.search.dosa_gd import dosa_search; "
            "dosa_search('bert', 0, starts=1, steps=3, round_every=3, variant='paper'); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile (inductor) needs a C++ compiler")
def test_compiled_step_finds_the_eager_design(bert: Network) -> None:
    """The compiled step loss is the same function: on this run it reaches the same design
    as eager (last-bit differences could, in principle, flip a rounding elsewhere)."""
    eager = dosa_search(bert, 0, **SMALL)
    compiled = dosa_search(bert, 0, compile=True, **SMALL)
    assert compiled.config["compile"] is True and eager.config["compile"] is False
    assert compiled.edp == pytest.approx(eager.edp, rel=1e-9)
    assert [m.to_string() for m in compiled.mappings] == [m.to_string() for m in eager.mappings]
