"""The exact K-sample (IWAE) objective and its gradient, by enumeration over K draws.

``J_K = E[mean over rows of -log (1/K) sum_k exp(-C_k)]`` with the K draws of a row
independent: for every K-tuple ``(z_1, ..., z_K)`` of joint configurations,

    J_K = mean over rows of sum_{z_1..z_K} prod_k p(z_k | x) * F(C(z_1), ..., C(z_K)),
    F = -log mean_k exp(-C_k).

The model is copied K times into one enumeration graph (every sample an input, one
per copy), so the gradient is the same IR autodiff as ``scg.exact``'s, exact up to
float64 rounding. The tuples grow as ``n_configs ** K``: for small graphs and small K.
"""

from __future__ import annotations

import itertools

import numpy as np

from scg.backends.numpy_ref import evaluate
from scg.errors import ExactError
from scg.estimators.base import DENSITY_OF
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.passes.autodiff import grad
from scg.passes.rewrite import replay


def _copies(graph: Graph, k: int) -> tuple[Graph, list[Node], list[Node], list[dict[str, Node]]]:
    """K copies of the model sharing its sample-free part: (graph, log p per copy, total cost per copy, costs)."""
    out = Graph(f"{graph.name}.exact_iwae")
    logps, totals, costs, shared = [], [], [], None
    for j in range(k):
        lps: list[Node] = []

        def hook(node: Node, inputs: tuple[Node, ...], j=j, lps=lps) -> Node | None:
            if node.op in STOCHASTIC_OPS:
                value = out.add(Op.INPUT, (), {"shape": node.shape, "dtype": node.dtype, "batched": True},
                                name=f"{node.name}@{j}")
                lp = out.add(DENSITY_OF[node.op], (*inputs, value))
                if lp.shape:
                    lp = out.add(Op.SUM, (lp,), {"axes": tuple(range(len(lp.shape))), "keepdims": False})
                lps.append(lp)
                return value
            if node.op is Op.COST:
                return out.add(Op.COST, inputs, node.attrs, name=f"{node.name}@{j}")
            return None

        seed = {} if shared is None else dict(shared)
        subst = replay(out, graph.nodes, seed, hook=hook, fresh=True)
        if shared is None:  # nodes copy 0 kept as they are depend on no sample: later copies share them
            shared = {id(n): n for n in graph.nodes if id(n) not in subst}
        named = {name: subst[id(c)] for name, c in graph.costs.items()}
        total = None
        for c in named.values():
            total = c if total is None else out.add(Op.ADD, (total, c))
        log_p = lps[0] if lps else None
        for lp in lps[1:]:
            log_p = out.add(Op.ADD, (log_p, lp))
        logps.append(log_p)
        totals.append(total)
        costs.append(named)
    return out, logps, totals, costs


def _const(g: Graph, v: float) -> Node:
    return g.add(Op.CONST, (), {"value": float(v), "dtype": "f64", "shape": (), "batched": False})


def exact_iwae(graph: Graph, params, inputs, k: int, max_configs: int, configurations, batch_size):
    from scg.exact import ExactResult

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ExactError(f"objective='iwae' needs n_samples=K >= 1 draws per row, got {k!r}")
    k = int(k)
    sites = [n for n in graph.nodes if n.op in STOCHASTIC_OPS]
    n_configs, table = configurations(sites, max_configs)
    n_tuples = n_configs ** k
    if n_tuples > max_configs:
        raise ExactError(f"scg.exact(objective='iwae', n_samples={k}) would enumerate {n_configs}^{k} = {n_tuples} "
                         f"K-tuples of configurations per row; the limit is max_configs={max_configs}")
    enum, logps, totals, costs = _copies(graph, k)
    # F = -log mean_k exp(-C_k), shifted by the mean cost for range
    mean_c = totals[0]
    for t in totals[1:]:
        mean_c = enum.add(Op.ADD, (mean_c, t))
    mean_c = enum.add(Op.MUL, (mean_c, _const(enum, 1.0 / k)))
    acc = None
    for t in totals:
        e = enum.add(Op.EXP, (enum.add(Op.SUB, (mean_c, t)),))
        acc = e if acc is None else enum.add(Op.ADD, (acc, e))
    f = enum.add(Op.SUB, (mean_c, enum.add(Op.LOG, (enum.add(Op.MUL, (acc, _const(enum, 1.0 / k))),))))
    weight = None
    if logps[0] is not None:
        log_w = logps[0]
        for lp in logps[1:]:
            log_w = enum.add(Op.ADD, (log_w, lp))
        weight = enum.add(Op.EXP, (log_w,))
    loss = f if weight is None else enum.add(Op.MUL, (weight, f))
    param_nodes = list(enum.params.values())
    enum, grads = grad(enum, loss, param_nodes)

    batch = batch_size(graph, inputs)
    rows = batch * n_tuples  # row (b, tuple t) -> b * n_tuples + t
    expanded = {name: np.repeat(np.asarray(v), n_tuples, axis=0) for name, v in inputs.items()}
    picks = np.array(list(itertools.product(range(n_configs), repeat=k)), dtype=np.int64).reshape(n_tuples, k)
    for name, values in table.items():
        for j in range(k):
            per_tuple = values[picks[:, j]]
            expanded[f"{name}@{j}"] = np.tile(per_tuple, (batch,) + (1,) * (per_tuple.ndim - 1))
    vals = evaluate(enum, params, expanded, seed=0)
    w = vals[weight.uid] if weight is not None else np.ones(rows)
    return ExactResult(
        cost=float(np.sum(vals[loss.uid]) / batch),
        grads={p.name: np.asarray(vals[g.uid], dtype=np.float64) / batch for p, g in zip(param_nodes, grads, strict=True)},
        costs={name: float(np.sum(vals[c.uid] * w) / batch) for name, c in costs[0].items()},
        n_configs=n_tuples,
    )
