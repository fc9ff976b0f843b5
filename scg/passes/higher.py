"""Second-order autodiff of IR: Hessian-vector products and Hessian blocks, as IR.

Both are reverse-over-reverse: ``grad`` (`scg.passes.autodiff`) applied to a graph
that already holds gradient nodes. Nothing is special-cased: the gradient nodes
are ordinary IR (their ops have VJP rules too, `vjp_rules` and `vjp_credit`), and
``stop_gradient`` has a zero derivative at every order, which is exactly what
DiCE's ``magic(x) = exp(x - sg(x))`` (Foerster et al. 2018, sec. 3) relies on.

* ``hvp``: ``(H v)_q = d/dq sum_p <g_p, v_p>`` with ``g_p = dL/dp``: one extra
  reverse pass, memory and time a small multiple of the gradient's, whatever the
  parameter size.
* ``hessian``: every block ``H[p, q] = d g_p / d q`` of shape ``p.shape + q.shape``,
  as the Jacobian of the gradient over its components: one reverse pass per
  component of the gradient (the HVP with each basis vector), assembled into the
  blocks in IR. For small parameters only (size of the graph grows with the total
  parameter size).
"""

from __future__ import annotations

import numpy as np

from scg.errors import GraphError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64
from scg.passes.autodiff import grad


def _const(graph: Graph, value: np.ndarray | float, note: str | None) -> Node:
    arr = np.array(value, dtype=np.float64)
    arr.setflags(write=False)
    return graph.add(Op.CONST, (), {"value": arr, "dtype": F64, "shape": arr.shape, "batched": False}, note=note)


def _total(graph: Graph, x: Node, note: str | None) -> Node:
    """Sum of every element of ``x`` (over rows too): an unbatched scalar."""
    if x.shape:
        x = graph.add(Op.SUM, (x,), {"axes": tuple(range(len(x.shape))), "keepdims": False}, note=note)
    if x.batched:
        x = graph.add(Op.UNBROADCAST, (x,), {"shape": (), "batched": False}, note=note)
    return x


def _inner(graph: Graph, grads: list[Node], vectors: list[Node], note: str | None) -> Node:
    """``sum_p <g_p, v_p>`` as an unbatched scalar."""
    acc = None
    for g, v in zip(grads, vectors, strict=True):
        if g.type.shape != v.type.shape:
            raise GraphError(f"hvp: vector {v.label()} of shape {list(v.shape)} does not match the gradient "
                             f"{g.label()} of shape {list(g.shape)}")
        term = _total(graph, graph.add(Op.MUL, (g, v), note=note), note)
        acc = term if acc is None else graph.add(Op.ADD, (acc, term), note=note)
    if acc is None:
        raise GraphError("hvp: no gradients given")
    return acc


def hvp(graph: Graph, grads: list[Node], wrt: list[Node], vectors: list[Node], *,
        note: str | None = "hessian-vector product") -> tuple[Graph, list[Node]]:
    """``H v`` for ``H`` the Jacobian of ``grads`` (one per ``wrt`` node) w.r.t. ``wrt``.

    ``vectors`` are nodes of ``graph`` (e.g. params of the same shapes, the
    caller's choice of leaf). Returns a new graph and one node per ``wrt`` node,
    ``sum_p H[p, q] . v_p`` (for a symmetric ``H``, the Hessian-vector product).
    """
    out = graph.derive()
    out.outputs = dict(graph.outputs)
    return grad(out, _inner(out, grads, vectors, note), wrt, note=note)


def hessian(graph: Graph, grads: list[Node], wrt: list[Node], *,
            note: str | None = "hessian") -> tuple[Graph, dict[tuple[int, int], Node]]:
    """Every block ``d grads[a] / d wrt[b]``, keyed by ``(a, b)``, of shape ``wrt[a].shape + wrt[b].shape``.

    ``grads[a]`` must be unbatched (the gradient of a row-summed loss w.r.t. a
    parameter). One reverse pass per element of every gradient.
    """
    for g in grads:
        if g.batched:
            raise GraphError(f"hessian: gradient {g.label()} is per row; expected gradients w.r.t. parameters")
    out = graph.derive()
    out.outputs = dict(graph.outputs)
    rows: dict[int, list[list[Node]]] = {}
    for a, g in enumerate(grads):
        rows[a] = []
        for i in range(int(np.prod(g.shape, dtype=np.int64))):
            if g.shape:
                basis = np.zeros(g.shape)
                basis.flat[i] = 1.0
                component = _total(out, out.add(Op.MUL, (g, _const(out, basis, note)), note=note), note)
            else:
                component = g
            out, row = grad(out, component, wrt, note=note)
            rows[a].append(row)
    blocks: dict[tuple[int, int], Node] = {}
    for a, g in enumerate(grads):
        for b, w in enumerate(wrt):
            blocks[(a, b)] = _assemble(out, g.shape, w.shape, [r[b] for r in rows[a]], note)
    return out, blocks


def _assemble(graph: Graph, outer: tuple[int, ...], inner: tuple[int, ...], rows: list[Node],
              note: str | None) -> Node:
    """``block[i, ...] = rows[i]`` for ``i`` over ``outer``'s elements: ``sum_i e_i (x) rows[i]``."""
    if not outer:
        return rows[0]
    acc = None
    for i, row in enumerate(rows):
        basis = np.zeros(outer)
        basis.flat[i] = 1.0
        placed = graph.add(Op.MUL, (_const(graph, basis.reshape(outer + (1,) * len(inner)), note), row), note=note)
        acc = placed if acc is None else graph.add(Op.ADD, (acc, placed), note=note)
    return acc


__all__ = ["hessian", "hvp"]
