"""Human-readable IR text, in the spirit of JAX's jaxpr.

Deterministic (creation order, stable names, no ids or addresses), typed, and
using the user's names::

    graph bandit(x:f64[B,784], y:i64[B]; W1:f64[784,200], b1:f64[200]) {
      t0:f64[B,200] = matmul x W1
      t1:f64[B,200] = add t0 b1
      h1:f64[B,200] ~ bernoulli[site=h1] t1
      t6:f64[B] = sum[axis=0] h1
      ...
      return neg_reward, sparsity
    }

The signature lists inputs, then ``;`` and parameters. Stochastic bindings use
``~``; scalar constants print inline, array constants as ``const [...]``
bindings; a node's ``note`` prints as a ``# ...`` comment line above the run of
consecutive nodes that share it (provenance
of derived terms). User names always win: generated ``t<i>`` names skip them,
and a name that is not identifier-like prints quoted (``"a b"``). Per-op
attribute formatting lives in `pp_rules`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from scg.ir.ops import STOCHASTIC_OPS, Op

if TYPE_CHECKING:
    from scg.ir.graph import Graph
    from scg.ir.node import Node

_HIDDEN_ATTRS = {"dtype", "shape", "batched", "value", "site", "name"}
# bare names: identifier-like, may contain . / - (e.g. "layer1/W"); never starting with a digit or sign
# (nor nan/inf), so they cannot be mistaken for inline constants
_SIMPLE_NAME = re.compile(r"(?!\d)[\w./-]+\Z")
_ARRAY_INLINE_MAX = 8  # array constants up to this size print in full

PpRule = Callable[["Node", dict[int, str]], list[str]]


def display_name(name: str) -> str:
    """A user name as it appears in IR text: bare when identifier-like, else JSON-quoted."""
    if _SIMPLE_NAME.match(name) and not name.startswith("-") and name not in ("nan", "inf"):
        return name
    quoted = json.dumps(name, ensure_ascii=False)
    # json leaves e.g. U+0085 and U+2028 raw, and str.splitlines breaks lines on them
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in quoted)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (tuple, list)):
        return "(" + ",".join(_fmt_value(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, str):
        return display_name(v)
    return str(v)


def _default_attrs(node: Node, names: dict[int, str], skip: tuple[str, ...] = ()) -> list[str]:
    out = []
    for k, v in sorted(node.attrs.items()):
        if k in _HIDDEN_ATTRS or k in skip or v is False or v is None:
            continue
        out.append(k if v is True else f"{k}={_fmt_value(v)}")
    return out


def _shape_attrs(node: Node, names: dict[int, str]) -> list[str]:
    return [f"shape={_fmt_value(tuple(node.attrs['shape']))}"] + (
        ["batched"] if node.attrs.get("batched") else [])


def _reduce_attrs(node: Node, names: dict[int, str]) -> list[str]:
    # `sum[axis=0]` reads better than `sum[axes=(0,)]`; several axes keep the tuple
    if "axes" not in node.attrs:  # malformed (the verifier reports it); print what is there
        return _default_attrs(node, names)
    axes = tuple(node.attrs["axes"])
    head = f"axis={axes[0]}" if len(axes) == 1 else f"axes={_fmt_value(axes)}"
    keep = ["keepdims"] if node.attrs.get("keepdims") else []
    return [head, *keep, *_default_attrs(node, names, skip=("axes", "keepdims"))]


def _site_attrs(site_names: dict[int, str]) -> PpRule:
    def rule(node: Node, names: dict[int, str]) -> list[str]:
        site = node.attrs.get("site")
        return [f"site={site_names.get(site, site)}"] + _default_attrs(node, names)
    return rule


pp_rules: dict[Op, PpRule] = {
    Op.RESHAPE: _shape_attrs,
    Op.BROADCAST_TO: _shape_attrs,
    Op.UNBROADCAST: _shape_attrs,
    Op.SUM: _reduce_attrs,
    Op.MEAN: _reduce_attrs,
    Op.LOGSUMEXP: _reduce_attrs,
}


def _fmt_elem(x: Any, integer: bool) -> str:
    if integer:
        return str(int(x))
    text = repr(float(x))
    return text if len(text) <= 10 else f"{float(x):.6g}"  # arrays are summaries; scalars stay exact


def _nested(value: np.ndarray, integer: bool) -> str:
    if value.ndim == 1:
        return "[" + ",".join(_fmt_elem(x, integer) for x in value) + "]"
    return "[" + ",".join(_nested(row, integer) for row in value) + "]"


def format_const(node: Node) -> str:
    """Text of a constant: ``0.01`` inline for scalars; ``const [...]`` for arrays (long ones elided)."""
    value = np.asarray(node.attrs["value"])
    integer = node.dtype != "f64"
    if value.ndim == 0:
        v = value.item()
        return repr(float(v)) if not integer else str(int(v))
    if value.size <= _ARRAY_INLINE_MAX:
        return "const " + _nested(value, integer)
    head = ",".join(_fmt_elem(x, integer) for x in value.ravel()[:4])
    return f"const [{head},...]"


def _inline(node: Node) -> bool:
    return node.op is Op.CONST and np.asarray(node.attrs["value"]).ndim == 0


def assign_names(graph: Graph, *, quote: bool = True) -> dict[int, str]:
    """Unique display names keyed by ``id(node)``.

    User names are reserved first, so a user name like ``t0`` keeps its name and
    generated ``t<i>`` names skip it; a repeated name hint gets ``_1``, ``_2``.
    ``quote=False`` gives the raw names (for DOT labels, which escape on their own).
    """
    reserved = {n.name for n in graph.nodes if n.name is not None and not _inline(n)}
    names: dict[int, str] = {}
    used: set[str] = set()
    counter = 0
    for node in graph.nodes:
        if id(node) in names:
            continue
        if _inline(node):
            names[id(node)] = format_const(node)
            continue
        if node.name is None:
            while f"t{counter}" in used or f"t{counter}" in reserved:
                counter += 1
            name = f"t{counter}"
            counter += 1
        else:
            name, k = node.name, 1
            while name in used or (name != node.name and name in reserved):
                name = f"{node.name}_{k}"
                k += 1
        used.add(name)
        names[id(node)] = display_name(name) if quote else name
    return names


def site_names(graph: Graph, names: dict[int, str]) -> dict[int, str]:
    """Random site number -> display name of the stochastic node that owns it."""
    return {n.attrs["site"]: names[id(n)] for n in graph.nodes
            if n.op in STOCHASTIC_OPS and "site" in n.attrs and not n.attrs.get("coupled")}


def format_head(node: Node, names: dict[int, str], sites: dict[int, str]) -> str:
    """The op with its attributes, e.g. ``bernoulli[site=h1]``, ``sum[axis=0]``, ``const [1.0,2.0]``."""
    if node.op is Op.CONST:
        return format_const(node)
    if node.op in STOCHASTIC_OPS or node.op in (Op.NOISE_NORMAL, Op.NOISE_UNIFORM):
        attrs = _site_attrs(sites)(node, names)
    else:
        attrs = pp_rules.get(node.op, _default_attrs)(node, names)
    return node.op.pretty + (f"[{', '.join(attrs)}]" if attrs else "")


def format_node(node: Node, names: dict[int, str], sites: dict[int, str], *, notes: bool = True) -> str:
    """One binding line (without indentation), e.g. ``h1:f64[B,200] ~ bernoulli[site=h1] t1``."""
    head = format_head(node, names, sites)
    args = " ".join(names.get(id(x), f"<undefined {x.label()}>") for x in node.inputs)
    bind = "~" if node.op in STOCHASTIC_OPS else "="
    line = f"{names[id(node)]}:{node.type} {bind} {head}" + (f" {args}" if args else "")
    if notes and node.note:
        line += "  # " + " ".join(node.note.split())  # one line, whatever the note holds
    return line


def format_graph(graph: Graph, *, notes: bool = True) -> str:
    """The whole graph as text; ``str(graph)`` calls this."""
    names = assign_names(graph)
    sites = site_names(graph, names)
    ins = [n for n in graph.nodes if n.op in (Op.INPUT, Op.STATE)]
    params = [n for n in graph.nodes if n.op is Op.PARAM]
    sig = ", ".join(f"{names[id(n)]}:{n.type}" for n in ins)
    psig = ", ".join(f"{names[id(n)]}:{n.type}" for n in params)
    lines = [f"graph {display_name(graph.name)}({sig}{'; ' + psig if psig else ''}) {{"]
    current = None  # consecutive nodes with one provenance note share one comment line above them
    for node in graph.nodes:
        if node.op in (Op.INPUT, Op.PARAM, Op.STATE) or _inline(node):
            continue
        note = " ".join(node.note.split()) if notes and node.note else None
        if note is not None and note != current:  # an un-noted node (a constant) keeps the group open
            lines.append("  # " + note)
            current = note
        lines.append("  " + format_node(node, names, sites, notes=False))
    if graph.outputs:
        parts = []
        for key, node in graph.outputs.items():
            shown, value = display_name(key), names.get(id(node), f"<not in graph: {node.label()}>")
            parts.append(shown if shown == value else f"{shown}={value}")
        lines.append("  return " + ", ".join(parts))
    lines.append("}")
    return "\n".join(lines)
