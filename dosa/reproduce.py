"""The end of ``make reproduce``: committed vs reproduced vs paper, for every claim.

``make reproduce`` snapshots the committed ``artifacts/claims.json`` (``git show HEAD:...``)
before it starts, recomputes everything, and then calls ``python -m dosa.reproduce``:

* ``--started EPOCH`` records the wall time of the whole reproduce as the (timing) claim
  ``bench.reproduce_min``, so the README's statement of it is measured, not typed;
* ``--reference FILE`` prints one row per claim — committed value, reproduced value, the
  paper's value, the relative drift — and flags every deterministic claim (same seed, same
  code ⇒ same number) that changed. Timings are shown, never flagged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dosa.claims import (
    claim,
    claims_path,
    compare_claims,
    format_comparison,
    load_claims,
    update_claims,
)

SOURCE = "Makefile (make reproduce)"


def record_wall_time(started: float, now: float | None = None) -> float:
    """Store the minutes since ``started`` (a Unix time) as the claim ``bench.reproduce_min``."""
    minutes = ((time.time() if now is None else now) - started) / 60
    if not minutes > 0:
        raise ValueError(f"--started {started} lies in the future")
    update_claims({"bench.reproduce_min": claim(minutes, None, "min (2-core machine)", SOURCE,
                                               deterministic=False)})
    return minutes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dosa.reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path,
                        help="the committed claims.json to compare with")
    parser.add_argument("--started", type=float, help="Unix time the reproduce started")
    args = parser.parse_args(argv)
    if args.started is not None:
        try:
            minutes = record_wall_time(args.started)
        except ValueError as err:
            print(f"python -m dosa.reproduce: error: {err}", file=sys.stderr)
            return 2
        print(f"make reproduce took {minutes:.1f} min")
    if args.reference is None:
        return 0
    if not args.reference.is_file():
        print(f"python -m dosa.reproduce: error: --reference {args.reference} does not exist",
              file=sys.stderr)
        return 2
    reference = json.loads(args.reference.read_text(encoding="utf-8"))
    table = compare_claims(reference, load_claims(claims_path()))
    print(format_comparison(table))
    counts = table["status"].value_counts().to_dict()
    print("\n" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    changed = table.loc[table["status"].isin(["CHANGED", "MISSING"]), "key"].tolist()
    if changed:
        print(f"FLAGGED: {len(changed)} deterministic claim(s) differ from the committed "
              f"reference: {', '.join(changed)}")
    else:
        print("every deterministic claim equals the committed reference")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
