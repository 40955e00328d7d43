"""DOSA: differentiable model-based one-loop search for DNN accelerators.

A clean-room reimplementation of Hong et al., MICRO 2023. The package is organised by the
paper's vocabulary: ``workload`` (layers, networks), ``hardware`` (the Gemmini-TL template),
``mapping`` (loop nests), ``model`` (the differentiable analytical model), ``search`` (DOSA
gradient search and baselines), ``learned`` (RTL latency predictors).

The main entry points are importable from the package itself (``dosa.dosa_search``,
``dosa.load_network``, ...). They are resolved lazily on first use, so ``import dosa`` stays
fast and does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "Layer": "dosa.workload",
    "Network": "dosa.workload",
    "load_network": "dosa.workload",
    "from_torch": "dosa.workload",
    "Hardware": "dosa.hardware",
    "Mapping": "dosa.mapping",
    "parse_mapping": "dosa.mapping",
    "evaluate_frame": "dosa.evaluation",
    "score_network": "dosa.evaluation",
    "DosaConfig": "dosa.search.dosa_gd",
    "dosa_search": "dosa.search.dosa_gd",
    "random_search": "dosa.search.random_search",
    "bayes_search": "dosa.search.bayes",
    "SearchResult": "dosa.search.result",
}

__all__ = [
    "DosaConfig",
    "Hardware",
    "Layer",
    "Mapping",
    "Network",
    "SearchResult",
    "__version__",
    "bayes_search",
    "dosa_search",
    "evaluate_frame",
    "from_torch",
    "load_network",
    "parse_mapping",
    "random_search",
    "score_network",
]

if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from dosa.evaluation import evaluate_frame, score_network
    from dosa.hardware import Hardware
    from dosa.mapping import Mapping, parse_mapping
    from dosa.search.bayes import bayes_search
    from dosa.search.dosa_gd import DosaConfig, dosa_search
    from dosa.search.random_search import random_search
    from dosa.search.result import SearchResult
    from dosa.workload import Layer, Network, load_network


def __getattr__(name: str) -> Any:
    """Import a public name's module on first access (PEP 562) and cache the object."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dosa' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
