"""The project's metadata files agree with each other and with the README, and the package
exposes its public API."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


LOCK = ROOT / "requirements-lock.txt"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, Version]:
    """requirements-lock.txt as {canonical name: pinned version}; every line an exact pin."""
    pins: dict[str, Version] = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        assert len(spec) == 1 and spec[0].operator == "==", f"not an exact pin: {line}"
        assert "+" not in spec[0].version, f"local version label would not resolve on PyPI: {line}"
        name = canonicalize_name(req.name)
        assert name not in pins, f"pinned twice: {name}"
        pins[name] = Version(spec[0].version)
    return pins


def _project_requirements() -> list[Requirement]:
    return [Requirement(r) for r in
            [*PYPROJECT["dependencies"], *PYPROJECT["optional-dependencies"]["dev"]]]


def test_lock_satisfies_every_pyproject_dependency() -> None:
    pins = _lock()
    assert "dosa" not in pins, "the project itself must not be in the lock"
    for req in _project_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{req} is not pinned in requirements-lock.txt"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"lock pins {name}=={pins[name]}, pyproject wants {req}"
    assert pins["torch"] == Version("2.13.0")


def test_lock_matches_the_installed_environment() -> None:
    """Every locked package that is installed has the locked version (a stale venv or a lock
    regenerated without reinstalling shows up here; local labels like +cpu are ignored)."""
    pins = _lock()
    wrong = {}
    # the environment's own site-packages only: once torch.compile has imported setuptools,
    # its vendored copies (setuptools/_vendor/*.dist-info) are on sys.path too
    site = {Path(sysconfig.get_paths()[k]).resolve() for k in ("purelib", "platlib")}
    seen = set()
    for dist in importlib.metadata.distributions(path=[str(d) for d in site]):
        name = canonicalize_name(dist.metadata["Name"])
        seen.add(name)
        if name in pins and Version(dist.version).public != str(pins[name]):
            wrong[name] = (dist.version, str(pins[name]))
    assert {"torch", "numpy", "papermill"} <= seen, "site-packages not found"
    assert not wrong, f"installed vs locked: {wrong}"


def test_environment_yml_installs_the_locked_project() -> None:
    """environment.yml is `make venv` for conda: python 3.11, then pip with the lock as
    constraints and the project with its dev extras."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python == "python=3.11"
    assert SpecifierSet(PYPROJECT["requires-python"]).contains("3.11")
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert [re.sub(r"\s+", " ", r.strip()) for r in pip] == [
        "-c requirements-lock.txt", "-e .[dev]"]


def test_makefile_installs_with_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    stamp = makefile.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    assert "requirements-lock.txt" in stamp.splitlines()[0], "the venv must follow the lock"
    assert "-c requirements-lock.txt" in stamp
    assert re.search(r"^lock:", makefile, re.M)


def test_public_api_resolves() -> None:
    import dosa

    assert set(dosa.__all__) == {*dosa._EXPORTS, "__version__"}
    assert "dosa_search" in dosa.__all__ and "load_network" in dosa.__all__
    for name in dosa.__all__:
        assert getattr(dosa, name) is not None, name
        assert name in dir(dosa)
    with pytest.raises(AttributeError):
        dosa.no_such_name  # noqa: B018


def test_import_dosa_is_lazy() -> None:
    """`import dosa` must not pay for torch until a public name is used."""
    code = ("import sys, dosa; assert 'torch' not in sys.modules, 'torch imported'; "
            "dosa.Hardware; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


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
