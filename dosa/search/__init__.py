"""Optimizers over hardware and mappings; every method returns a :class:`SearchResult`."""

from dosa.search.result import SearchResult, Trajectory

__all__ = ["SearchResult", "Trajectory"]
