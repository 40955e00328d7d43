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
import re
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
    "runs_dir",
    "display_path",
    "compare_claims",
    "claim",
    "claims_path",
    "claims_table",
    "format_claims_table",
    "load_claims",
    "main",
    "update_claims",
]

ARTIFACTS_DIR_ENV = "DOSA_ARTIFACTS_DIR"
RUNS_DIR_ENV = "DOSA_RUNS_DIR"
CLAIMS_FILE = "claims.json"
FIELDS = ("measured", "paper", "unit", "source")
#: Optional field: False for timings (shown when they drift, never flagged).
OPTIONAL_FIELDS = ("deterministic",)
TABLE_COLUMNS = ["key", "measured", "paper", "ratio", "unit", "source"]


def repo_root() -> Path | None:
    """The source checkout this package is imported from (None for a non-editable install)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def artifacts_dir() -> Path:
    """The artifacts folder: ``$DOSA_ARTIFACTS_DIR``, else the checkout's ``artifacts/``.

    It never depends on the current folder when the package comes from a checkout, so a
    notebook run from ``notebooks/`` and a CLI call from anywhere find the same files (e.g. the
    trained predictors). Outside a checkout it falls back to ``./artifacts``.
    """
    env = os.environ.get(ARTIFACTS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    if root is not None:
        return root / "artifacts"
    logger.warning("dosa is not imported from a checkout; using %s/artifacts", Path.cwd())
    return Path.cwd() / "artifacts"


def runs_dir() -> Path:
    """The run cache: ``$DOSA_RUNS_DIR``, else ``build/runs`` of the checkout.

    It is never in git, so ``make reproduce`` on a fresh clone recomputes every search, while
    notebooks of one reproduce (and a resumed one) share runs whose keys match exactly.
    """
    env = os.environ.get(RUNS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "build" / "runs"


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the checkout (or the artifacts folder's parent), for printing
    and for committed files: never a machine-specific absolute path."""
    p = Path(path).resolve()
    for base in (repo_root(), artifacts_dir().resolve().parent):
        if base is not None:
            try:
                return p.relative_to(base.resolve()).as_posix()
            except ValueError:
                continue
    return p.name


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
    extra = sorted(set(entry) - set(FIELDS) - set(OPTIONAL_FIELDS))
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
    deterministic = entry.get("deterministic", True)
    if not isinstance(deterministic, bool):
        raise ValueError(f"claim {key!r}: deterministic must be true or false, "
                         f"got {deterministic!r}")
    out = {
        "measured": float(measured),
        "paper": None if paper is None else float(paper),
        "unit": entry["unit"],
        "source": entry["source"],
    }
    if not deterministic:
        out["deterministic"] = False
    return out


def claim(measured: float, paper: float | None, unit: str, source: str, *,
          deterministic: bool = True) -> dict[str, Any]:
    """Build one validated claim entry (``measured`` vs. the ``paper`` value, if any).

    ``deterministic=False`` marks numbers that legitimately vary between runs (timings): the
    reproduce report shows their drift but does not flag it.
    """
    entry = {"measured": measured, "paper": paper, "unit": unit, "source": source,
             "deterministic": deterministic}
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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text ({exc.reason})") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from exc
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
    """All claims in the file (empty when it does not exist yet), each entry validated, so a
    malformed file fails with a message naming the file and the key."""
    target = Path(path) if path is not None else claims_path()
    data = _read(target)
    try:
        return {key: _validate(key, entry) for key, entry in data.items()}
    except ValueError as err:
        raise ValueError(f"{target}: {err}") from None


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


#: Relative difference above which a deterministic claim counts as changed.
DRIFT_TOLERANCE = 1e-9


