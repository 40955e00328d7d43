"""``dosa evaluate --csv IN --out OUT`` through :func:`dosa.cli.main`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dosa import data
from dosa.cli import main
from dosa.hardware import DOSA_BASE, Hardware
from dosa.search.dosa_gd import RECOMMENDED, SCREENED
from dosa.workload import DIMS, Layer

EXAMPLE = "L3[WIO] Q7 K8 - L2[WI] N1 K4X - L1[O] K2 C4 P56 Q8 C16X - L0[W] N1"
CONV = "L3[WIO] C4 P4 - L2[WI] N1 K16X - L1[O] K4 R3 S3 P7 Q28 C16X - L0[W] N1"
MODEL_COLUMNS = ["model.cycle", "model.energy", "model.area"]


def _row(layer: Layer, mapping: str, hw: Hardware) -> dict[str, object]:
    out: dict[str, object] = {f"prob.{d}": getattr(layer, d) for d in DIMS}
    out |= {"prob.Wstride": layer.Wstride, "prob.Hstride": layer.Hstride,
            "mapping.mapping": mapping, "target.cycle": 1.0}
    return out | hw.to_arch_columns()


@pytest.fixture
def synthetic_csv(tmp_path: Path) -> Path:
    rows = [_row(Layer("ex", P=56, Q=56, C=64, K=64), EXAMPLE, Hardware(16, 28.5, 56)),
            _row(Layer("conv", R=3, S=3, P=28, Q=28, C=64, K=64), CONV, Hardware(16, 128, 64))]
    path = tmp_path / "in.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def real_csv(tmp_path: Path) -> Path:
    """The first 50 rows of the published Timeloop dataset."""
    if not data.available("timeloop"):
        pytest.skip("published Timeloop dataset not available locally; set DOSA_DATA_DIR to a "
                    "folder holding the published DOSA data (e.g. ../shared/dosa-data)")
    path = tmp_path / "real.csv"
    data.load_timeloop_dataset().head(50).to_csv(path, index=False)
    return path


def test_evaluate_synthetic_csv(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.csv"
    assert main(["evaluate", "--csv", str(synthetic_csv), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    original = pd.read_csv(synthetic_csv)
    assert list(frame.columns) == list(original.columns) + MODEL_COLUMNS
    assert len(frame) == 2
    pd.testing.assert_frame_equal(frame[original.columns], original)
    assert frame.loc[0, "model.cycle"] == 200_704
    assert round(frame.loc[0, "model.energy"], 2) == 64.36  # spec §4.9, pat energies
    assert frame.loc[1, "model.area"] == pytest.approx(Hardware(16, 128, 64).area_mm2(), rel=1e-9)
    assert (frame[MODEL_COLUMNS] > 0).all().all()


def test_evaluate_replaces_stale_model_columns(synthetic_csv: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.csv"
    second = tmp_path / "second.csv"
    assert main(["evaluate", "--csv", str(synthetic_csv), "--out", str(first)]) == 0
    stale = pd.read_csv(first)
    stale["model.cycle"] = -1.0
    stale.to_csv(first, index=False)
    assert main(["evaluate", "--csv", str(first), "--out", str(second)]) == 0
    frame = pd.read_csv(second)
    assert list(frame.columns).count("model.cycle") == 1
    assert frame.loc[0, "model.cycle"] == 200_704


@pytest.mark.data
def test_evaluate_real_rows(real_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(real_csv), "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert len(frame) == 50
    lat = np.abs(frame["model.cycle"] / frame["target.cycle"] - 1)
    en = np.abs(frame["model.energy"] / frame["target.energy"] - 1)
    area = np.abs(frame["model.area"] / frame["target.area"] - 1)
    assert lat.mean() < 1e-3 and en.mean() < 5e-3 and area.max() < 0.05


def test_missing_column_exit_code_and_no_output(synthetic_csv: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.csv"
    pd.read_csv(synthetic_csv).drop(columns=["prob.K"]).to_csv(broken, index=False)
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "dosa evaluate: error:" in err
    assert "prob.K" in err and str(broken) in err
    assert not out.exists()
    assert set(tmp_path.iterdir()) == {broken, synthetic_csv}  # no temporary files either


@pytest.mark.parametrize("breakage", ["zero_c", "bad_factors", "bad_string", "negative_sp"])
def test_failures_never_write_out(synthetic_csv: Path, tmp_path: Path, breakage: str,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    frame = pd.read_csv(synthetic_csv)
    if breakage == "zero_c":
        frame.loc[1, "prob.C"] = 0
        expected = "prob.C"
    elif breakage == "bad_factors":
        frame.loc[0, "prob.P"] = 28
        expected = "do not multiply"
    elif breakage == "bad_string":
        frame.loc[0, "mapping.mapping"] = "L3[WIO] Q7"
        expected = "1 levels"
    else:
        frame.loc[1, "arch.mem2_depth"] = -8
        expected = "row 1 column arch.mem2_depth must be a positive number"
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(src), "--out", str(out)]) == 2
    assert expected in capsys.readouterr().err
    assert not out.exists()


def test_existing_out_is_left_untouched_on_failure(synthetic_csv: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(synthetic_csv)
    frame.loc[0, "prob.C"] = 0
    src = tmp_path / "bad.csv"
    frame.to_csv(src, index=False)
    out = tmp_path / "out.csv"
    out.write_text("previous result\n")
    assert main(["evaluate", "--csv", str(src), "--out", str(out)]) == 2
    assert out.read_text() == "previous result\n"


def test_missing_input_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(tmp_path / "nope.csv"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_requires_both_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--csv", "x.csv"])
    assert info.value.code == 2
    assert "--out" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------
# Physically impossible rows, --allow-invalid, and bad --out / --csv paths
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def impossible_csv(tmp_path: Path) -> Path:
    """Row 1 needs a 784-word accumulator tile; DOSA_BASE has 512 words per bank."""
    rows = [_row(Layer("ex", P=56, Q=56, C=64, K=64), EXAMPLE, Hardware(16, 28.5, 56)),
            _row(Layer("conv", R=3, S=3, P=28, Q=28, C=64, K=64), CONV, DOSA_BASE)]
    path = tmp_path / "impossible.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_impossible_row_is_refused(impossible_csv: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(impossible_csv), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"dosa evaluate: error: {impossible_csv}: row 1 column mapping.mapping: "
                   "accumulator tile of 784 words overflows one accumulator bank of 512 words "
                   "(allowed: <= 512 words per bank)")
    assert not out.exists()


def test_allow_invalid_scores_and_marks(impossible_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(impossible_csv), "--out", str(out),
                 "--allow-invalid"]) == 0
    frame = pd.read_csv(out, keep_default_na=False)
    assert list(frame.columns[-5:]) == MODEL_COLUMNS + ["model.valid", "model.invalid_reason"]
    assert list(frame["model.valid"]) == [True, False]
    assert frame.loc[0, "model.invalid_reason"] == ""
    assert "accumulator tile of 784 words" in frame.loc[1, "model.invalid_reason"]
    assert (frame[MODEL_COLUMNS].astype(float) > 0).all().all()
    # scoring the marked file again in the normal mode drops the stale validity columns
    again = tmp_path / "again.csv"
    frame.iloc[:1].to_csv(tmp_path / "valid.csv", index=False)
    assert main(["evaluate", "--csv", str(tmp_path / "valid.csv"), "--out", str(again)]) == 0
    assert "model.valid" not in pd.read_csv(again).columns


def _out_error(argv_out: str, csv: Path, capsys: pytest.CaptureFixture[str]) -> str:
    import time

    start = time.perf_counter()
    assert main(["evaluate", "--csv", str(csv), "--out", argv_out]) == 2
    assert time.perf_counter() - start < 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--out" in err
    return err


@pytest.mark.parametrize("kind", ["directory", "under_file", "empty", "trailing_slash"])
def test_bad_out_is_refused_before_reading(kind: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    missing_csv = tmp_path / "never-read.csv"  # --out is refused before --csv is looked at
    a_file = tmp_path / "a_file"
    a_file.write_text("x\n")
    out = {"directory": str(tmp_path), "under_file": str(a_file / "out.csv"), "empty": "",
           "trailing_slash": str(tmp_path / "new") + "/"}[kind]
    _out_error(out, missing_csv, capsys)
    assert a_file.read_text() == "x\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_out_in_unwritable_folder_is_refused(synthetic_csv: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() == 0:  # root writes through file modes; /proc refuses new files even so
        if not Path("/proc/self").is_dir():
            pytest.skip("running as root without /proc: no folder is unwritable")
        out = "/proc/dosa-test/out.csv"
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = str(locked / "out.csv")
    err = _out_error(out, synthetic_csv, capsys)
    assert "not writable" in err


@pytest.mark.parametrize("kind", ["missing", "folder", "not_utf8", "empty", "binary", "ragged"])
def test_bad_csv_is_one_line_naming_csv(kind: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    src = tmp_path / "in.csv"
    if kind == "folder":
        src.mkdir()
    elif kind == "not_utf8":
        src.write_bytes("prob.C,mapping.mapping\n1,caf\u00e9\n".encode("latin-1"))
    elif kind == "empty":
        src.write_bytes(b"")
    elif kind == "binary":
        src.write_bytes(gzip.compress(b"prob.C\n1\n"))
    elif kind == "ragged":
        src.write_text('a,b\n1,2\n3,"4\n')
    out = tmp_path / "out.csv"
    assert main(["evaluate", "--csv", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("dosa evaluate: error: --csv ")
    assert not out.exists()


def test_unreadable_csv(synthetic_csv: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their mode")
    synthetic_csv.chmod(0)
    assert main(["evaluate", "--csv", str(synthetic_csv), "--out", str(tmp_path / "o.csv")]) == 2
    assert "--csv" in capsys.readouterr().err


# --- dosa search / fetch-data / claims: options, --out, run cache, one-line errors -----------

_SUMMARY_KEYS = ("method", "seed", "workload", "hardware", "cycles", "energy_uj", "edp",
                 "area_mm2", "samples", "wall_s")


class _FakeSearchResult:
    """Stands in for a SearchResult where only the CLI's handling is under test."""

    def to_json(self) -> dict[str, object]:
        return dict.fromkeys(_SUMMARY_KEYS, 1)


