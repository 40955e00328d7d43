"""Run cache keys cannot go stale; notebooks share identical runs; the CLI refuses others."""

from __future__ import annotations

from pathlib import Path

import pytest

from dosa import experiments
from dosa.experiments import StaleResultError, run, run_key, search_to_folder, summary_frame
from dosa.search.result import MAPPINGS_FILE, SearchResult
from dosa.workload import Layer, Network

CFG = {"num_hw": 2, "mappings_per_layer": 20}


def _net(k: int = 32, name: str = "tiny") -> Network:
    return Network(name, (Layer("conv", R=3, S=3, P=8, Q=8, C=16, K=k),
                          Layer("fc", C=64, K=10, count=2)))


def _counted_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The methods :func:`run` computes from now on (each still runs)."""
    calls: list[str] = []
    real = experiments.method_fn

    def counting(name: str):  # noqa: ANN202
        fn = real(name)
        return lambda *a, **k: calls.append(name) or fn(*a, **k)

    monkeypatch.setattr(experiments, "method_fn", counting)
    return calls


def test_key_holds_content_config_code_and_predictor() -> None:
    base = run_key(_net(), "random", 0, CFG)
    assert run_key(_net(), "random", 0, dict(reversed(list(CFG.items())))) == base
    assert run_key(_net(k=64), "random", 0, CFG)["network_sha256"] != base["network_sha256"]
    assert run_key(_net(), "random", 1, CFG) != base
    assert run_key(_net(), "random", 0, {**CFG, "num_hw": 3}) != base
    assert run_key(_net(), "bo", 0, CFG) != base
    assert len(base["code_sha256"]) == 64 and base["predictor_sha256"] is None


def test_key_hashes_the_predictor_file(tmp_path: Path) -> None:
    f = tmp_path / "p.pt"
    f.write_bytes(b"one")
    a = run_key(_net(), "dosa", 0, {"predictor": str(f)})["predictor_sha256"]
    f.write_bytes(b"two")  # retrained under the same name
    b = run_key(_net(), "dosa", 0, {"predictor": str(f)})["predictor_sha256"]
    assert a and b and a != b
    with pytest.raises(ValueError, match="predictor 'nope'"):
        run_key(_net(), "dosa", 0, {"predictor": "nope"})


def test_run_reuses_only_identical_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    cache, export = tmp_path / "cache", tmp_path / "art"
    kw = {"experiment": "t", "config": CFG, "root": cache, "export": export}
    first = run(_net(), "random", 0, **kw)
    calls = _counted_calls(monkeypatch)
    again = run(_net(), "random", 0, **kw)
    assert calls == [] and again.edp == first.edp
    # same name, other content: recomputed, never the stale result
    other = run(_net(k=64), "random", 0, **kw)
    assert calls == ["random"] and other.provenance["network_sha256"] != \
        first.provenance["network_sha256"]
    # another code version: recomputed
    monkeypatch.setattr(experiments, "code_fingerprint", lambda: "0" * 64)
    run(_net(k=64), "random", 0, **kw)
    assert calls == ["random", "random"]
    # exported reference copy is complete
    out = export / "t" / "tiny" / "random" / "seed0"
    assert SearchResult.read(out).provenance["code_sha256"] == "0" * 64


def test_identical_run_under_another_experiment_is_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache, export = tmp_path / "cache", tmp_path / "art"
    first = run(_net(), "random", 0, experiment="fig7", config=CFG, root=cache, export=export)
    calls = _counted_calls(monkeypatch)
    copy = run(_net(), "random", 0, experiment="area", config=CFG, root=cache, export=export,
               label="random-unbounded")
    assert calls == [] and copy.to_json() == first.to_json()
    for root in (cache, export):
        stored = SearchResult.read(root / "area" / "tiny" / "random-unbounded" / "seed0")
        assert stored.to_json() == first.to_json()
    # another seed has another key: computed, even though the index holds a run of this name
    run(_net(), "random", 1, experiment="area", config=CFG, root=cache, export=export)
    assert calls == ["random"]


def test_key_index_never_serves_another_run(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cache, export = tmp_path / "cache", tmp_path / "art"
    kw = {"config": CFG, "root": cache, "export": export}
    first = run(_net(), "random", 0, experiment="a", **kw)
    key = run_key(_net(), "random", 0, CFG)
    entry = cache / experiments.KEY_INDEX / experiments.key_digest(key)
    assert entry.read_text().strip() == "a/tiny/random/seed0"
    # the indexed folder now holds another run: the entry is stale, the run is recomputed
    run(_net(), "random", 0, experiment="a", force=True, config={**CFG, "num_hw": 3},
        root=cache, export=export)
    calls = _counted_calls(monkeypatch)
    again = run(_net(), "random", 0, experiment="b", **kw)
    assert calls == ["random"] and again.edp == first.edp
    assert entry.read_text().strip() == "b/tiny/random/seed0"
    # an entry pointing outside the cache is ignored
    outside = tmp_path / "elsewhere"
    first.write(outside, _net())
    entry.write_text("../elsewhere\n")
    run(_net(), "random", 0, experiment="c", **kw)
    assert calls == ["random", "random"]


def test_search_to_folder_refuses_another_run(tmp_path: Path) -> None:
    out = tmp_path / "X"
    res, loaded = search_to_folder(_net(), "random", 0, CFG, out)
    assert not loaded
    again, loaded = search_to_folder(_net(), "random", 0, CFG, out)
    assert loaded and again.edp == res.edp
    for args in ((_net(k=64), "random", 0, CFG), (_net(), "random", 1, CFG),
                 (_net(), "random", 0, {**CFG, "num_hw": 3})):
        with pytest.raises(StaleResultError, match="--force"):
            search_to_folder(*args, out)
    forced, loaded = search_to_folder(_net(k=64), "random", 0, CFG, out, force=True)
    assert not loaded and SearchResult.read(out).edp == forced.edp


def test_damaged_folder_names_force(tmp_path: Path) -> None:
    out = tmp_path / "X"
    search_to_folder(_net(), "random", 0, CFG, out)
    (out / MAPPINGS_FILE).write_text("layer\n")
    with pytest.raises(StaleResultError, match="--force"):
        search_to_folder(_net(), "random", 0, CFG, out)


def test_summary_frame_has_no_paths(tmp_path: Path) -> None:
    r = run(_net(), "random", 0, experiment="t", config=CFG, root=tmp_path / "c",
            export=tmp_path / "a")
    frame = summary_frame({("tiny", "random", 0): r})
    assert list(frame["edp"]) == [r.edp] and "path" not in frame.columns


def test_force_never_deletes_user_files(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    for force in (False, True):
        with pytest.raises(StaleResultError, match="notes.txt"):
            search_to_folder(_net(), "random", 0, CFG, out, force=force)
    assert (out / "notes.txt").read_text() == "precious"


def test_key_holds_package_versions() -> None:
    key = run_key(_net(), "random", 0, CFG)
    assert set(key["environment"]) >= {"torch", "numpy", "scikit-learn"}


def test_every_label_names_a_method_and_has_both_budgets() -> None:
    for label, method in experiments.LABELS.items():
        assert method in experiments.METHODS, label
        for profile in experiments.BUDGETS:
            assert label in experiments.BUDGETS[profile], (profile, label)
            assert experiments.seeds_for(label, profile), (profile, label)
    # the faithful baselines run the paper's seeds, our random search a distribution
    assert experiments.seeds_for("bo-paper", "full") == (0, 100, 1111, 8888, 99999)
    assert len(experiments.seeds_for("random", "full")) >= 20
    assert set(experiments.TUNING_SEEDS["full"]).isdisjoint(experiments.SEEDS["full"])
    with pytest.raises(ValueError, match="profile must be one of"):
        experiments.seeds_for("dosa", "huge")


@pytest.mark.parametrize("text", ["0", "-1", "two"])
def test_workers_env_is_checked(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOSA_WORKERS", text)
    with pytest.raises(ValueError, match="DOSA_WORKERS must be a positive integer"):
        experiments.default_workers()


def test_parallel_runs_equal_sequential_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    """Two worker processes give the numbers one process gives (every search is deterministic
    and single-threaded), and each worker's run lands in the shared cache."""
    jobs = [("bert", "random-paper", 0), ("bert", "random", 1), ("bert", "random-paper", 0)]

    def sweep(name: str, workers: int) -> dict:
        monkeypatch.setenv("DOSA_RUNS_DIR", str(tmp_path / name / "runs"))
        monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / name / "art"))
        return experiments.run_labels(jobs, "smoke", experiment="t", workers=workers,
                                      progress=False)

    one, two = sweep("one", 1), sweep("two", 2)
    assert list(one) == list(two) == jobs[:2]  # duplicates run once, order kept
    for job in one:
        assert two[job].edp == one[job].edp and two[job].mappings == one[job].mappings
        assert (tmp_path / "two" / "runs" / "t" / "bert" / job[1] / f"seed{job[2]}"
                / "result.json").is_file()
    with pytest.raises(ValueError, match="label must be one of"):
        experiments.run_labels([("bert", "nope", 0)], "smoke", experiment="t", workers=2)


