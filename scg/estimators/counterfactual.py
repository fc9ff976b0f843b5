"""Counterfactual evaluation for HNCA: a quantity re-computed with one unit set to each value.

Three ways, cheapest first, each emitting IR (never Python closures):

* **affine closed form** (Young 2022, sec. 4): when a child's logits are
  ``+-(u @ W) + rest`` with ``rest`` independent of ``u``, flipping ``u_i`` shifts
  child logit ``j`` by ``W_ij (v - u_i)``; one ``hnca_affine_delta`` node gives
  ``log L(u_i := 1) - log L(u_i := 0)`` for all units at O(rows x parents x children)
  cost, like a matmul, without a (rows x parents x children) tensor.
* **sum-aggregated closed form** for a cost ``F(sum(E))``: when ``E`` is
  elementwise in ``u`` (e.g. a sparsity penalty) or an affine-logit log-density
  (e.g. a decoder likelihood), ``sum(E)`` with ``u_i := v`` is a vector over
  ``i`` and the per-row-scalar ops of ``F`` are replayed on it by broadcasting.
* **unrolled fallback**: the subgraph from ``u`` to the target is copied once
  per (unit, value); only for small units, and the IR notes say so.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from scg.errors import EstimatorError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Kind, Op
from scg.passes.rewrite import nodes_between, replay

MAX_UNROLLED = 64  # counterfactual copies allowed per target in the fallback
ELEMENTWISE = (Kind.UNARY, Kind.BINARY, Kind.TERNARY)
ELEMENTWISE_OPS = frozenset({Op.BERNOULLI_LOGP, Op.NORMAL_LOGP})  # densities elementwise in every argument


def depends_on(u: Node, x: Node) -> bool:
    """Whether ``x`` depends on ``u`` through deterministic ops only.

    Memoised per ``u`` (nodes are immutable, so an answer never changes): HNCA asks
    this for every node of every cost, which made its derivation quadratic in the
    width of a sum of samples.
    """
    memo = _DEPENDS.get(u.uid)
    if memo is None:
        memo = _DEPENDS[u.uid] = {u.uid: True}
        while len(_DEPENDS) > _DEPENDS_KEEP:
            _DEPENDS.popitem(last=False)
    if x.uid in memo:
        return memo[x.uid]
    stack = [x]
    while stack:
        n = stack[-1]
        if n.uid in memo:
            stack.pop()
            continue
        if n.op in STOCHASTIC_OPS:
            memo[n.uid] = False
            stack.pop()
            continue
        pending = [i for i in n.inputs if i.uid not in memo]
        if pending:
            stack.extend(pending)
            continue
        memo[n.uid] = any(memo[i.uid] for i in n.inputs)
        stack.pop()
    return memo[x.uid]


_DEPENDS: OrderedDict[int, dict[int, bool]] = OrderedDict()
_DEPENDS_KEEP = 1024  # units whose answers are kept


def affine_weight(u: Node, logits: Node) -> tuple[Node, int] | None:
    """``(W, sign)`` when ``logits = sign * (enc(u) @ W) + rest`` with rest independent of ``u``.

    ``enc(u)`` is ``u`` itself for a Bernoulli unit and ``one_hot(u)`` for a categorical one.
    """
    node, sign = logits, 1
    while True:
        if node.op is Op.MATMUL:
            x, w = node.inputs
            enc_ok = x is u or (x.op is Op.ONE_HOT and x.inputs[0] is u and u.shape == ()
                                and x.attrs["depth"] == u.inputs[0].shape[-1])
            if enc_ok and not w.batched and len(w.shape) == 2 and not depends_on(u, w) and len(x.shape) == 1:
                return w, sign
            return None
        if node.op in (Op.ADD, Op.SUB):
            a, b = node.inputs
            da, db = depends_on(u, a), depends_on(u, b)
            if da == db:
                return None
            if db and node.op is Op.SUB:
                sign = -sign
            node = a if da else b
        elif node.op is Op.NEG:
            sign, node = -sign, node.inputs[0]
        else:
            return None


def signed(graph: Graph, w: Node, sign: int, note: str) -> Node:
    return w if sign > 0 else graph.add(Op.NEG, (w,), note=note)


def unit_masks(graph: Graph, u: Node) -> list[Node]:
    """One-hot float masks over ``u``'s elements (per-row shape ``u.shape``)."""
    n = int(np.prod(u.shape))
    masks = []
    for i in range(n):
        m = np.zeros(n)
        m[i] = 1.0
        m = m.reshape(u.shape)
        m.setflags(write=False)
        masks.append(graph.add(Op.CONST, (), {"value": m, "dtype": "f64", "shape": u.shape, "batched": False}))
    return masks