def _record_search(monkeypatch: pytest.MonkeyPatch, error: BaseException | None = None
                   ) -> list[dict[str, object]]:
    """Replace the search by a recorder (or by ``error``); returns the recorded calls."""
    calls: list[dict[str, object]] = []

    def fake(network: object, method: str, seed: int, config: dict[str, object], out: Path,
             **kwargs: object) -> tuple[_FakeSearchResult, bool]:
        calls.append({"method": method, "seed": seed, "config": dict(config), "out": out})
        if error is not None:
            raise error
        return _FakeSearchResult(), False

    monkeypatch.setattr("dosa.experiments.search_to_folder", fake)
    return calls


def _one_error_line(err: str, prefix: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(prefix), err
    return err


@pytest.mark.parametrize(("method", "given", "message"), [
    ("dosa", ["--num-hw", "3"], "--num-hw applies to --method random, bo, random-paper, "
                                "bo-paper (not dosa)"),
    ("dosa", ["--mappings-per-layer", "5"], "--mappings-per-layer applies to --method random, "
                                            "random-paper (not dosa)"),
    ("bo", ["--mappings-per-layer", "5"], "--mappings-per-layer applies to --method random, "
                                          "random-paper (not bo)"),
    # the faithful baselines have the original's fixed design space and objective
    ("random-paper", ["--max-pe-dim", "32"], "--max-pe-dim applies to --method dosa, random, "
                                             "bo, grid, best-known (not random-paper)"),
    ("bo-paper", ["--pe-dim", "16"], "--pe-dim applies to --method dosa, random, bo, grid "
                                     "(not bo-paper)"),
    ("random-paper", ["--max-area-mm2", "3"], "--max-area-mm2 applies to --method dosa, "
                                              "random, bo, grid, best-known (not random-paper)"),
    ("random-paper", ["--objective", "latency"], "--objective latency applies to --method "
     "dosa, random, bo, grid (not random-paper, which minimises EDP only)"),
    ("bo-paper", ["--objective", "energy"], "--objective energy applies to --method dosa, "
     "random, bo, grid (not bo-paper, which minimises EDP only)"),
    ("best-known", ["--objective", "latency"], "--objective latency applies to --method dosa, "
     "random, bo, grid (not best-known, which minimises EDP only)"),
    ("random", ["--screen", "2"], "--screen applies to --method dosa (not random)"),
    ("grid", ["--warm-start", "runs/x"], "--warm-start applies to --method dosa (not grid)"),
    ("grid", ["--num-hw", "3"], "--num-hw applies to --method random, bo, random-paper, "
                                "bo-paper (not grid)"),
    ("bo", ["--argsort-bug", "off"], "--argsort-bug applies to --method bo-paper (not bo)"),
    ("random", ["--register-p", "on"], "--register-p applies to --method random-paper "
                                       "(not random)"),
    ("bo", ["--predictor", "both"], "--predictor applies to --method dosa (not bo)"),
    ("bo", ["--starts", "2"], "--starts applies to --method dosa (not bo)"),
    ("bo", ["--variant", "improved"], "--variant applies to --method dosa (not bo)"),
    ("random", ["--lr", "0.1"], "--lr applies to --method dosa (not random)"),
    ("random", ["--round-every", "3"], "--round-every applies to --method dosa (not random)"),
])
def test_search_refuses_option_of_another_method(
        method: str, given: list[str], message: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_search(monkeypatch)
    argv = ["search", "--workload", "bert", "--method", method, "--out", str(tmp_path / "o"),
            *given]
    assert main(argv) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert message in err
    assert calls == [] and not (tmp_path / "o").exists()


@pytest.mark.parametrize("method", ["dosa", "random", "bo", "grid"])
def test_search_passes_hardware_bounds_to_every_method(
        method: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_search(monkeypatch)
    bounds = ["--max-area-mm2", "2.5", "--max-pe-dim", "32", "--max-sp-kb", "64",
              "--max-acc-kb", "16"]
    assert main(["search", "--workload", "bert", "--method", method, "--seed", "3",
                 "--out", str(tmp_path / "o"), *bounds]) == 0
    preset = RECOMMENDED if method == "dosa" else {}
    assert calls[0]["config"] == {**preset, "max_area_mm2": 2.5, "max_pe_dim": 32,
                                  "max_sp_kb": 64.0, "max_acc_kb": 16.0}
    assert calls[0]["method"] == method and calls[0]["seed"] == 3


def test_dosa_search_defaults_to_the_recommended_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_search(monkeypatch)
    out = str(tmp_path / "o")
    assert main(["search", "--workload", "bert", "--out", out]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--variant", "recommended",
                 "--steps", "9", "--starts", "2"]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--variant", "paper"]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--screen", "0"]) == 0
    assert calls[0]["config"] == RECOMMENDED
    assert calls[1]["config"] == {**RECOMMENDED, "steps": 9, "starts": 2, "screen": 2}
    assert calls[2]["config"] == {"variant": "paper"}
    assert calls[3]["config"] == {**RECOMMENDED, "screen": 0}


def test_search_config_follows_the_option_table(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_search(monkeypatch)
    out = str(tmp_path / "o")
    assert main(["search", "--workload", "bert", "--method", "random", "--out", out,
                 "--num-hw", "2", "--mappings-per-layer", "7", "--pe-dim", "16"]) == 0
    assert main(["search", "--workload", "bert", "--method", "bo", "--out", out,
                 "--num-hw", "4"]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--starts", "1", "--steps", "5",
                 "--round-every", "2", "--lr", "0.5", "--variant", "improved",
                 "--start", "random", "--predictor", "analytical"]) == 0
    assert main(["search", "--workload", "bert", "--method", "random-paper", "--out", out,
                 "--num-hw", "3", "--mappings-per-layer", "9", "--register-p", "on"]) == 0
    assert main(["search", "--workload", "bert", "--method", "bo-paper", "--out", out,
                 "--num-hw", "5", "--proposals", "2", "--mappings-per-hw", "8",
                 "--candidates-per-layer", "30", "--top-k", "3", "--argsort-bug", "off",
                 "--keep-all", "on"]) == 0
    assert main(["search", "--workload", "bert", "--method", "grid", "--out", out]) == 0
    assert main(["search", "--workload", "bert", "--method", "grid", "--out", out,
                 "--objective", "latency", "--pe-dim", "16", "--max-area-mm2", "3"]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--objective", "energy",
                 "--screen", "2"]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--refine-samples", "100"]) == 0
    assert main(["search", "--workload", "bert", "--out", out, "--compile"]) == 0
    # edp is every method's default: left out, so the run key is that of the plain run
    assert main(["search", "--workload", "bert", "--method", "bo", "--out", out,
                 "--objective", "edp"]) == 0
    assert main(["search", "--workload", "bert", "--method", "random-paper", "--out", out,
                 "--objective", "edp"]) == 0
    assert [c["config"] for c in calls] == [
        {"num_hw": 2, "mappings_per_layer": 7, "pe_dim": 16},
        {"num_hw": 4},
        {"starts": 1, "steps": 5, "round_every": 2, "lr": 0.5, "variant": "improved",
         "start": "random", "predictor": "analytical"},
        {"num_hw": 3, "mappings_per_layer": 9, "register_p": True},
        {"num_hw": 5, "mappings_per_hw": 8, "candidates_per_layer": 30, "top_k": 3,
         "proposals": 2, "argsort_bug": False, "keep_all": True},
        {},
        {"objective": "latency", "pe_dim": 16, "max_area_mm2": 3.0},
        {**SCREENED, "objective": "energy", "screen": 2},  # the refinement is EDP-only
        {**RECOMMENDED, "refine_samples": 100},
        {**RECOMMENDED, "compile": True},
        {},
        {},
    ]


def test_search_switch_takes_on_or_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_search(monkeypatch)
    with pytest.raises(SystemExit) as info:  # argparse usage errors exit from parse_args
        main(["search", "--workload", "bert", "--method", "bo-paper", "--out",
              str(tmp_path / "o"), "--keep-all", "yes"])
    assert info.value.code == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert "--keep-all" in err and "must be on or off" in err and calls == []


def test_search_help_names_the_methods_of_each_option() -> None:
    from dosa.cli import SEARCH_OPTIONS, build_parser

    search = build_parser()._subparsers._group_actions[0].choices["search"]  # type: ignore
    helps = {a.dest: a.help for a in search._actions}
    for dest, methods in SEARCH_OPTIONS.items():
        scope = "--method " + ", ".join(methods)
        assert helps[dest].endswith(f"[{scope}]"), (dest, helps[dest])


def test_search_help_states_the_presets_values() -> None:
    """--help types the recommended preset's values (the CLI answers it without importing
    torch, so without dosa_gd): they must be the presets' own."""
    from dosa.cli import build_parser

    search = build_parser()._subparsers._group_actions[0].choices["search"]  # type: ignore
    helps = {a.dest: a.help for a in search._actions}
    rec, scr = RECOMMENDED, SCREENED
    assert (f"--screen {rec['screen']}, --round-every {rec['round_every']}, --steps "
            f"{rec['steps']} and --refine-samples {rec['refine_samples']};" in helps["variant"])
    assert f"--steps {scr['steps']} and no refinement" in helps["variant"]
    assert f"(default {rec['steps']}, or {scr['steps']} for" in helps["steps"]
    assert f"default {rec['refine_samples']} with --variant recommended" \
        in helps["refine_samples"]
    assert f"default {rec['round_every']};" in helps["round_every"]
    assert f"default {rec['screen']}," in helps["screen"]


@pytest.mark.parametrize("kind", ["empty", "file", "under_file"])
def test_search_bad_out_is_refused_at_once(
        kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import time

    calls = _record_search(monkeypatch)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    file = tmp_path / "f.txt"
    file.write_text("keep")
    out = {"empty": "", "file": str(file), "under_file": str(file / "run")}[kind]
    t0 = time.perf_counter()
    assert main(["search", "--workload", "bert", "--method", "random", "--out", out]) == 2
    assert time.perf_counter() - t0 < 1.0
    _one_error_line(capsys.readouterr().err, "dosa search: error: --out ")
    assert calls == [] and list(work.iterdir()) == [] and file.read_text() == "keep"


def test_search_out_in_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    calls = _record_search(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["search", "--workload", "bert", "--out", str(locked / "run")]) == 2
    finally:
        locked.chmod(0o755)
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: --out ")
    assert "not writable" in err and calls == []


def _random_search(workload: str, out: Path, *extra: str) -> int:
    return main(["search", "--workload", workload, "--method", "random", "--num-hw", "2",
                 "--mappings-per-layer", "5", "--quiet", "--out", str(out), *extra])


def test_search_out_of_another_network_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Re-running into an --out of another network used to print that network's result."""
    import json

    out = tmp_path / "run"
    assert _random_search("bert", out) == 0
    stored = (out / "result.json").read_text()
    assert json.loads(stored)["workload"] == "bert"
    capsys.readouterr()
    assert _random_search("bert", out) == 0  # the identical run is reused
    assert json.loads(capsys.readouterr().out)["workload"] == "bert"
    assert _random_search("resnet50", out) == 2
    captured = capsys.readouterr()
    err = _one_error_line(captured.err, "dosa search: error: ")
    assert "--force" in err and captured.out == ""
    assert (out / "result.json").read_text() == stored
    assert _random_search("resnet50", out, "--force") == 0
    assert json.loads(capsys.readouterr().out)["workload"] == "resnet50"


def test_search_corrupt_result_names_force(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "result.json").write_text("{not json")
    assert _random_search("bert", out) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert "--force" in err
    assert (out / "result.json").read_text() == "{not json"


def test_search_diverging_lr_is_one_line(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["search", "--workload", "bert", "--variant", "improved", "--lr", "100",
            "--starts", "1", "--steps", "5", "--quiet", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert "--lr 100 made the search diverge (non-finite loss)" in err
    assert "try a smaller --lr (default: " in err
    assert not (tmp_path / "o" / "result.json").exists()


@pytest.mark.parametrize("seed", ["-1", "99999999999", "4294967296", "1.5", "x"])
def test_search_seed_out_of_range(seed: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["search", "--workload", "bert", "--seed", seed, "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert "--seed" in err and "[0, 4294967295]" in err


def test_search_seed_bounds_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_search(monkeypatch)
    for seed in ("0", "4294967295"):
        assert main(["search", "--workload", "bert", "--method", "random", "--seed", seed,
                     "--out", str(tmp_path / "o")]) == 0
    assert [c["seed"] for c in calls] == [0, 4294967295]


@pytest.mark.parametrize("given", [["--starts", "0"], ["--num-hw", "-2"], ["--lr", "nan"],
                                   ["--max-sp-kb", "0"], ["--pe-dim", "4.5"]])
def test_search_non_positive_numbers_refused(given: list[str], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    method = "random" if given[0] == "--num-hw" else "dosa"
    with pytest.raises(SystemExit) as info:
        main(["search", "--workload", "bert", "--method", method, "--out",
              str(tmp_path / "o"), *given])
    assert info.value.code == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert given[0] in err and "positive" in err


@pytest.mark.parametrize("kind", ["directory", "not_utf8", "duplicate_key"])
def test_search_bad_workload_is_one_line(kind: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_search(monkeypatch)
    workload = tmp_path / "net.yaml"
    if kind == "directory":
        workload.mkdir()
        expected = "no Timeloop problem files"
    elif kind == "not_utf8":
        workload.write_bytes("layers: [{name: caf\u00e9, C: 3, K: 4}]\n".encode("latin-1"))
        expected = "UTF-8"
    else:
        workload.write_text("layers:\n  - {name: a, C: 3, C: 5, K: 4}\n")
        expected = "layer 'a': duplicate key 'C'"
    assert main(["search", "--workload", str(workload), "--out", str(tmp_path / "o")]) == 2
    err = _one_error_line(capsys.readouterr().err,
                          f"dosa search: error: --workload {workload}")
    assert expected in err and calls == []


def test_fetch_data_unknown_key(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    def no_fetch(key: str) -> Path:
        raise AssertionError("nothing may be fetched when a key is unknown")

    monkeypatch.setattr(data, "path", no_fetch)
    assert main(["fetch-data", "timeloop", "bogus"]) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa fetch-data: error: ")
    assert "'bogus'" in err and "'timeloop'" not in err
    for key in data.FILES:
        assert key in err


def test_unknown_data_key_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown DOSA data file 'nope'; allowed: "):
        data.path("nope")


@pytest.mark.parametrize("command", ["fetch-data", "search"])
def test_ctrl_c_is_exit_130_without_traceback(command: str, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def interrupted(*args: object, **kwargs: object) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "path", interrupted)
    _record_search(monkeypatch, KeyboardInterrupt())
    argv = (["fetch-data", "timeloop"] if command == "fetch-data"
            else ["search", "--workload", "bert", "--out", str(tmp_path / "o")])
    assert main(argv) == 130
    assert capsys.readouterr().err == f"dosa {command}: interrupted\n"


@pytest.mark.parametrize("error", [PermissionError(13, "Permission denied", "/x/result.json"),
                                   RuntimeError("no data\nsecond line"),
                                   FloatingPointError("overflow")])
def test_user_errors_are_one_line(error: Exception, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _record_search(monkeypatch, error)
    assert main(["search", "--workload", "bert", "--method", "random",
                 "--out", str(tmp_path / "o")]) == 2
    _one_error_line(capsys.readouterr().err, "dosa search: error: ")


@pytest.mark.parametrize("error", [TypeError("bug"), AssertionError("bug"),
                                   NotImplementedError("bug")])
def test_programming_errors_keep_their_traceback(error: Exception, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _record_search(monkeypatch, error)
    with pytest.raises(type(error)):
        main(["search", "--workload", "bert", "--method", "random",
              "--out", str(tmp_path / "o")])


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["search", "--workload", "bert", "--method", "sgd", "--out", "x"])
    assert info.value.code == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: argument --method")
    assert "'dosa', 'random', 'bo'" in err


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_claims_path_must_exist(kind: str, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.json" if kind == "missing" else tmp_path
    assert main(["claims", "--path", str(path)]) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa claims: error: --path ")
    assert str(path) in err and "claims.json" in err


@pytest.mark.parametrize("method", ["random", "bo"])
def test_baselines_honour_hardware_bounds_end_to_end(method: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--max-* used to be silently ignored by random and bo (designs beyond the bounds)."""
    import json

    budget = ["--mappings-per-layer", "5"] if method == "random" else []
    assert main(["search", "--workload", "bert", "--method", method, "--num-hw", "3", *budget,
                 "--max-pe-dim", "8", "--max-sp-kb", "32", "--max-acc-kb", "16", "--quiet",
                 "--out", str(tmp_path / "o")]) == 0
    hw = json.loads(capsys.readouterr().out)["hardware"]
    assert hw["pe_dim"] <= 8 and hw["sp_kb"] <= 32 and hw["acc_kb"] <= 16


@pytest.mark.parametrize(("method", "options"), [
    ("random-paper", ["--num-hw", "2", "--mappings-per-layer", "5", "--register-p", "on"]),
    ("bo-paper", ["--num-hw", "3", "--proposals", "1", "--mappings-per-hw", "6",
                  "--candidates-per-layer", "12", "--top-k", "2", "--argsort-bug", "off"]),
])
def test_search_runs_the_faithful_baselines(method: str, options: list[str], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "run"
    tiny = Path(__file__).resolve().parents[1] / "examples" / "tiny_net.yaml"
    assert main(["search", "--workload", str(tiny), "--method", method,
                 "--seed", "100", "--quiet", "--out", str(out), *options]) == 0
    stored = json.loads((out / "result.json").read_text())
    assert stored["method"] == method and stored["seed"] == 100
    used = stored["config"]  # what the search itself reports it ran with
    if method == "random-paper":
        assert used == {"num_hw": 2, "mappings_per_layer": 5, "register_p": True}
    else:
        assert used["argsort_bug"] is False and used["num_hw"] == 3 and used["top_k"] == 2
        assert used["proposals"] == 1 and used["candidates_per_layer"] == 12
    assert json.loads(capsys.readouterr().out)["edp"] == stored["edp"]


def test_search_methods_are_the_registered_methods() -> None:
    from dosa.cli import SEARCH_METHODS
    from dosa.experiments import METHODS

    assert set(SEARCH_METHODS) == set(METHODS) - {"bo-flat"}


def test_cli_objectives_are_the_library_objectives() -> None:
    from dosa.cli import OBJECTIVES
    from dosa.evaluation import OBJECTIVES as LIBRARY

    assert OBJECTIVES == LIBRARY


@pytest.mark.parametrize("method", ["dosa", "random", "grid", "random-paper"])
def test_search_bad_objective_is_one_line(method: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_search(monkeypatch)
    with pytest.raises(SystemExit) as info:
        main(["search", "--workload", "bert", "--method", method, "--objective", "throughput",
              "--out", str(tmp_path / "o")])
    assert info.value.code == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: argument --objective")
    assert "'edp', 'latency', 'energy'" in err and calls == []


@pytest.mark.parametrize(("method", "budget"), [
    ("random", ["--num-hw", "2", "--mappings-per-layer", "5"]),
    ("bo", ["--num-hw", "2", "--mappings-per-hw", "5", "--candidates-per-layer", "10",
            "--top-k", "2"]),
    ("grid", ["--pe-dim", "16", "--max-sp-kb", "8", "--max-acc-kb", "8"]),
    ("dosa", ["--starts", "1", "--steps", "4", "--round-every", "2"]),
])
def test_search_objective_end_to_end(method: str, budget: list[str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    import json

    out = tmp_path / "run"
    assert main(["search", "--workload", "bert", "--method", method, "--objective", "latency",
                 "--quiet", "--out", str(out), *budget]) == 0
    stored = json.loads((out / "result.json").read_text())
    summary = json.loads(capsys.readouterr().out)
    assert stored["objective"] == summary["objective"] == "latency"
    assert stored["provenance"]["config"]["objective"] == "latency"
    assert summary["cycles"] == stored["cycles"]
    if method != "dosa":
        assert stored["config"]["objective"] == "latency"
    # the same run without the objective is another run: refused, not reused
    assert main(["search", "--workload", "bert", "--method", method, "--quiet",
                 "--out", str(out), *budget]) == 2
    assert "another run" in capsys.readouterr().err


def test_search_edp_summary_has_no_objective(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """EDP runs print exactly what they printed before objectives existed."""
    import json

    assert _random_search("bert", tmp_path / "run") == 0
    assert "objective" not in json.loads(capsys.readouterr().out)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["objective"] == "edp"


@pytest.mark.parametrize(("given", "message"), [
    (["--screen", "-1"], "argument --screen: must be a non-negative integer, got '-1'"),
    (["--screen", "x"], "argument --screen: must be a non-negative integer, got 'x'"),
])
def test_search_bad_screen_is_a_usage_error(given: list[str], message: str, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_search(monkeypatch)
    with pytest.raises(SystemExit) as info:
        main(["search", "--workload", "bert", "--out", str(tmp_path / "o"), *given])
    assert info.value.code == 2
    assert message in _one_error_line(capsys.readouterr().err, "dosa search: error: ")
    assert calls == []


@pytest.mark.parametrize(("given", "starts"), [(["--screen", "8"], 7),
                                               (["--screen", "3", "--starts", "2"], 2)])
def test_search_screen_beyond_starts_is_refused(given: list[str], starts: int, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    calls = _record_search(monkeypatch)
    assert main(["search", "--workload", "bert", "--out", str(tmp_path / "o"), *given]) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: --screen ")
    assert f"exceeds the number of starts ({starts}, see --starts)" in err and calls == []


def test_refinement_flags_cover_what_the_refinement_needs() -> None:
    from dosa.cli import _REFINEMENT_FLAGS
    from dosa.search.dosa_gd import REFINEMENT_NEEDS

    assert set(_REFINEMENT_FLAGS) == set(REFINEMENT_NEEDS)


@pytest.mark.parametrize(("given", "needs"), [
    (["--objective", "latency"], "needs --objective edp"),
    (["--pe-dim", "16"], "needs no --pe-dim"),
    (["--predictor", "dnn"], "needs no --predictor (or --predictor analytical)"),
])
def test_search_refinement_refusal_names_the_flags(given: list[str], needs: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A refinement the other options rule out is refused in CLI words, before any search."""
    calls = _record_search(monkeypatch)
    assert main(["search", "--workload", "bert", "--out", str(tmp_path / "o"),
                 "--refine-samples", "100", *given]) == 2
    err = _one_error_line(capsys.readouterr().err, "dosa search: error: --refine-samples 100 ")
    assert needs in err and "give --refine-samples 0 or leave it out" in err
    assert "refine_samples=0" not in err and calls == []


@pytest.fixture(scope="module")
def bert_result(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-search result folder of bert, to warm-start from."""
    out = tmp_path_factory.mktemp("warm") / "bert"
    assert _random_search("bert", out) == 0
    return out


def test_search_warm_start_passes_the_mappings(bert_result: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dosa.search.result import SearchResult

    calls = _record_search(monkeypatch)
    assert main(["search", "--workload", "bert", "--out", str(tmp_path / "o"),
                 "--warm-start", str(bert_result)]) == 0
    previous = SearchResult.read(bert_result)
    expected = [m.to_string() for m in previous.mappings]
    assert calls[0]["config"] == {**RECOMMENDED, "warm_start": expected,
                                  "warm_hardware": previous.hardware.to_dict()}


def _copy_with(src: Path, dst: Path, **changes: object) -> Path:
    """A copy of the result folder ``src`` whose result.json has ``changes`` (hash kept valid:
    only result.json changes, and it records the hash of mappings.csv)."""
    import json
    import shutil

    shutil.copytree(src, dst)
    data = json.loads((dst / "result.json").read_text())
    for key, value in changes.items():
        if key == "network_sha256":
            data["provenance"][key] = value
        else:
            data[key] = value
    (dst / "result.json").write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize("kind", ["missing", "file", "empty_dir", "corrupt", "other_network",
                                  "other_version"])
def test_search_bad_warm_start_is_one_line(kind: str, bert_result: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "prev"
    if kind == "missing":
        expected = "does not exist"
    elif kind == "file":
        target.write_text("x")
        expected = "is not a folder"
    elif kind == "empty_dir":
        target.mkdir()
        expected = "has no result.json"
    elif kind == "corrupt":
        target.mkdir()
        (target / "result.json").write_text("{not json")
        expected = "not a readable dosa search result"
    elif kind == "other_network":
        tiny = tmp_path / "tiny"
        assert _random_search(str(Path(__file__).resolve().parents[1] / "examples" /
                                  "tiny_net.yaml"), tiny) == 0
        capsys.readouterr()
        target = tiny
        expected = "a result of network 'tiny_net' (2 layers), not of 'bert' ("
    else:
        target = _copy_with(bert_result, target, network_sha256="0" * 64)
        expected = "a result of another version of network 'bert'"
    calls = _record_search(monkeypatch)
    assert main(["search", "--workload", "bert", "--out", str(tmp_path / "o"),
                 "--warm-start", str(target)]) == 2
    err = _one_error_line(capsys.readouterr().err, f"dosa search: error: --warm-start {target}")
    assert expected in err and calls == []
