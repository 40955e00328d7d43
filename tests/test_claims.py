"""claims.json: validated, merged, atomic, safe under concurrent writers."""

from __future__ import annotations

import json
import math
import multiprocessing
from pathlib import Path

import pytest

from dosa import claims
from dosa.claims import (
    artifacts_dir,
    claim,
    claims_table,
    format_claims_table,
    load_claims,
    update_claims,
)


def test_claim_constructor_normalises() -> None:
    c = claim(3, 2.5, "x", "nb.ipynb")
    assert c == {"measured": 3.0, "paper": 2.5, "unit": "x", "source": "nb.ipynb"}
    assert isinstance(c["measured"], float)
    assert claim(1.0, None, "ms", "s")["paper"] is None


def test_merge_keeps_other_keys_and_sorts(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    update_claims({"b.speedup": claim(2.0, 2.1, "x", "nb1")}, path)
    update_claims({"a.err": claim(0.1, None, "%", "nb2")}, path)
    update_claims({"b.speedup": claim(2.05, 2.1, "x", "nb1")}, path)
    data = load_claims(path)
    assert list(data) == ["a.err", "b.speedup"]
    assert data["b.speedup"]["measured"] == 2.05
    assert data["a.err"]["paper"] is None
    text = path.read_text()
    assert text == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_measured_rejected_with_key(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "claims.json"
    update_claims({"keep": claim(1.0, 1.0, "x", "s")}, path)
    entry = {"measured": bad, "paper": 1.0, "unit": "x", "source": "s"}
    with pytest.raises(ValueError, match="fig12.speedup"):
        update_claims({"ok": claim(1.0, None, "x", "s"), "fig12.speedup": entry}, path)
    assert list(load_claims(path)) == ["keep"]  # nothing written when any entry is bad


@pytest.mark.parametrize(
    "entry, match",
    [
        ({"measured": 1.0, "paper": math.nan, "unit": "x", "source": "s"}, "paper"),
        ({"measured": 1.0, "paper": None, "unit": "", "source": "s"}, "unit"),
        ({"measured": 1.0, "paper": None, "unit": "x", "source": 3}, "source"),
        ({"measured": 1.0, "paper": None, "unit": "x", "source": "s", "x": 1}, "unexpected"),
        ({"measured": 1.0, "unit": "x", "source": "s"}, "missing"),
        ({"measured": "1.0", "paper": None, "unit": "x", "source": "s"}, "measured"),
        ({"measured": True, "paper": None, "unit": "x", "source": "s"}, "measured"),
    ],
)
def test_invalid_entries_rejected(tmp_path: Path, entry: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        update_claims({"k": entry}, tmp_path / "claims.json")
    assert not (tmp_path / "claims.json").exists()


def test_corrupt_file_not_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        update_claims({"k": claim(1.0, None, "x", "s")}, path)
    assert path.read_text() == "{not json"


def _writer(path: str, prefix: str, n: int) -> None:
    for i in range(n):
        update_claims({f"{prefix}.{i:02d}": claim(float(i), None, "x", prefix)}, Path(path))


def test_concurrent_writers_keep_all_keys(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(path), p, 25)) for p in ("nb_a", "nb_b")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    data = load_claims(path)
    assert len(data) == 50
    assert {k.split(".")[0] for k in data} == {"nb_a", "nb_b"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_claims_table_and_format(tmp_path: Path) -> None:
    path = tmp_path / "claims.json"
    update_claims(
        {
            "fig12.speedup": claim(1.5, 2.0, "x", "notebooks/fig12.ipynb"),
            "timeloop.rows": claim(72700, None, "rows", "data"),
            "tiny": claim(1.234e-5, 1e-5, "J", "a|b"),
        },
        path,
    )
    df = claims_table(path)
    assert list(df.columns) == ["key", "measured", "paper", "ratio", "unit", "source"]
    assert list(df["key"]) == ["fig12.speedup", "timeloop.rows", "tiny"]
    assert df.loc[0, "ratio"] == pytest.approx(0.75)
    assert math.isnan(df.loc[1, "ratio"]) and math.isnan(df.loc[1, "paper"])
    text = format_claims_table(df)
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[0].startswith("| key") and "measured/paper" in lines[0]
    assert set(lines[1]) <= {"|", "-", ":"}
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert "0.750" in lines[2] and "72,700" in lines[3] and "1.234e-05" in lines[4]
    assert "a\\|b" in lines[4]


def test_claims_table_empty(tmp_path: Path) -> None:
    df = claims_table(tmp_path / "missing.json")
    assert df.empty and list(df.columns)[0] == "key"


def test_main_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "claims.json"
    update_claims({"k": claim(2.0, 4.0, "x", "s")}, path)
    assert claims.main(["--path", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| k" in out and "0.500" in out


def test_artifacts_dir_resolution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / "elsewhere"))
    assert artifacts_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("DOSA_ARTIFACTS_DIR")

    repo = tmp_path / "repo"
    (repo / "notebooks").mkdir(parents=True)
    (repo / "pyproject.toml").write_text("")
    monkeypatch.chdir(repo / "notebooks")
    assert artifacts_dir() == repo / "artifacts"
    (repo / "notebooks" / "artifacts").mkdir()
    assert artifacts_dir() == repo / "notebooks" / "artifacts"


def test_default_path_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / "art"))
    update_claims({"k": claim(1.0, None, "x", "s")})
    assert json.loads((tmp_path / "art" / "claims.json").read_text())["k"]["measured"] == 1.0
