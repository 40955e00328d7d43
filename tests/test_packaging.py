"""The project's metadata files agree with each other and with the README."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_matches_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"]}
    wanted |= {_norm(r) for r in project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"
    assert "torch==2.13.0" in wanted


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make reproduce" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_claims_table_matches_artifacts() -> None:
    """The README shows exactly the claims the committed artifacts hold."""
    from dosa.claims import README_END, README_START, claims_table, format_claims_table

    claims = ROOT / "artifacts" / "claims.json"
    readme = (ROOT / "README.md").read_text()
    assert README_START in readme and README_END in readme
    if not claims.exists():
        return
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    assert block == format_claims_table(claims_table(claims)).strip()
