"""Graphviz DOT text for a graph (no graphviz needed to produce it).

Shapes follow the SCG paper's convention: stochastic nodes are circles,
deterministic ops boxes, costs diamonds; inputs (rounded boxes) and params
(grey boxes) are distinct.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.printer import _inline, assign_names

if TYPE_CHECKING:
    from scg.ir.graph import Graph
    from scg.ir.node import Node


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _style(node: Node) -> str:
    if node.op in STOCHASTIC_OPS:
        return "shape=circle"
    if node.op in (Op.COST, Op.EXTERNAL_COST):
        return "shape=diamond, style=filled, fillcolor=lightyellow"
    if node.op is Op.PARAM:
        return "shape=box, style=filled, fillcolor=lightgrey"
    if node.op is Op.INPUT:
        return "shape=box, style=rounded"
    return "shape=box"


def to_dot(graph: Graph) -> str:
    names = assign_names(graph)
    ids = {id(n): f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;"]
    for node in graph.nodes:
        if _inline(node):
            continue
        label = f"{names[id(node)]}\n{node.op.pretty} {node.type}"
        lines.append(f"  {ids[id(node)]} [label={_quote(label)}, {_style(node)}];")
    for node in graph.nodes:
        for x in node.inputs:
            if _inline(x):
                continue
            lines.append(f"  {ids[id(x)]} -> {ids[id(node)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