def compare_claims(reference: Mapping[str, Mapping[str, Any]],
                   current: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """Committed (``reference``) vs reproduced (``current``) claims, one row per key.

    ``status`` is ``same``, ``CHANGED`` (a deterministic claim moved by more than
    DRIFT_TOLERANCE), ``timing`` (a non-deterministic claim, also one not reproduced here:
    shown, never flagged), ``new`` (not in the reference) or ``MISSING`` (a deterministic claim
    not reproduced).
    """
    rows = []
    for key in sorted(set(reference) | set(current)):
        ref, cur = reference.get(key), current.get(key)
        old = None if ref is None else float(ref["measured"])
        new = None if cur is None else float(cur["measured"])
        entry = cur if cur is not None else ref
        assert entry is not None
        paper = entry.get("paper")
        drift = math.nan if old is None or new is None or old == 0 else new / old - 1
        if cur is None and not entry.get("deterministic", True):
            status = "timing"  # a timing this machine could not take (e.g. no C++ compiler)
        elif cur is None:
            status = "MISSING"
        elif ref is None:
            status = "new"
        elif not entry.get("deterministic", True):
            status = "timing"
        elif old == new or abs(drift) <= DRIFT_TOLERANCE:
            status = "same"
        else:
            status = "CHANGED"
        rows.append({"key": key, "committed": old, "reproduced": new,
                     "paper": math.nan if paper is None else float(paper),
                     "drift": drift, "status": status})
    return pd.DataFrame(rows, columns=["key", "committed", "reproduced", "paper", "drift",
                                       "status"])


def format_comparison(df: pd.DataFrame) -> str:
    """The comparison as a plain-text table (numbers as in the claims table)."""
    header = ["key", "committed", "reproduced", "paper", "drift", "status"]
    body = [[str(r["key"]), _fmt_number(r["committed"]), _fmt_number(r["reproduced"]),
             _fmt_number(r["paper"]),
             "-" if math.isnan(r["drift"]) else f"{r['drift']:+.2e}", str(r["status"])]
            for r in df.to_dict("records")]
    widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(header)]
    lines = ["  ".join(c.ljust(w) if i in (0, 5) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *body]]
    return "\n".join(lines)


README_START = "<!-- claims:start -->"
README_END = "<!-- claims:end -->"


#: An inline number in README prose: <!--claim:KEY:FORMAT-->value<!--/claim-->.
CLAIM_SPAN = re.compile(r"<!--claim:([^:>]+):([^>]*)-->(.*?)<!--/claim-->")


def render_readme(readme: str, table: str,
                  claims: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """``readme`` with the claims table between the markers replaced by ``table`` and every
    inline claim span re-rendered from ``claims`` (so prose cannot contradict the artifacts).

    A span naming a key that ``claims`` lacks is an error, not a silently stale number.
    """
    if README_START not in readme or README_END not in readme:
        raise ValueError(f"README lacks the markers {README_START} ... {README_END}")
    head, rest = readme.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    text = f"{head}{README_START}\n{table}\n{README_END}{tail}"
    if claims is None:
        return text

    def fill(match: re.Match[str]) -> str:
        key, fmt = match.group(1), match.group(2)
        if key not in claims:
            raise ValueError(f"README cites claim {key!r}, which claims.json does not hold")
        value = format(float(claims[key]["measured"]), fmt)
        return f"<!--claim:{key}:{fmt}-->{value}<!--/claim-->"

    return CLAIM_SPAN.sub(fill, text)


def readme_claim_values(readme: str) -> list[tuple[str, str, str]]:
    """(key, format, shown value) of every inline claim span of ``readme``."""
    return CLAIM_SPAN.findall(readme)


def main(argv: Sequence[str] | None = None, prog: str = "python -m dosa.claims") -> int:
    """``python -m dosa.claims``: print the claims table.

    A missing default claims.json just means nothing was measured yet (exit 0), but a
    ``--path`` the user named must exist: a typo there must not look like an empty table.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description="Print the measured-vs-paper claims table."
    )
    parser.add_argument("--path", type=Path, default=None, help="claims.json to read")
    parser.add_argument("--update-readme", type=Path, default=None, metavar="README",
                        help="also write the table between the claims markers of README")
    args = parser.parse_args(argv)
    if args.path is not None and not args.path.is_file():
        problem = "is a directory" if args.path.is_dir() else "does not exist"
        print(f"{prog}: error: --path {str(args.path)!r} {problem}; expected a claims.json "
              f"file", file=sys.stderr)
        return 2
    target = args.path if args.path is not None else claims_path()
    try:
        df = claims_table(target)
    except ValueError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if df.empty:
        print(f"no claims recorded in {target}", file=sys.stderr)
        return 0
    table = format_claims_table(df)
    print(table)
    if args.update_readme is not None:
        readme = args.update_readme
        atomic_write_text(readme, render_readme(readme.read_text(), table,
                                                load_claims(target)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