def const(graph: Graph, value: float, dtype: str = "f64") -> Node:
    v = np.float64(value) if dtype == "f64" else np.int64(value)
    return graph.add(Op.CONST, (), {"value": v, "dtype": dtype, "shape": (), "batched": False})


def unrolled(graph: Graph, u: Node, values: list[Node], targets: list[Node], note: str) -> list[list[Node]]:
    """``targets`` recomputed with ``u`` replaced by each of ``values`` (copies of the subgraph)."""
    region = nodes_between([u], targets)
    out = []
    for v in values:
        subst = replay(graph, region, {id(u): v}, note=note)
        out.append([subst.get(id(t), t) for t in targets])
    return out


def bernoulli_flips(graph: Graph, u: Node, targets: list[Node], note: str) -> list[tuple[Node, Node]]:
    """For each per-row scalar target: vectors over units of its value with u_i := 0 and u_i := 1."""
    n = int(np.prod(u.shape))
    if 2 * n > MAX_UNROLLED:
        raise EstimatorError(
            f"hnca: {u.label()} has {n} units and a child or cost with no closed form; re-evaluating it "
            f"{2 * n} times is too costly. Make the child's logits affine in {u.name} (h @ W + b), "
            f"or use estimator={{{u.name!r}: 'reinforce'}}")
    masks = unit_masks(graph, u)
    zero, one = const(graph, 0.0), const(graph, 1.0)
    values = [graph.add(Op.WHERE, (m, v, u), note=note) for m in masks for v in (zero, one)]
    copies = unrolled(graph, u, values, targets, note)
    result = []
    for t in range(len(targets)):
        vecs = []
        for v in range(2):
            acc = None
            for i, m in enumerate(masks):
                term = graph.add(Op.MUL, (m, copies[2 * i + v][t]), note=note)
                acc = term if acc is None else graph.add(Op.ADD, (acc, term), note=note)
            vecs.append(acc)
        result.append((vecs[0], vecs[1]))
    return result


def categorical_values(graph: Graph, u: Node, k: int, targets: list[Node], note: str) -> list[Node]:
    """For each per-row scalar target: a (K,) vector of its value with u := v."""
    if k > MAX_UNROLLED:
        raise EstimatorError(f"hnca: {u.label()} has {k} classes; the unrolled counterfactual is limited to "
                             f"{MAX_UNROLLED}. Use estimator={{{u.name!r}: 'reinforce'}}")
    values = [graph.add(Op.BROADCAST_TO, (const(graph, v, "i64"),), {"shape": (), "batched": True}, note=note)
              for v in range(k)]
    copies = unrolled(graph, u, values, targets, note)
    masks = [const_vector(graph, k, v) for v in range(k)]
    result = []
    for t in range(len(targets)):
        acc = None
        for v in range(k):
            term = graph.add(Op.MUL, (masks[v], copies[v][t]), note=note)
            acc = term if acc is None else graph.add(Op.ADD, (acc, term), note=note)
        result.append(acc)
    return result


def const_vector(graph: Graph, k: int, hot: int) -> Node:
    m = np.zeros(k)
    m[hot] = 1.0
    m.setflags(write=False)
    return graph.add(Op.CONST, (), {"value": m, "dtype": "f64", "shape": (k,), "batched": False})