def test_failing_run_is_named_and_stops_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing(label: str, workload: str, seed: int, profile: str, **kw: object) -> None:
        calls.append(seed)
        raise FloatingPointError("loss is nan")

    monkeypatch.setattr(experiments, "run_label", failing)
    with pytest.raises(FloatingPointError, match="t run bert/random/seed 3: loss is nan"):
        experiments.run_labels([("bert", "random", 3), ("bert", "random", 4)], "smoke",
                               experiment="t", workers=1)
    assert calls == [3]
    with pytest.raises(ValueError, match="profile must be one of"):
        experiments.run_labels([("bert", "random", 0)], "huge", experiment="t")
    with pytest.raises(ValueError, match="nope"):
        experiments.run_labels([("nope", "random", 0)], "smoke", experiment="t")


@pytest.mark.parametrize("profile", sorted(experiments.BUDGETS))
def test_every_budget_is_accepted_by_its_method(profile: str) -> None:
    """A budget naming an option its method does not take would fail only deep in a
    notebook run; options dataclasses also validate the values."""
    import dataclasses
    import inspect

    from dosa.search.best_known import BestKnownConfig
    from dosa.search.dosa_gd import DosaConfig

    options_classes = {"dosa": DosaConfig, "best-known": BestKnownConfig}
    for label, config in experiments.BUDGETS[profile].items():
        method = experiments.LABELS[label]
        if method in options_classes:
            fields = {f.name for f in dataclasses.fields(options_classes[method])}
            assert set(config) <= fields, (label, set(config) - fields)
            options_classes[method](**config)
        else:
            params = inspect.signature(experiments.method_fn(method)).parameters
            named = {n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
            assert set(config) <= named, (label, set(config) - named)
