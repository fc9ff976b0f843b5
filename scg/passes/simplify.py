"""Graph clean-up: dead-code elimination, common-subexpression elimination, folding.

Pure functions ``Graph -> Graph``. Nodes are immutable and shared: a rebuilt graph
reuses every node whose inputs did not change and creates new nodes (re-inferring
types, keeping names, notes and origins) only downstream of a replacement.
Stochastic nodes are never merged or dropped (docs/design.md): each sample
site has its own random stream and is user-visible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import broadcast_shapes

# leaves that define a graph's call signature (or own a random stream): kept and never merged
_SIGNATURE_LEAVES = frozenset({Op.INPUT, Op.PARAM, Op.STATE, Op.EXTERNAL_COST})
_UNMERGEABLE = STOCHASTIC_OPS | _SIGNATURE_LEAVES | {Op.NOISE_NORMAL, Op.COST}

# (node, inputs after replacement, graph being built) -> replacement node, or None to keep the node
Rewrite = Callable[[Node, tuple[Node, ...], Graph], "Node | None"]


def rebuild(graph: Graph, rewrite: Rewrite) -> Graph:
    """Copy ``graph`` applying ``rewrite`` to each node in order; remap outputs.

    A replacement must have the replaced node's exact type (else it is ignored),
    so downstream types never change.
    """
    out = Graph(graph.name)
    repl: dict[int, Node] = {}
    for node in graph.nodes:
        ins = tuple(repl.get(id(x), x) for x in node.inputs)
        new = rewrite(node, ins, out)
        if new is not None and new.type == node.type:
            repl[id(node)] = out.append(new)
        elif any(a is not b for a, b in zip(ins, node.inputs, strict=True)):
            repl[id(node)] = out.add(node.op, ins, dict(node.attrs), name=node.name, origin=node.origin,
                                     note=node.note)
        else:
            out.append(node)
    out.outputs = {k: repl.get(id(v), v) for k, v in graph.outputs.items()}
    return out


# -- DCE ------------------------------------------------------------------------------
def dce(graph: Graph) -> Graph:
    """Drop nodes that no output, stochastic node or signature leaf depends on."""
    roots = list(graph.outputs.values()) + [
        n for n in graph.nodes if n.op in STOCHASTIC_OPS or n.op in _SIGNATURE_LEAVES]
    live = {id(n) for n in roots}
    stack = list(roots)
    while stack:
        for x in stack.pop().inputs:
            if id(x) not in live:
                live.add(id(x))
                stack.append(x)
    out = Graph(graph.name)
    for n in graph.nodes:
        if id(n) in live:
            out.append(n)
    out.outputs = dict(graph.outputs)
    return out


# -- CSE ------------------------------------------------------------------------------
def _key(value: Any) -> Any:
    """A hashable, exact stand-in for an attribute value (ndarrays by dtype, shape and bytes)."""
    if isinstance(value, np.ndarray):
        return ("ndarray", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, float):
        return ("float", np.float64(value).tobytes())  # 0.0 and -0.0 differ; nan equals nan
    hash(value)
    return (type(value).__name__, value)


def _node_key(node: Node, ins: tuple[Node, ...]) -> Any:
    try:
        attrs = tuple(sorted((k, _key(v)) for k, v in node.attrs.items()))
    except TypeError:  # an unhashable attribute: never merge
        return None
    return (node.op, tuple(id(x) for x in ins), attrs)


def cse(graph: Graph) -> Graph:
    """Merge deterministic nodes with equal (op, inputs, attrs); equal constants merge too."""
    table: dict[Any, Node] = {}

    def rewrite(node, ins, out):
        if node.op in _UNMERGEABLE:
            return None
        key = _node_key(node, ins)
        if key is None:
            return None
        if key in table:
            return table[key]
        if all(a is b for a, b in zip(ins, node.inputs, strict=True)):
            table[key] = node
        else:  # rebuild now so the table holds the node that will be in the graph
            table[key] = out.add(node.op, ins, dict(node.attrs), name=node.name, origin=node.origin,
                                 note=node.note)
        return table[key]

    return rebuild(graph, rewrite)


# -- algebraic folding ------------------------------------------------------------------
def _fill(node: Node) -> float | None:
    """The value of a constant whose elements are all equal (looking through broadcasts)."""
    while node.op in (Op.BROADCAST_TO, Op.RESHAPE):
        node = node.inputs[0]
    if node.op is not Op.CONST:
        return None
    value = np.asarray(node.attrs["value"])
    if value.size == 0:
        return None
    first = value.flat[0]
    return float(first) if np.all(value == first) else None


def _first_of_type(node: Node, *candidates: Node | None) -> Node | None:
    return next((c for c in candidates if c is not None and c.type == node.type), None)


def _fold(node: Node, ins: tuple[Node, ...], out: Graph) -> Node | None:
    op = node.op
    if op in (Op.ADD, Op.SUB, Op.MUL, Op.DIV):
        a, b = ins
        fa, fb = _fill(a), _fill(b)
        if op is Op.ADD:
            return _first_of_type(node, b if fa == 0.0 else None, a if fb == 0.0 else None)
        if op is Op.SUB:
            return a if fb == 0.0 else None
        if op is Op.DIV:
            return a if fb == 1.0 else None
        one = _first_of_type(node, b if fa == 1.0 else None, a if fb == 1.0 else None)
        zero = a if fa == 0.0 else b if fb == 0.0 else None
        # x * 0 -> 0 (assumes x finite, as autodiff simplifiers do)
        if one is None and zero is not None and zero.dtype == node.dtype:
            if zero.type == node.type:
                return zero
            return out.add(Op.BROADCAST_TO, (zero,), {"shape": node.shape, "batched": node.batched},
                           origin=node.origin, note=node.note)
        return one
    if op is Op.WHERE and _fill(ins[0]) is not None:
        # where(c, a, b) with a constant, uniform condition picks a branch (HNCA flips of a scalar unit)
        picked = ins[1] if _fill(ins[0]) != 0.0 else ins[2]
        if picked.type == node.type:
            return picked
        if broadcast_shapes(picked.shape, node.shape) == node.shape:
            return out.add(Op.BROADCAST_TO, (picked,), {"shape": node.shape, "batched": node.batched},
                           origin=node.origin, note=node.note)
        return None
    if op in (Op.NEG, Op.STOP_GRADIENT) and ins[0].op is op:
        return ins[0].inputs[0] if op is Op.NEG else ins[0]
    if op in (Op.BROADCAST_TO, Op.UNBROADCAST, Op.RESHAPE) and ins[0].type == node.type:
        return ins[0]
    return None


def fold(graph: Graph) -> Graph:
    """Algebraic identities: x+0, x-0, x*1, x/1, x*0, where(const, a, b), neg(neg x), sg(sg x),
    no-op reshapes/broadcasts.

    A rewrite applies only where the result has the node's exact type (so
    ``x + 0`` that broadcasts ``x`` stays).
    """
    return rebuild(graph, _fold)


def simplify(graph: Graph, max_rounds: int = 8) -> Graph:
    """fold + cse + dce until the graph stops shrinking."""
    for _ in range(max_rounds):
        size = len(graph)
        graph = dce(cse(fold(graph)))
        if len(graph) == size:
            break
    return graph
