"""A pipeline is straight-line code: named stages, the verifier after each one."""

from __future__ import annotations

from collections.abc import Callable

from scg.ir.graph import Graph
from scg.ir.verify import maybe_verify

Stage = tuple[str, Callable[[Graph], Graph]]


def run_pipeline(graph: Graph, stages: list[Stage]) -> Graph:
    """Apply each stage in order; with SCG_CHECKS=1 verify (and with SCG_DUMP print) after each."""
    for name, stage in stages:
        graph = maybe_verify(stage(graph), name)
    return graph
