"""The reproduce report: measured wall time, committed vs reproduced vs paper."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dosa import reproduce
from dosa.claims import claim, load_claims, update_claims


def test_report_flags_changed_deterministic_claims(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / "art"))
    ref = {"fig7.x": claim(1.5, 2.8, "x", "nb"), "fig4.y": claim(0.2, None, "%", "nb")}
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    update_claims({"fig7.x": claim(1.5, 2.8, "x", "nb"), "fig4.y": claim(0.3, None, "%", "nb")})
    assert reproduce.main(["--started", str(time.time() - 90),
                           "--reference", str(tmp_path / "ref.json")]) == 0
    out = capsys.readouterr().out
    assert "FLAGGED: 1 deterministic claim(s)" in out and "fig4.y" in out.split("FLAGGED")[1]
    assert load_claims()["bench.reproduce_min"]["measured"] == pytest.approx(1.5, rel=0.05)
    assert "bench.reproduce_min" in out.split("FLAGGED")[0]  # shown, not flagged


def test_report_all_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / "art"))
    update_claims({"a": claim(1.0, None, "x", "nb")})
    (tmp_path / "ref.json").write_text(json.dumps(load_claims()))
    assert reproduce.main(["--reference", str(tmp_path / "ref.json")]) == 0
    assert "every deterministic claim equals" in capsys.readouterr().out
    assert reproduce.main(["--reference", str(tmp_path / "nope.json")]) == 2
    assert reproduce.main(["--started", str(time.time() + 1000)]) == 2
