"""Checks shared by the tests of the search methods."""

from __future__ import annotations

from typing import Any

from dosa.evaluation import score_network
from dosa.hardware import Hardware
from dosa.search.options import HardwareBounds
from dosa.search.result import SearchResult
from dosa.workload import Network


def tried_hardware(res: SearchResult) -> list[Hardware]:
    """The hardware a baseline evaluated (its ``extra["hardware_tried"]`` records)."""
    return [Hardware(h["pe_dim"], h["sp_kb"], h["acc_kb"]) for h in res.extra["hardware_tried"]]


def check_bounded(res: SearchResult, bounds: dict[str, Any], network: Network,
                  tried: int) -> None:
    """Every tried and the chosen hardware honour ``bounds``; config and EDP are exact."""
    check = HardwareBounds(**bounds)
    hws = tried_hardware(res)
    assert len(hws) == tried and all(check.feasible(h) for h in hws)
    assert check.feasible(res.hardware)
    if "max_area_mm2" in bounds:
        assert res.area_mm2 <= bounds["max_area_mm2"]
    assert {k: res.config[k] for k in check.to_dict()} == check.to_dict()
    assert res.edp == score_network(network, res.mappings, res.hardware).edp
