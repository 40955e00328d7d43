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
    # without the variable: the checkout the package comes from, whatever the current folder
    repo = Path(claims.__file__).resolve().parents[1]
    for cwd in (tmp_path, repo / "notebooks"):
        monkeypatch.chdir(cwd)
        assert artifacts_dir() == repo / "artifacts"
    monkeypatch.delenv("DOSA_RUNS_DIR", raising=False)
    assert claims.runs_dir() == repo / "build" / "runs"
    assert claims.display_path(repo / "artifacts" / "figures" / "x.png") == \
        "artifacts/figures/x.png"


def test_deterministic_flag_and_comparison() -> None:
    ref = {"a": claim(1.0, 2.0, "x", "s"), "b": claim(5.0, None, "x", "s"),
           "t": claim(10.0, None, "s", "s", deterministic=False),
           "gone": claim(1.0, None, "x", "s"),
           "untimed": claim(2.0, None, "s", "s", deterministic=False)}
    cur = {"a": claim(1.0, 2.0, "x", "s"), "b": claim(5.5, None, "x", "s"),
           "t": claim(12.0, None, "s", "s", deterministic=False),
           "fresh": claim(3.0, None, "x", "s")}
    assert "deterministic" not in ref["a"] and ref["t"]["deterministic"] is False
    table = claims.compare_claims(ref, cur).set_index("key")
    # a timing this machine could not take (e.g. no C++ compiler for --compile) is not a failure
    assert table["status"].to_dict() == {"a": "same", "b": "CHANGED", "t": "timing",
                                         "gone": "MISSING", "fresh": "new",
                                         "untimed": "timing"}
    assert table.loc["b", "drift"] == pytest.approx(0.1)
    text = claims.format_comparison(table.reset_index())
    assert "CHANGED" in text and "committed" in text
    with pytest.raises(ValueError, match="deterministic"):
        claims._validate("k", {**ref["a"], "deterministic": "no"})


def test_readme_prose_spans_are_rendered_from_claims() -> None:
    readme = ("x\n<!-- claims:start -->\nold\n<!-- claims:end -->\n"
              "ratio <!--claim:fig7.r:.2f-->9.99<!--/claim-->x, "
              "rate <!--claim:bench.r:,.0f-->1<!--/claim-->/s\n")
    data = {"fig7.r": claim(1.588, 2.8, "x", "s"), "bench.r": claim(1055441.2, None, "x", "s")}
    out = claims.render_readme(readme, "TABLE", data)
    assert "ratio <!--claim:fig7.r:.2f-->1.59<!--/claim-->x" in out
    assert "rate <!--claim:bench.r:,.0f-->1,055,441<!--/claim-->/s" in out
    assert claims.readme_claim_values(out) == [("fig7.r", ".2f", "1.59"),
                                               ("bench.r", ",.0f", "1,055,441")]
    with pytest.raises(ValueError, match="'fig7.r'"):
        claims.render_readme(readme, "TABLE", {"bench.r": data["bench.r"]})


def test_default_path_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOSA_ARTIFACTS_DIR", str(tmp_path / "art"))
    update_claims({"k": claim(1.0, None, "x", "s")})
    assert json.loads((tmp_path / "art" / "claims.json").read_text())["k"]["measured"] == 1.0


def test_readme_prose_agrees_with_claims_json() -> None:
    """Every number cited in README prose is the claims.json value (rendered by make claims)."""
    repo = Path(claims.__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    data = claims.load_claims(repo / "artifacts" / "claims.json")
    spans = claims.readme_claim_values(readme)
    assert spans, "README cites no claims"
    for key, fmt, shown in spans:
        assert key in data, f"README cites {key!r}, absent from artifacts/claims.json"
        assert shown == format(data[key]["measured"], fmt), key


@pytest.mark.parametrize("content, words", [
    ('{"a": 1}', "'a'"), ('{"a": {}}', "'a'"),
    ('{"a": {"measured": "x", "paper": null, "unit": "u", "source": "s"}}', "'a'"),
    ("{bad", "not valid JSON")])
def test_malformed_claims_file_is_one_line(tmp_path: Path, content: str, words: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.json"
    path.write_text(content)
    assert claims.main(["--path", str(path)]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
