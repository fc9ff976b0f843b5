"""Exact expectations and gradients by enumeration: the test oracle.

Every joint configuration ``z`` of all sample elements is enumerated per row, and

    J = mean over rows of sum_z p(z | x) * total_cost(z, x)

is evaluated with ``p(z | x) = exp(sum of log-densities)``. Its gradient comes
from the same IR autodiff as every estimator, applied to ``sum_z p(z) cost(z)``
with the configurations as fixed inputs, so it is exact up to float64 rounding:
no sampling. Every estimator's mean is tested against it.

Normal samples are integrated by Gauss-Hermite quadrature (scg/exact_quadrature.py):
each element takes ``quadrature_points`` nodes ``loc + scale * x_j`` with weights
``w_j``, enumerated jointly with the discrete values. That is exact for costs
polynomial of degree < 2n in the Normal values, accurate for smooth ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scg import exact_quadrature as quadrature
from scg.backends.numpy_ref import evaluate
from scg.errors import ExactError
from scg.ir.distributions import DENSITY_OF, DISTRIBUTIONS
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
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


def _enumeration_graph(graph: Graph, quadrature_weight: bool = False
                       ) -> tuple[Graph, Node, Node, dict[str, Node], dict[str, Node]]:
    """Model with every sample an input; returns (graph, loss per row, weight per row, cost nodes,
    Normal scales by sample name)."""
    out = Graph(f"{graph.name}.exact")
    pinned: dict[str, Node] = {}
    logps: list[Node] = []
    scales: dict[str, Node] = {}
    if quadrature_weight:  # log of the product of the configuration's Gauss-Hermite weights
        logps.append(quadrature.weight_input(out, graph))

    def hook(node: Node, inputs: tuple[Node, ...]) -> Node | None:
        if node.op not in STOCHASTIC_OPS:
            return None
        if node.op is Op.NORMAL:
            value, pinned[node.name], scales[node.name] = quadrature.pin_normal(out, node, inputs)
            return value
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
    return out, loss, weight, costs, scales


def exact(graph: Graph, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray], *,
          max_configs: int = DEFAULT_MAX_CONFIGS,
          quadrature_points: int = quadrature.DEFAULT_QUADRATURE_POINTS, order: int = 1,
          objective: str = "mean", n_samples: int = 1) -> ExactResult:
    """Exact ``E[cost]`` and its gradient by enumeration (Gauss-Hermite quadrature for Normal nodes).

    Discrete samples are enumerated; each element of a Normal sample takes the
    ``quadrature_points`` nodes of the Gauss-Hermite rule, jointly with every other
    element (at most ``max_configs`` joint configurations per row). For Normal
    nodes the result is exact when the costs and the discrete nodes' log-densities
    are polynomials of degree < 2 * quadrature_points in the Normal values, and
    accurate (error falling fast with the number of points) for smooth ones;
    steep ones (a tanh of a tanh with large weights) and kinks (relu) converge
    slowly: compare two values of ``quadrature_points`` to bound the error. A cost
    that jumps with a Normal value (greater, equal, or where's condition on it) is
    refused with an ExactError. Gradient and Hessian are those of the quadrature
    (pathwise in loc and scale), exact for the rule.

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
    if not isinstance(quadrature_points, int) or isinstance(quadrature_points, bool) or quadrature_points < 1:
        raise ExactError(f"quadrature_points must be a positive int, got {quadrature_points!r}")
    if objective == "iwae":
        if order != 1:
            raise ExactError("scg.exact(objective='iwae') computes the gradient only (order=1)")
        if any(not DISTRIBUTIONS[n.op].discrete for n in graph.nodes if n.op in STOCHASTIC_OPS):
            raise ExactError("scg.exact(objective='iwae') enumerates discrete graphs only (no quadrature "
                             "for Normal nodes under the K-sample objective)")
        from scg.exact_iwae import exact_iwae

        def discrete_configurations(sites, limit):
            return quadrature.configurations(sites, limit, quadrature_points)[:2]
        return exact_iwae(graph, params, inputs, n_samples, max_configs, discrete_configurations, _batch_size)
    if objective != "mean":
        raise ExactError(f"unknown objective {objective!r}; expected 'mean' or 'iwae'")
    sites = [n for n in graph.nodes if n.op in STOCHASTIC_OPS]
    quadrature.check_continuous(graph)
    n_configs, table, log_qw = quadrature.configurations(sites, max_configs, quadrature_points)
    enum, loss, weight, costs, scales = _enumeration_graph(graph, log_qw is not None)
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
    if log_qw is not None:
        expanded[quadrature.weight_name(graph)] = np.tile(log_qw, batch)
    vals = evaluate(enum, params, expanded, seed=0)
    quadrature.check_scales({name: (s, vals[s.uid]) for name, s in scales.items()}, n_configs)

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
