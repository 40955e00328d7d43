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
    calls = []
    real = experiments.method_fn

    def counting(name: str):  # noqa: ANN202
        fn = real(name)
        return lambda *a, **k: calls.append(name) or fn(*a, **k)

    monkeypatch.setattr(experiments, "method_fn", counting)
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
