"""``artifacts/claims.json``: every headline number of the artifact, measured vs. paper.

Each notebook/benchmark records the numbers it reproduces as flat keys::

    {"key": {"measured": float, "paper": float | None, "unit": str, "source": str}}

Several notebooks may run at once, so updates are merged under an exclusive lock and written
atomically; a writer only ever touches its own keys.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import math
import numbers
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from dosa.io import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "ARTIFACTS_DIR_ENV",
    "artifacts_dir",
    "claim",
    "claims_path",
    "claims_table",
    "format_claims_table",
    "load_claims",
    "main",
    "update_claims",
]

ARTIFACTS_DIR_ENV = "DOSA_ARTIFACTS_DIR"
CLAIMS_FILE = "claims.json"
FIELDS = ("measured", "paper", "unit", "source")
TABLE_COLUMNS = ["key", "measured", "paper", "ratio", "unit", "source"]


def artifacts_dir() -> Path:
    """The artifacts folder: ``$DOSA_ARTIFACTS_DIR``, ``./artifacts``, or the repo root's.

    The repo root is found by walking up from the working directory to a folder holding
    ``pyproject.toml``, so notebooks run from ``notebooks/`` write to the same file.
    """
    env = os.environ.get(ARTIFACTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    cwd = Path.cwd()
    if (cwd / "artifacts").is_dir():
        return cwd / "artifacts"
    for parent in (cwd, *cwd.parents):
        if (parent / "pyproject.toml").is_file():
            return parent / "artifacts"
    logger.warning("no repository root found above %s; using %s/artifacts", cwd, cwd)
    return cwd / "artifacts"


def claims_path() -> Path:
    """Default location of ``claims.json``."""
    return artifacts_dir() / CLAIMS_FILE


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _validate(key: object, entry: object) -> dict[str, Any]:
    """Return a normalised copy of one claim entry, or raise ValueError naming the key."""
    if not isinstance(key, str) or not key:
        raise ValueError(f"claim key must be a non-empty string, got {key!r}")
    if not isinstance(entry, Mapping):
        raise ValueError(f"claim {key!r}: entry must be a dict, got {type(entry).__name__}")
    extra = sorted(set(entry) - set(FIELDS))
    missing = [f for f in FIELDS if f not in entry]
    if extra:
        raise ValueError(f"claim {key!r}: unexpected field(s) {extra}; allowed: {list(FIELDS)}")
    if missing:
        raise ValueError(f"claim {key!r}: missing field(s) {missing}")
    measured, paper = entry["measured"], entry["paper"]
    if not _is_real(measured) or not math.isfinite(float(measured)):
        raise ValueError(f"claim {key!r}: measured must be a finite number, got {measured!r}")
    if paper is not None and (not _is_real(paper) or not math.isfinite(float(paper))):
        raise ValueError(f"claim {key!r}: paper must be None or a finite number, got {paper!r}")
    for field in ("unit", "source"):
        value = entry[field]
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"claim {key!r}: {field} must be a non-empty string, got {value!r}")
    return {
        "measured": float(measured),
        "paper": None if paper is None else float(paper),
        "unit": entry["unit"],
        "source": entry["source"],
    }


def claim(measured: float, paper: float | None, unit: str, source: str) -> dict[str, Any]:
    """Build one validated claim entry (``measured`` vs. the ``paper`` value, if any)."""
    entry = {"measured": measured, "paper": paper, "unit": unit, "source": source}
    return _validate("<claim>", entry)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``<path>.lock`` so concurrent writers serialise."""
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); refusing to overwrite it") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def update_claims(entries: Mapping[str, Mapping[str, Any]], path: Path | None = None) -> None:
    """Merge ``entries`` into ``claims.json`` without touching other keys.

    All entries are validated before anything is written; the write is atomic and done under
    an exclusive lock so concurrent notebooks cannot lose each other's keys.
    """
    validated = {key: _validate(key, entry) for key, entry in entries.items()}
    target = Path(path) if path is not None else claims_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        data = _read(target)
        data.update(validated)
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
        atomic_write_text(target, text)
    logger.info("updated %d claim(s) in %s: %s", len(validated), target, sorted(validated))


def load_claims(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """All claims in the file (empty when it does not exist yet)."""
    return _read(Path(path) if path is not None else claims_path())


def claims_table(path: Path | None = None) -> pd.DataFrame:
    """Claims as a DataFrame sorted by key, with ``ratio`` = measured / paper (NaN if none)."""
    rows = []
    for key, entry in sorted(load_claims(path).items()):
        measured = float(entry["measured"])
        paper = entry.get("paper")
        paper_f = math.nan if paper is None else float(paper)
        ratio = measured / paper_f if paper is not None and paper_f != 0 else math.nan
        rows.append(
            {
                "key": key,
                "measured": measured,
                "paper": paper_f,
                "ratio": ratio,
                "unit": entry.get("unit", ""),
                "source": entry.get("source", ""),
            }
        )
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _fmt_number(value: object, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    x = float(value)  # type: ignore[arg-type]
    if x.is_integer() and abs(x) < 1e6:
        return f"{int(x):,}"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3):
        return f"{x:.{digits - 1}e}"
    return f"{x:.{digits}g}"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def format_claims_table(df: pd.DataFrame) -> str:
    """Render a claims table as a Markdown table (readable as plain text too)."""
    header = ["key", "measured", "paper", "measured/paper", "unit", "source"]
    rows: list[Sequence[str]] = []
    for rec in df.to_dict("records"):
        ratio = rec.get("ratio")
        ratio_s = "-" if ratio is None or math.isnan(ratio) else f"{ratio:.3f}"
        rows.append(
            [
                _cell(rec["key"]),
                _fmt_number(rec["measured"]),
                _fmt_number(rec["paper"]),
                ratio_s,
                _cell(rec["unit"]),
                _cell(rec["source"]),
            ]
        )
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    numeric = {1, 2, 3}

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in numeric else ("-" * (w + 2)) for i, w in enumerate(widths)
        )
        + "|"
    )
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


README_START = "<!-- claims:start -->"
README_END = "<!-- claims:end -->"


def render_readme(readme: str, table: str) -> str:
    """``readme`` with the text between the claims markers replaced by ``table``."""
    if README_START not in readme or README_END not in readme:
        raise ValueError(f"README lacks the markers {README_START} ... {README_END}")
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    return f"{head}{README_START}\n{table}\n{README_END}{tail}"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dosa.claims``: print the claims table."""
    parser = argparse.ArgumentParser(
        prog="python -m dosa.claims", description="Print the measured-vs-paper claims table."
    )
    parser.add_argument("--path", type=Path, default=None, help="claims.json to read")
    parser.add_argument("--update-readme", type=Path, default=None, metavar="README",
                        help="also write the table between the claims markers of README")
    args = parser.parse_args(argv)
    target = args.path if args.path is not None else claims_path()
    df = claims_table(target)
    if df.empty:
        print(f"no claims recorded in {target}", file=sys.stderr)
        return 0
    table = format_claims_table(df)
    print(table)
    if args.update_readme is not None:
        readme = args.update_readme
        atomic_write_text(readme, render_readme(readme.read_text(), table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