class Chains:
    """Sole consumers of the model's nodes, and memoised additive chains above them.

    For a unit whose only route to a cost is ``E -> sum -> (adds/subs/negations) ->
    F -> cost`` this finds the aggregate, the top of the additive chain and ``F``'s
    nodes by walking up sole consumers, with the chain climb shared by all units:
    on ``s0.sum() + ... + s{N-1}.sum()`` the whole derivation stays linear in N.
    """

    def __init__(self, model_nodes):
        users: dict[int, list[Node]] = {}
        for n in model_nodes:
            for x in set(n.inputs):
                users.setdefault(x.uid, []).append(n)
        self.sole = {uid: us[0] for uid, us in users.items() if len(us) == 1}
        self.climbed: dict[int, tuple[Node, int]] = {}   # uid -> (top of its additive chain, sign)

    def climb(self, n: Node) -> tuple[Node, int]:
        path, sign = [], 1
        while n.uid not in self.climbed:
            up = self.sole.get(n.uid)
            if up is None or up.shape != () or up.op not in (Op.ADD, Op.SUB, Op.NEG):
                self.climbed[n.uid] = (n, 1)
                break
            path.append((n, -1 if up.op is Op.NEG or (up.op is Op.SUB and up.inputs[1] is n) else 1))
            n = up
        top, sign = self.climbed[n.uid]
        for node, step in reversed(path):
            sign *= step
            self.climbed[node.uid] = (top, sign)
        return self.climbed[path[0][0].uid] if path else (top, sign)

    def route(self, u: Node, cost: Node) -> tuple[Node, tuple[Node, int, list[Node]]] | None:
        """``(aggregate, (top, sign, above))`` when ``u`` reaches ``cost`` along sole consumers."""
        n = u
        while not (n.op is Op.SUM and n.shape == ()):
            n = self.sole.get(n.uid)
            if n is None or n.op.kind not in (*ELEMENTWISE, Kind.REDUCE, Kind.DENSITY, Kind.STRUCTURAL):
                return None
        agg = n
        top, sign = self.climb(agg)
        above, n = [], top
        while n is not cost.inputs[0]:
            n = self.sole.get(n.uid)
            if n is None or n.shape != () or n.op.kind not in ELEMENTWISE:
                return None
            above.append(n)
        return agg, (top, sign, above)


def aggregated_flips(graph: Graph, u: Node, cost: Node, note: str,
                     chains: Chains | None = None) -> tuple[Node, Node] | None:
    """Closed-form (c(u_i:=0), c(u_i:=1)) vectors for ``cost = F(sum(E_1), sum(E_2), ...)``, or None.

    Walks from the cost through per-row-scalar elementwise ops to the full SUMs
    that see ``u`` (the aggregates); each ``E_k`` must be elementwise in ``u``
    with ``u``'s shape (a penalty, a prior ``log p(z)``, ``log q(z|x)``) or an
    affine-logit Bernoulli log-density ``bernoulli_logp(+-(u @ W) + rest, x)``
    (a decoder likelihood). ``F`` is then replayed on the flipped aggregates,
    which are vectors over units, by broadcasting. This covers an ELBO.
    """
    fast = chains.route(u, cost) if chains is not None else None
    aggregates = [fast[0]] if fast is not None else _aggregates(u, cost.inputs[0])
    if not aggregates:
        return None
    zero, one = const(graph, 0.0), const(graph, 1.0)
    flipped: dict[int, list[Node]] = {}
    for agg in aggregates:
        vecs = _flip_aggregate(graph, u, agg, (zero, one), note)
        if vecs is None:
            return None
        flipped[id(agg)] = vecs
    if len(aggregates) == 1:
        chain = fast[1] if fast is not None else _additive_chain(u, cost.inputs[0], aggregates[0])
        if chain is not None:
            return _shift_chain(graph, aggregates[0], flipped[id(aggregates[0])], chain, cost, note)
    region = nodes_between(aggregates, [cost])
    outs = []
    for v in range(2):
        subst = replay(graph, region, {k: vecs[v] for k, vecs in flipped.items()}, note=note)
        outs.append(subst[id(cost)])
    return outs[0], outs[1]


def _additive_chain(u: Node, root: Node, agg: Node) -> tuple[Node, int, list[Node]] | None:
    """``(top, sign, above)``: ``top = ... + sign * agg`` through adds, subs and negations only,
    with ``above`` the nodes from ``top`` (excluded) up to ``root`` that see ``u`` through it.

    A flipped aggregate then shifts ``top`` by ``sign * (agg' - agg)`` and only ``above`` is
    replayed: on ``s0.sum() + ... + s{N-1}.sum()`` each unit costs O(1) new nodes, not O(N).
    """
    path, n = [root], root
    while n is not agg:
        seeing = [x for x in n.inputs if depends_on(u, x)]
        if len(seeing) != 1:
            return None
        n = seeing[0]
        path.append(n)
    top, sign = len(path) - 1, 1
    for j in range(len(path) - 2, -1, -1):
        node, below = path[j], path[j + 1]
        if node.op is Op.ADD:
            step = 1
        elif node.op is Op.SUB:
            step = -1 if node.inputs[1] is below else 1
        elif node.op is Op.NEG:
            step = -1
        else:
            break
        sign, top = sign * step, j
    return path[top], sign, list(reversed(path[:top]))


