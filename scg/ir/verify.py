"""Declarative IR verifier: a list of named checks run over every node.

With ``SCG_CHECKS=1`` (always on in tests) pipelines verify after each stage.
A failure raises :class:`GraphError` naming the node, showing the printed
window of IR around it (the node's line marked ``-->``) and the user's source
line that created it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scg.errors import GraphError
from scg.ir.infer import infer_type
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.printer import assign_names, format_node, site_names

if TYPE_CHECKING:
    from scg.ir.graph import Graph
    from scg.ir.node import Node

# ops whose name is part of the graph's namespace (mirrors scg.ir.graph.NAMED_OPS)
_NAMED = frozenset({Op.INPUT, Op.PARAM, Op.COST, Op.EXTERNAL_COST}) | STOCHASTIC_OPS
# leaves the graph's role views (inputs, params, costs) key by name: a name is mandatory
_MUST_NAME = frozenset({Op.INPUT, Op.PARAM, Op.COST, Op.EXTERNAL_COST})


def checks_enabled() -> bool:
    return os.environ.get("SCG_CHECKS", "") not in ("", "0")


def window(graph: Graph, node: Node, radius: int = 3) -> str:
    """The printed IR lines around ``node``, with the node's line marked ``-->``."""
    names = assign_names(graph)
    sites = site_names(graph, names)
    try:
        at = next(i for i, n in enumerate(graph.nodes) if n is node)
    except StopIteration:
        return f"--> {node!r} (not in graph)"
    lo, hi = max(0, at - radius), min(len(graph.nodes), at + radius + 1)
    out = []
    for i in range(lo, hi):
        text = format_node(graph.nodes[i], names, sites)
        out.append(("--> " if i == at else "    ") + text)
    return "\n".join(out)


def node_error(graph: Graph, node: Node, message: str) -> GraphError:
    where = f"\n  created at {node.origin}" if node.origin else ""
    return GraphError(f"{node.label()}: {message}{where}\n{window(graph, node)}")


@dataclass
class _Seen:
    """What the walk has met so far (the checks read it; `verify` updates it)."""

    nodes: set[int] = field(default_factory=set)
    sites: dict[object, Node] = field(default_factory=dict)
    names: dict[str, Node] = field(default_factory=dict)


def _check_once(node: Node, seen: _Seen) -> str | None:
    if id(node) in seen.nodes:
        return "appears twice in the node list"
    return None


def _check_topological(node: Node, seen: _Seen) -> str | None:
    for x in node.inputs:
        if id(x) not in seen.nodes:
            return f"uses {x.label()}, which is not defined before it"
    return None


def _check_type(node: Node, seen: _Seen) -> str | None:
    try:
        typ = infer_type(node.op, tuple(x.type for x in node.inputs), node.attrs)
    except (GraphError, KeyError) as e:  # KeyError: a required attribute is missing
        return f"type inference fails: {e}"
    if typ != node.type:
        return f"stored type {node.type} differs from inferred type {typ}"
    return None


def _check_name(node: Node, seen: _Seen) -> str | None:
    if node.op in _MUST_NAME and not node.name:
        return f"a {node.op.pretty} node needs a name"
    if node.op in _NAMED and node.name is not None and node.name in seen.names:
        return f"name {node.name!r} is used twice (first by a {seen.names[node.name].op.pretty} node)"
    return None


def _check_site(node: Node, seen: _Seen) -> str | None:
    if node.op not in STOCHASTIC_OPS and node.op not in (Op.NOISE_NORMAL, Op.NOISE_UNIFORM):
        return None
    site = node.attrs.get("site")
    if not isinstance(site, int) or isinstance(site, bool):
        return f"a {node.op.pretty} node needs an int `site` attribute (its random stream), got {site!r}"
    # a coupled copy (ARM/DisARM re-evaluation) re-samples its original's site from the same noise
    if node.op in STOCHASTIC_OPS and site in seen.sites and not node.attrs.get("coupled"):
        return f"shares random site {site} with {seen.sites[site].label()}; every sample site must be unique"
    return None


CHECKS: list[tuple[str, Callable[[Node, _Seen], str | None]]] = [
    ("listed once", _check_once),
    ("topological order", _check_topological),
    ("type", _check_type),
    ("unique names", _check_name),
    ("random sites", _check_site),
]


def verify(graph: Graph) -> Graph:
    """Run every check; return the graph unchanged or raise GraphError."""
    seen = _Seen()
    for node in graph.nodes:
        for what, check in CHECKS:
            problem = check(node, seen)
            if problem:
                raise node_error(graph, node, f"{problem} [check: {what}]")
        seen.nodes.add(id(node))
        if node.op in STOCHASTIC_OPS and not node.attrs.get("coupled"):
            seen.sites[node.attrs["site"]] = node
        if node.op in _NAMED and node.name is not None:
            seen.names[node.name] = node
    for out_name, node in graph.outputs.items():
        if id(node) not in seen.nodes:
            raise GraphError(
                f"output {out_name!r} of graph {graph.name!r} is {node.label()}, which is not a node of the graph")
    return graph


def maybe_verify(graph: Graph, stage: str) -> Graph:
    """Verify when SCG_CHECKS is on; print the IR after a stage named in SCG_DUMP.

    ``SCG_DUMP`` is a comma-separated list of ``after:<stage>`` (or bare stage
    names); ``all`` dumps after every stage.
    """
    if checks_enabled():
        try:
            verify(graph)
        except GraphError as e:
            raise GraphError(f"after stage {stage!r}: {e}") from None
    wanted = {d.strip().removeprefix("after:") for d in os.environ.get("SCG_DUMP", "").split(",")}
    if stage in wanted or "all" in wanted:
        print(f"# --- IR after {stage} ---\n{graph}")
    return graph
