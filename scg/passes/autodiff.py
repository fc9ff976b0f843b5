"""Reverse-mode automatic differentiation on the IR.

``grad`` appends gradient nodes to a derived graph: every derivative is IR, so it
can be printed, simplified, fused and compiled like the model itself. The op
semantics live in `vjp_rules`; this module only walks the graph.
"""

from __future__ import annotations

from collections.abc import Iterable

from scg.errors import GraphError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64
from scg.passes.vjp_rules import Builder, vjp_rules


def _ancestors(root: Node) -> set[int]:
    """ids of ``root`` and everything it depends on (iterative: no recursion limit)."""
    seen = {id(root)}
    stack = [root]
    while stack:
        for x in stack.pop().inputs:
            if id(x) not in seen:
                seen.add(id(x))
                stack.append(x)
    return seen


def _materialise(graph: Graph, node: Node) -> Node:
    """Append ``node`` and its not-yet-appended ancestors to ``graph`` in creation order."""
    pending: dict[int, Node] = {}
    stack = [node]
    while stack:
        n = stack.pop()
        if graph.contains(n) or id(n) in pending:
            continue
        pending[id(n)] = n
        stack.extend(n.inputs)
    for n in sorted(pending.values(), key=lambda n: n.uid):  # uid order is topological
        graph.append(n)
    return node


def _unwrap(x: object) -> object:
    """Accept DSL values (``scg.Value``) where nodes are expected."""
    node = getattr(x, "node", None)
    return node if isinstance(node, Node) else x


def _check(graph: Graph, loss: Node, wrt: list[Node]) -> None:
    for n in [loss, *wrt]:
        if not isinstance(n, Node):
            raise GraphError(f"grad: expected IR nodes or scg values, got {n!r}")
        if not graph.contains(n):
            raise GraphError(f"grad: {n.label()} is not a node of graph {graph.name!r}")
    if loss.shape != () or loss.dtype != F64:
        raise GraphError(
            f"grad: the loss {loss.label()} must be a float64 per-row scalar (or unbatched scalar), "
            f"got {loss.type}; reduce it with .sum() or .mean()")


def grad(graph: Graph, loss: Node, wrt: Iterable[Node], *, note: str | None = None) -> tuple[Graph, list[Node]]:
    """Gradients of ``sum over rows of loss`` with respect to each node of ``wrt``.

    Returns a new graph (``graph``'s nodes, shared, plus gradient nodes; same
    outputs) and one gradient node per ``wrt`` node, of that node's shape and
    batchedness (gradients w.r.t. unbatched nodes are summed over rows). A wrt
    node the loss does not depend on gets zeros. ``graph`` is not modified.
    """
    loss, wrt = _unwrap(loss), [_unwrap(w) for w in wrt]
    _check(graph, loss, wrt)
    out = graph.derive()
    out.outputs = dict(graph.outputs)
    b = Builder(note)

    # the nodes on a path wrt -> loss, in topological order
    wrt_ids = {id(w) for w in wrt}
    upstream = _ancestors(loss)
    relevant: set[int] = set()
    order: list[Node] = []
    for n in graph.nodes:
        if id(n) in upstream and (id(n) in wrt_ids or any(id(x) in relevant for x in n.inputs)):
            relevant.add(id(n))
            order.append(n)

    cot: dict[int, Node] = {}
    if id(loss) in relevant:
        cot[id(loss)] = _materialise(out, b.broadcast(b.const(1.0), (), loss.batched))
    for n in reversed(order):
        g = cot.get(id(n))
        if g is None or not n.inputs:
            continue
        rule = vjp_rules.get(n.op)
        if rule is None:
            raise GraphError(f"grad: no vjp rule for op {n.op.pretty!r} (node {n.label()}); add one to vjp_rules")
        b.origin = n.origin
        cts = rule(b, n, g)
        if len(cts) != len(n.inputs):
            raise GraphError(f"grad: the vjp rule of {n.op.pretty!r} returned {len(cts)} cotangents "
                             f"for {len(n.inputs)} inputs (node {n.label()})")
        for x, c in zip(n.inputs, cts, strict=True):
            if c is None or id(x) not in relevant or x.dtype != F64:
                continue
            c = _materialise(out, b.fit(c, x))
            prev = cot.get(id(x))
            cot[id(x)] = c if prev is None else out.append(b.add(Op.ADD, (prev, c)))

    b.origin = None
    grads = []
    for w in wrt:
        g = cot.get(id(w))
        if g is None or w.dtype != F64:
            g = b.broadcast(b.const(0.0), w.shape, w.batched)
        grads.append(_materialise(out, g))
    return out, grads
