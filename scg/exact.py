"""Exact expectations and gradients by enumeration: the test oracle.

For a graph whose stochastic nodes are all discrete, every joint configuration
``z`` of all sample elements is enumerated per row, and

    J = mean over rows of sum_z p(z | x) * total_cost(z, x)

is evaluated with ``p(z | x) = exp(sum of log-densities)``. Its gradient comes
from the same IR autodiff as every estimator, applied to ``sum_z p(z) cost(z)``
with the configurations as fixed inputs, so it is exact up to float64 rounding:
no sampling. Every estimator's mean is tested against it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from scg.backends.numpy_ref import evaluate
from scg.errors import ExactError
from scg.ir.distributions import DENSITY_OF, distribution_of
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import F64
from scg.passes.autodiff import grad
from scg.passes.higher import hessian
from scg.passes.rewrite import replay

DEFAULT_MAX_CONFIGS = 1 << 20  # joint configurations per row


@dataclass(frozen=True)
class ExactResult:
    cost: float                    # J: expected mean-over-rows total cost
    grads: dict[str, np.ndarray]   # dJ/dparam, same keys and shapes as params
    costs: dict[str, float]        # expected mean-over-rows value of each cost
    n_configs: int                 # joint configurations enumerated per row
    hessian: dict[tuple[str, str], np.ndarray] | None = None  # order=2: d2J/dp dq, shape p.shape + q.shape


def _site_values(node: Node) -> list:
    dist = distribution_of(node)
    if dist.discrete:
        return dist.values(dist.n_values(node))
    raise ExactError(
        f"scg.exact enumerates discrete graphs only; {node.label()} is a {node.op.pretty} node "
        "(continuous). Estimate with many samples instead, e.g. scg.diagnostics.gradient_stats")


def _configurations(sites: list[Node], max_configs: int) -> tuple[int, dict[str, np.ndarray]]:
    sizes = [len(_site_values(s)) ** s.type.size for s in sites]
    total = int(np.prod(sizes, dtype=object)) if sizes else 1
    if total > max_configs:
        desc = ", ".join(f"{s.name}: {n}" for s, n in zip(sites, sizes, strict=True))
        raise ExactError(f"scg.exact would enumerate {total} joint configurations per row ({desc}); "
                         f"the limit is max_configs={max_configs}. Use a smaller graph or raise the limit")
    columns = []
    for s in sites:
        per_elem = [_site_values(s)] * s.type.size
        columns.append([np.array(v).reshape(s.shape) for v in itertools.product(*per_elem)])
    grid = list(itertools.product(*columns)) if sites else [()]
    table = {}
    for i, s in enumerate(sites):
        dtype = np.float64 if s.dtype == F64 else np.int64
        table[s.name] = np.array([cfg[i] for cfg in grid], dtype=dtype).reshape((total, *s.shape))
    return total, table


def _enumeration_graph(graph: Graph) -> tuple[Graph, Node, Node, dict[str, Node]]:
    """Model with every sample an input; returns (graph, loss per row, weight per row, cost nodes)."""
    out = Graph(f"{graph.name}.exact")
    pinned: dict[str, Node] = {}
    logps: list[Node] = []

    def hook(node: Node, inputs: tuple[Node, ...]) -> Node | None:
        if node.op not in STOCHASTIC_OPS:
            return None
        value = out.add(Op.INPUT, (), {"shape": node.shape, "dtype": node.dtype, "batched": True},
                        name=node.name)
        lp = out.add(DENSITY_OF[node.op], (*inputs, value))
        if lp.shape:
            lp = out.add(Op.SUM, (lp,), {"axes": tuple(range(len(lp.shape))), "keepdims": False})
        logps.append(lp)
        pinned[node.name] = value
        return value

    subst = replay(out, graph.nodes, {}, hook=hook, fresh=True)
    costs = {name: subst.get(id(c), c) for name, c in graph.costs.items()}
    log_w = logps[0] if logps else None
    for lp in logps[1:]:
        log_w = out.add(Op.ADD, (log_w, lp))
    total = None
    for c in costs.values():
        total = c if total is None else out.add(Op.ADD, (total, c))
    weight = out.add(Op.EXP, (log_w,)) if log_w is not None else None
    loss = out.add(Op.MUL, (weight, total)) if weight is not None else total
    return out, loss, weight, costs


def exact(graph: Graph, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray], *,
          max_configs: int = DEFAULT_MAX_CONFIGS, order: int = 1, objective: str = "mean",
          n_samples: int = 1) -> ExactResult:
    """Exact ``E[cost]`` and its gradient for a discrete graph, by enumeration.

    ``order=2`` adds the exact Hessian, ``hessian[(p, q)]`` of shape
    ``params[p].shape + params[q].shape``, by second-order autodiff of the same
    enumeration graph (`scg.passes.higher.hessian`; one reverse pass per
    parameter element, so meant for small parameters).

    ``objective="iwae"`` with ``n_samples=K``: the exact K-sample objective
    ``E[mean over rows of -log (1/K) sum_k exp(-C_k)]`` and its gradient instead, by
    enumerating K-tuples of configurations (``n_configs`` is then the tuple count).

    >>> import numpy as np, scg
    >>> g = scg.Graph("coin")
    >>> with g:
    ...     phi = scg.param("phi", shape=())
    ...     b = scg.sample("b", scg.Bernoulli(logits=phi))
    ...     _ = scg.cost("c", (b - 0.45) ** 2)
    >>> ex = scg.exact(g, {"phi": np.array(0.0)}, {})
    >>> round(ex.cost, 4), round(float(ex.grads["phi"]), 4)
    (0.2525, 0.025)
    """
    if order not in (1, 2):
        raise ExactError(f"scg.exact: order must be 1 (gradient) or 2 (gradient and Hessian), got {order!r}")
    if graph.external_costs:
        raise ExactError(f"scg.exact cannot evaluate external costs ({', '.join(graph.external_costs)}): "
                         "their values come from outside the graph")
    if not graph.costs:
        raise ExactError(f"graph {graph.name!r} has no cost to take the expectation of")
    if objective == "iwae":
        if order != 1:
            raise ExactError("scg.exact(objective='iwae') computes the gradient only (order=1)")
        from scg.exact_iwae import exact_iwae
        return exact_iwae(graph, params, inputs, n_samples, max_configs, _configurations, _batch_size)
    if objective != "mean":
        raise ExactError(f"unknown objective {objective!r}; expected 'mean' or 'iwae'")
    sites = [n for n in graph.nodes if n.op in STOCHASTIC_OPS]
    n_configs, table = _configurations(sites, max_configs)
    enum, loss, weight, costs = _enumeration_graph(graph)
    param_nodes = list(enum.params.values())
    enum, grads = grad(enum, loss, param_nodes)
    blocks = {}
    if order == 2:
        enum, blocks = hessian(enum, grads, param_nodes)

    batch = _batch_size(graph, inputs)
    # rows laid out (row b, configuration z) -> b * n_configs + z
    expanded = {k: np.repeat(np.asarray(v), n_configs, axis=0) for k, v in inputs.items()}
    for name, values in table.items():
        expanded[name] = np.tile(values, (batch,) + (1,) * (values.ndim - 1))
    vals = evaluate(enum, params, expanded, seed=0)

    def expectation(node: Node) -> float:
        per = vals[node.uid] * (vals[weight.uid] if weight is not None else 1.0)
        return float(np.sum(per) / batch)

    return ExactResult(
        cost=float(np.sum(vals[loss.uid]) / batch),
        grads={p.name: np.asarray(vals[g.uid], dtype=np.float64) / batch for p, g in zip(param_nodes, grads, strict=True)},
        costs={name: expectation(c) for name, c in costs.items()},
        n_configs=n_configs,
        hessian={(param_nodes[a].name, param_nodes[b].name): np.asarray(vals[h.uid], dtype=np.float64) / batch
                 for (a, b), h in blocks.items()} if order == 2 else None,
    )


def _batch_size(graph: Graph, inputs: dict[str, np.ndarray]) -> int:
    sizes = {np.shape(v)[0] for v in inputs.values() if np.ndim(v) > 0}
    if not graph.inputs:
        return 1
    if len(sizes) != 1:
        raise ExactError(f"inputs must share one batch size, got sizes {sorted(sizes)}")
    return sizes.pop()
