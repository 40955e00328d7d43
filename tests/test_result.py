"""The result folder is one unit: complete or absent, whatever kills the writer when."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dosa.search.random_search import random_search
from dosa.search.result import MAPPINGS_FILE, RESULT_FILE, ResultError, SearchResult, Trajectory
from dosa.workload import Layer, Network

NET = Network("two", (Layer("conv", R=3, S=3, P=8, Q=8, C=16, K=32),
                      Layer("fc", C=64, K=10, count=2)))
STEPS = ("mappings written", "folder complete", "old moved aside", "renamed")


def _result(seed: int) -> SearchResult:
    return random_search(NET, seed, num_hw=2, mappings_per_layer=20)


def test_round_trip_and_manifest(tmp_path: Path) -> None:
    res = _result(0)
    res.write(tmp_path / "run", NET)
    back = SearchResult.read(tmp_path / "run")
    assert back.edp == res.edp and back.mappings == res.mappings
    data = json.loads((tmp_path / "run" / RESULT_FILE).read_text())
    assert set(data["files"]) == {MAPPINGS_FILE}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_mixed_pair_is_refused(tmp_path: Path) -> None:
    """The defect: a new mappings.csv beside an old result.json was read as complete."""
    _result(0).write(tmp_path / "a", NET)
    _result(1).write(tmp_path / "b", NET)
    (tmp_path / "a" / MAPPINGS_FILE).write_bytes((tmp_path / "b" / MAPPINGS_FILE).read_bytes())
    with pytest.raises(ResultError, match="does not belong"):
        SearchResult.read(tmp_path / "a")


def test_corrupt_json_is_a_result_error(tmp_path: Path) -> None:
    _result(0).write(tmp_path / "a", NET)
    (tmp_path / "a" / RESULT_FILE).write_text("{not json")
    with pytest.raises(ResultError, match="unreadable"):
        SearchResult.read(tmp_path / "a")


_KILLER = textwrap.dedent("""
    import os, signal, sys
    from dosa.search import result as R
    from dosa.search.random_search import random_search
    sys.path.insert(0, {tests!r})
    from test_result import NET
    step = sys.argv[2]
    def hook(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
    res = random_search(NET, 1, num_hw=2, mappings_per_layer=20)
    R._WRITE_HOOK = hook
    res.write(sys.argv[1], NET)
""")


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_every_step_leaves_old_or_new(tmp_path: Path, step: str) -> None:
    out = tmp_path / "run"
    old = _result(0)
    old.write(out, NET)
    new = _result(1)
    assert new.edp != old.edp
    script = _KILLER.format(tests=str(Path(__file__).parent))
    proc = subprocess.run([sys.executable, "-c", script, str(out), step], timeout=120)
    assert proc.returncode == -signal.SIGKILL
    if out.exists():
        seen = SearchResult.read(out)  # never a mixed pair: read() would raise
        assert seen.edp in (old.edp, new.edp)
    else:
        assert step == "old moved aside"  # the only instant with no folder at all
    # the next write cleans up and succeeds
    new.write(out, NET)
    assert SearchResult.read(out).edp == new.edp
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_failed_write_keeps_the_old_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    from dosa.search import result as R

    out = tmp_path / "run"
    old = _result(0)
    old.write(out, NET)

    def boom(name: str) -> None:
        if name == "old moved aside":
            raise KeyboardInterrupt

    monkeypatch.setattr(R, "_WRITE_HOOK", boom)
    with pytest.raises(KeyboardInterrupt):
        _result(1).write(out, NET)
    assert SearchResult.read(out).edp == old.edp
    assert sorted(os.listdir(tmp_path)) == ["run"]


def test_trajectory_sample_counts_strictly_increase() -> None:
    traj = Trajectory()
    traj.record(10, 5.0)
    traj.record(10, 4.0)  # same count, better: replaces
    traj.record(20, 6.0)  # worse: not stored
    traj.close(20)
    assert traj.as_list() == [[10, 4.0], [20, 4.0]]
    with pytest.raises(ValueError, match="backwards"):
        traj.record(5, 1.0)


def test_design_outside_the_area_fit_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    from dosa.hardware import Hardware
    from dosa.search.result import finish_result
    from dosa.search.starts import heuristic_mappings

    hw = Hardware(256, 64.0, 64.0)
    with caplog.at_level("WARNING"):
        res = finish_result(method="x", seed=0, network=NET, hardware=hw,
                            mappings=heuristic_mappings(NET, hw), samples=1, model_evals=2,
                            wall_s=0.0, trajectory=Trajectory(), config={})
    assert "pe_dim=256 is outside 2..128" in res.extra["area_model_warning"]
    assert "area model extrapolated" in caplog.text
    inside = _result(0)
    assert "area_model_warning" not in inside.extra
