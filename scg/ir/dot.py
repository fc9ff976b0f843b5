"""Graphviz DOT text for a graph (no graphviz needed to produce it).

Shapes follow the SCG paper's convention: stochastic nodes are circles,
deterministic ops boxes, costs diamonds; inputs (rounded boxes), params (grey
boxes), array constants (dashed boxes) and external costs (dashed diamonds) are
distinct. Scalar constants are folded into their users' labels, as in the
printed IR. Node ids are positions (``n0``, ``n1``, ...), so the text is
deterministic; every user string goes through `_quote`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.printer import _inline, assign_names, format_head, site_names

if TYPE_CHECKING:
    from scg.ir.graph import Graph
    from scg.ir.node import Node

_STYLES = {
    Op.COST: "shape=diamond, style=filled, fillcolor=lightyellow",
    Op.EXTERNAL_COST: 'shape=diamond, style="filled,dashed", fillcolor=lightyellow',
    Op.PARAM: "shape=box, style=filled, fillcolor=lightgrey",
    Op.INPUT: "shape=box, style=rounded",
    Op.STATE: "shape=box, style=rounded, color=grey",
    Op.CONST: "shape=box, style=dashed",
}


def _quote(text: str) -> str:
    """A DOT double-quoted string showing ``text`` literally (newlines become label line breaks)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)  # a lone backslash would start a DOT escape like \N or \l
        elif ch in "\r\n":
            out.append("\\n")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(" ")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _style(node: Node) -> str:
    if node.op in STOCHASTIC_OPS:
        return "shape=circle"
    return _STYLES.get(node.op, "shape=box")


def to_dot(graph: Graph) -> str:
    names = assign_names(graph, quote=False)
    sites = site_names(graph, names)
    ids = {id(n): f"n{i}" for i, n in enumerate(graph.nodes)}
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;"]
    for node in graph.nodes:
        if _inline(node):
            continue
        consts = " ".join(names[id(x)] for x in node.inputs if _inline(x))
        label = f"{names[id(node)]}\n{format_head(node, names, sites)}{' ' + consts if consts else ''} {node.type}"
        lines.append(f"  {ids[id(node)]} [label={_quote(label)}, {_style(node)}];")
    for node in graph.nodes:
        for x in node.inputs:
            if not _inline(x):
                lines.append(f"  {ids[id(x)]} -> {ids[id(node)]};")
    lines.append("}")
    return "\n".join(lines) + "\n"
