"""Human-readable IR text, in the spirit of JAX's jaxpr.

Deterministic (creation order, stable names), typed, and using the user's names::

    graph bandit(x:f64[B,784], y:i64[B]; W1:f64[784,200], b1:f64[200]) {
      t0:f64[B,200] = matmul x W1
      t1:f64[B,200] = add t0 b1
      h1:f64[B,200] ~ bernoulli[site=h1] t1
      ...
      return neg_reward, sparsity
    }

Stochastic bindings use ``~``; scalar constants print inline; a node's ``note``
prints as a trailing ``# ...`` comment (provenance of derived terms). Per-op
attribute formatting lives in `pp_rules`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from scg.ir.ops import STOCHASTIC_OPS, Op

if TYPE_CHECKING:
    from scg.ir.graph import Graph
    from scg.ir.node import Node

_HIDDEN_ATTRS = {"dtype", "shape", "batched", "value", "site", "name"}


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_fmt_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return str(v)


def _default_attrs(node: Node, names: dict[int, str]) -> list[str]:
    out = []
    for k, v in sorted(node.attrs.items()):
        if k in _HIDDEN_ATTRS or v is False or v is None:
            continue
        out.append(k if v is True else f"{k}={_fmt_value(v)}")
    return out


def _shape_attrs(node: Node, names: dict[int, str]) -> list[str]:
    return [f"shape={_fmt_value(tuple(node.attrs['shape']))}"] + (
        ["batched"] if node.attrs.get("batched") else [])


def _site_attrs(site_names: dict[int, str]) -> Callable[[Node, dict[int, str]], list[str]]:
    def rule(node: Node, names: dict[int, str]) -> list[str]:
        site = node.attrs["site"]
        return [f"site={site_names.get(site, site)}"] + _default_attrs(node, names)
    return rule


pp_rules: dict[Op, Callable[[Node, dict[int, str]], list[str]]] = {
    Op.RESHAPE: _shape_attrs,
    Op.BROADCAST_TO: _shape_attrs,
    Op.UNBROADCAST: _shape_attrs,
}


def format_const(node: Node) -> str:
    """Inline text of a constant: ``0.01`` for scalars, a summary for arrays."""
    value = np.asarray(node.attrs["value"])
    if value.ndim == 0:
        v = value.item()
        return repr(float(v)) if node.dtype == "f64" else str(int(v))
    if value.size <= 4:
        return "[" + ",".join(f"{x:g}" for x in value.ravel()) + "]"
    return f"const{node.type}"


def _inline(node: Node) -> bool:
    return node.op is Op.CONST and np.asarray(node.attrs["value"]).ndim == 0


def assign_names(graph: Graph) -> dict[int, str]:
    """Unique display names: user names first, ``t<i>`` for the rest."""
    names: dict[int, str] = {}
    used: set[str] = set()
    counter = 0
    for node in graph.nodes:
        if _inline(node):
            names[id(node)] = format_const(node)
            continue
        base = node.name
        if base is None:
            while f"t{counter}" in used:
                counter += 1
            base = f"t{counter}"
            counter += 1
        name, k = base, 1
        while name in used:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names[id(node)] = name
    return names


def format_node(node: Node, names: dict[int, str], site_names: dict[int, str]) -> str:
    rule = pp_rules.get(node.op)
    if node.op in STOCHASTIC_OPS or node.op is Op.NOISE_NORMAL:
        attrs = _site_attrs(site_names)(node, names)
    elif rule is not None:
        attrs = rule(node, names)
    else:
        attrs = _default_attrs(node, names)
    head = node.op.pretty + (f"[{', '.join(attrs)}]" if attrs else "")
    if node.op is Op.CONST:
        head = format_const(node)
    args = " ".join(names[id(x)] for x in node.inputs)
    bind = "~" if node.op in STOCHASTIC_OPS else "="
    line = f"{names[id(node)]}:{node.type} {bind} {head}" + (f" {args}" if args else "")
    if node.note:
        line += f"  # {node.note}"
    return line


def format_graph(graph: Graph, *, notes: bool = True) -> str:
    names = assign_names(graph)
    site_names = {n.attrs["site"]: n.name for n in graph.nodes if n.op in STOCHASTIC_OPS and n.name}
    ins = [n for n in graph.nodes if n.op in (Op.INPUT, Op.STATE)]
    params = [n for n in graph.nodes if n.op is Op.PARAM]
    sig = ", ".join(f"{names[id(n)]}:{n.type}" for n in ins)
    psig = ", ".join(f"{names[id(n)]}:{n.type}" for n in params)
    lines = [f"graph {graph.name}({sig}{'; ' + psig if psig else ''}) {{"]
    for node in graph.nodes:
        if node.op in (Op.INPUT, Op.PARAM, Op.STATE) or _inline(node):
            continue
        text = format_node(node, names, site_names)
        if not notes and "  # " in text:
            text = text.split("  # ")[0]
        lines.append("  " + text)
    outs = graph.outputs
    if outs:
        parts = [k if names[id(v)] == k else f"{k}={names[id(v)]}" for k, v in outs.items()]
        lines.append("  return " + ", ".join(parts))
    lines.append("}")
    return "\n".join(lines)