def _shift_chain(graph: Graph, agg: Node, vecs: list[Node], chain, cost: Node, note: str) -> tuple[Node, Node]:
    top, sign, above = chain
    outs = []
    for vec in vecs:
        if top is agg:  # no additive chain above the aggregate
            subst = replay(graph, above, {id(top): vec}, note=note)
            outs.append(subst.get(id(cost.inputs[0]), vec))
            continue
        shift = graph.add(Op.SUB, (vec, agg), note=note)
        if sign < 0:
            shift = graph.add(Op.NEG, (shift,), note=note)
        moved = graph.add(Op.ADD, (top, shift), note=note)
        subst = replay(graph, above, {id(top): moved}, note=note)
        outs.append(subst.get(id(cost.inputs[0]), moved))
    return outs[0], outs[1]


def _aggregates(u: Node, root: Node) -> list[Node] | None:
    """The full SUM nodes through which ``root`` (a per-row scalar) depends on ``u``, or None."""
    found: dict[int, Node] = {}
    stack, seen = [root], set()
    while stack:
        n = stack.pop()
        if id(n) in seen or not depends_on(u, n):
            continue
        seen.add(id(n))
        if n.op is Op.SUM and n.shape == ():
            found[id(n)] = n
        elif n.shape == () and n.op.kind in ELEMENTWISE and n is not u:
            stack.extend(n.inputs)
        else:
            return None
    return list(found.values())


def _flip_aggregate(graph: Graph, u: Node, agg: Node, values: tuple[Node, Node], note: str) -> list[Node] | None:
    """``sum(E)`` with ``u_i := v``, as a vector over units ``i``, for v = 0 and 1."""
    expr = agg.inputs[0]
    if expr.op is Op.BERNOULLI_LOGP and depends_on(u, expr.inputs[0]) and not depends_on(u, expr.inputs[1]):
        found = affine_weight(u, expr.inputs[0])
        if found is None or u.op is not Op.BERNOULLI or len(u.shape) != 1 or expr.shape != expr.inputs[0].shape:
            return None
        w = signed(graph, found[0], found[1], note)
        logits, observed = expr.inputs
        if observed.shape != logits.shape or not observed.batched:  # e.g. log_prob(1.0): one value for all
            observed = graph.add(Op.BROADCAST_TO, (observed,), {"shape": logits.shape, "batched": True}, note=note)
        delta = graph.add(Op.HNCA_AFFINE_DELTA, (u, w, logits, observed), {"child": "bernoulli"}, note=note)
        # sum(E) with u_i := v equals agg + (v - u_i) * delta_i
        return [graph.add(Op.ADD, (agg, graph.add(Op.MUL, (graph.add(Op.SUB, (v, u), note=note), delta),
                                                  note=note)), note=note) for v in values]
    if not _elementwise_in(u, expr):
        return None
    region = nodes_between([u], [expr])
    out = []
    for v in values:
        full = graph.add(Op.BROADCAST_TO, (v,), {"shape": u.shape, "batched": True}, note=note)
        e_v = replay(graph, region, {id(u): full}, note=note).get(id(expr), full)
        # sum(E) with u_i := v equals agg - E_i + E_v,i
        out.append(graph.add(Op.ADD, (agg, graph.add(Op.SUB, (e_v, expr), note=note)), note=note))
    return out


def _elementwise_in(u: Node, expr: Node) -> bool:
    """Whether every node between ``u`` and ``expr`` is elementwise and keeps ``u``'s shape."""
    stack, seen = [expr], set()
    while stack:
        n = stack.pop()
        if n is u or id(n) in seen or not depends_on(u, n):
            continue
        seen.add(id(n))
        if (n.op.kind not in ELEMENTWISE and n.op not in ELEMENTWISE_OPS) or n.shape != u.shape:
            return False
        stack.extend(n.inputs)
    return True
