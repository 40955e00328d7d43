"""Notebook parameters, figure display and committed outputs.

The notebooks are executed by papermill, so their parameter checks live in
:mod:`dosa.notebook` and are tested here; the static checks below keep every saved figure
displayed inline and keep this machine's absolute paths out of the committed artifacts.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from dosa.claims import ARTIFACTS_DIR_ENV
from dosa.notebook import (
    MAX_SEED,
    PROFILES,
    check_profile,
    check_seeds,
    check_workloads,
)
from dosa.workload import BUILTIN_NETWORKS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
INLINE = "module://matplotlib_inline.backend_inline"

# ---------------------------------------------------------------------------------------------
# parameter checks


def test_check_profile_accepts_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ARTIFACTS_DIR_ENV, "/somewhere")
    for profile in PROFILES:
        assert check_profile(profile) == profile


@pytest.mark.parametrize("bad", ["", "Full", "quick", None, 1])
def test_check_profile_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^profile must be one of smoke, full; got") as err:
        check_profile(bad)
    assert "\n" not in str(err.value)


def test_smoke_profile_gets_a_scratch_artifacts_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """A smoke run without DOSA_ARTIFACTS_DIR must never write into the real artifacts/."""
    monkeypatch.delenv(ARTIFACTS_DIR_ENV, raising=False)
    check_profile("smoke")
    scratch = Path(os.environ[ARTIFACTS_DIR_ENV])
    assert scratch.is_dir() and scratch.resolve() != (ROOT / "artifacts").resolve()


@pytest.mark.parametrize("good", [None, [0], [0, 1, 2, 3, 4], (7, 3), [MAX_SEED]])
def test_check_seeds_accepts(good: object) -> None:
    out = check_seeds(good)
    assert out is None if good is None else out == list(good)


@pytest.mark.parametrize("bad", [-1, 0, [], [-1], [0, 0], [MAX_SEED + 1], [1.0], [True],
                                 ["0"], "0", "[0, 1]", {0: 1}])
def test_check_seeds_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"^seeds must be None or a non-empty list of distinct "
                                         rf"integers in \[0, {MAX_SEED}\]") as err:
        check_seeds(bad)
    assert "\n" not in str(err.value) and repr(bad) in str(err.value)


@pytest.mark.parametrize("good", [None, ["bert"], list(BUILTIN_NETWORKS), ("unet", "resnet50")])
def test_check_workloads_accepts(good: object) -> None:
    out = check_workloads(good)
    assert out is None if good is None else out == list(good)


@pytest.mark.parametrize("bad", ["bert", [], ["BERT"], ["bert", "bert"], ["gpt"], [1], -1])
def test_check_workloads_rejects(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^workloads must be None or a non-empty list") as err:
        check_workloads(bad)
    message = str(err.value)
    assert "\n" not in message and all(name in message for name in BUILTIN_NETWORKS)


# ---------------------------------------------------------------------------------------------
# notebooks: parameters are checked first, figures are displayed


def _code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def _parameters(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name}: exactly one cell must be tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    return {t.id for node in tree.body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_checks_its_parameters_first(path: Path) -> None:
    """The cell after the parameters validates them before any work (papermill injects the
    user's values between the two)."""
    checks = {"profile": "check_profile(profile)", "seeds": "check_seeds(seeds)",
              "workloads": "check_workloads(workloads)"}
    params = _parameters(path)
    unchecked = params - set(checks)
    assert not unchecked, f"{path.name}: parameter(s) without a check: {unchecked}"
    cells = _code_cells(path)
    first = cells[1]  # cells[0] is the parameters cell
    assert "from dosa.notebook import" in first
    for name in params:
        assert checks[name] in first, f"{path.name}: first code cell must call {checks[name]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saved_figures_are_displayed(path: Path) -> None:
    """Every cell that saves a figure also shows it, so the executed notebook holds the image."""
    for source in _code_cells(path):
        if "save_figure(" not in source:
            continue
        lines = [ln for ln in source.strip().splitlines() if ln.strip() and not ln.startswith("#")]
        shown = "plt.show()" in source or re.fullmatch(r"(fig|display\(fig\))", lines[-1].strip())
        assert shown, f"{path.name}: cell saving a figure never displays it:\n{source[:300]}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, path.name


def test_plots_does_not_force_a_backend() -> None:
    source = (ROOT / "dosa" / "plots.py").read_text()
    assert not re.search(r"matplotlib\s*\.\s*use\s*\(|pyplot\s*\.\s*switch_backend", source)


def test_import_plots_keeps_the_inline_backend() -> None:
    """In a kernel the inline backend is chosen before dosa.plots is imported; it must stay."""
    pytest.importorskip("matplotlib_inline")
    code = ("import matplotlib; import dosa.plots; "
            "import matplotlib.pyplot as plt; print(matplotlib.get_backend())")
    env = {**os.environ, "MPLBACKEND": INLINE}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    assert out.lower() != "agg" and "inline" in out


def test_figure_in_a_kernel_becomes_an_image_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Execute a tiny notebook the way papermill does: the figure must come out as image/png."""
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import matplotlib.pyplot as plt\nfrom dosa.plots import setup_style\nsetup_style()\n"
        "fig, ax = plt.subplots()\nax.plot([1, 2, 3])\nplt.show()")]
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    outputs = nb.cells[0].outputs
    assert any("image/png" in o.get("data", {}) for o in outputs), outputs


# ---------------------------------------------------------------------------------------------
# committed artifacts: no absolute machine paths

ABSOLUTE_PATH = re.compile(r"(?<![\w.~-])/(?:work|tmp|root|home|Users|private|mnt|opt)/\S*")


def _output_texts(path: Path) -> list[str]:
    texts = []
    for cell in json.loads(path.read_text())["cells"]:
        for out in cell.get("outputs", []):
            if "text" in out:
                texts.append("".join(out["text"]))
            texts += ["".join(v) if isinstance(v, list) else str(v)
                      for k, v in out.get("data", {}).items() if not k.startswith("image/")]
            texts += out.get("traceback", [])
    return texts


def test_absolute_path_pattern() -> None:
    assert ABSOLUTE_PATH.search("wrote /work/main/artifacts/figures/x.png")
    assert ABSOLUTE_PATH.search("'/tmp/dosa-smoke-1/tables/a.csv'")
    assert not ABSOLUTE_PATH.search("wrote artifacts/figures/x.png; 3 µJ/cycle; pe 16 / sp 8")


def test_committed_artifacts_hold_no_absolute_paths() -> None:
    """Executed notebooks and tables are committed; they must not record this machine's paths.

    Fails on artifacts produced before the notebooks printed repo-relative paths; it passes once
    `make reproduce` has re-run them.
    """
    artifacts = ROOT / "artifacts"
    found = []
    for path in sorted(artifacts.glob("*.ipynb")):
        found += [f"{path.name}: {m}" for text in _output_texts(path)
                  for m in ABSOLUTE_PATH.findall(text)]
    for path in sorted([*artifacts.glob("tables/*.csv"), *artifacts.glob("designs/*.csv")]):
        with path.open(newline="") as f:
            found += [f"{path.relative_to(artifacts)}: {m}" for row in csv.reader(f)
                      for cell in row for m in ABSOLUTE_PATH.findall(cell)]
    assert not found, f"{len(found)} absolute path(s), e.g. {found[:5]}"
