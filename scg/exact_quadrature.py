"""Sample-site enumeration for :func:`scg.exact`: discrete values and Gauss-Hermite nodes.

Discrete sites (Bernoulli, Categorical) enumerate their values; each element of a
Normal site enumerates the nodes of a Gauss-Hermite rule (Golub & Welsch 1969;
Abramowitz & Stegun 25.4.46, probabilists' form):

    E[f(z)], z ~ N(loc, scale)   ~=   sum_j w_j f(loc + scale * x_j)

with ``x_j`` the roots of the n-th probabilists' Hermite polynomial and
``w_j = n! / (n^2 He_{n-1}(x_j)^2)`` (they sum to 1). The rule is exact when ``f`` is
a polynomial of degree < 2n in ``z``. The oracle writes each Normal sample as the
pathwise ``loc + scale * x`` with ``x`` pinned to a node, so its gradient is the
gradient of the quadrature (exact for the rule; pathwise in ``loc`` and ``scale``).

All elements of all sites are enumerated jointly, per row; a configuration's
weight is the product of its quadrature weights and (through the log-densities
in the enumeration graph) its discrete probabilities.
"""

from __future__ import annotations

import numpy as np

from scg.errors import ExactError
from scg.ir.distributions import distribution_of
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import F64

DEFAULT_QUADRATURE_POINTS = 20  # per Normal element: exact for polynomials of degree < 40
# value of the op jumps as a (Normal-dependent) input crosses a point: quadrature would be wrong
DISCONTINUOUS = {Op.STEP: (0,), Op.GREATER: (0, 1), Op.EQUAL: (0, 1), Op.WHERE: (0,)}


def hermite_rule(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of the n-point Gauss-Hermite rule for N(0, 1).

    Golub-Welsch: the nodes are the eigenvalues of the Jacobi matrix of the probabilists'
    Hermite recurrence (zero diagonal, off-diagonal ``sqrt(k)``, k = 1..n-1) and the weights
    the squared first components of its unit eigenvectors. Stable for any n, unlike the
    polynomial-value formula (NumPy's ``hermegauss`` overflows to NaN weights near n = 384).
    """
    off = np.sqrt(np.arange(1.0, n))
    x, v = np.linalg.eigh(np.diag(off, 1) + np.diag(off, -1))
    w = v[0] ** 2
    x = (x - x[::-1]) / 2  # exactly symmetric, as the rule is
    w = (w + w[::-1]) / 2
    return x, w / w.sum()


def site_values(node: Node, quadrature_points: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-element values of a sample site, and their log quadrature weights (None: discrete)."""
    dist = distribution_of(node)
    if dist.discrete:
        return np.array(dist.values(dist.n_values(node))), None
    if dist.noise is Op.NOISE_NORMAL:  # loc + scale * eps, eps ~ N(0, 1): Gauss-Hermite nodes for eps
        x, w = hermite_rule(quadrature_points)
        keep = w > 0  # far nodes of large rules underflow to weight 0: they contribute nothing
        return x[keep], np.log(w[keep])
    raise ExactError(f"scg.exact cannot enumerate {node.label()}, a {node.op.pretty} node")


def configurations(sites: list[Node], max_configs: int, quadrature_points: int
                   ) -> tuple[int, dict[str, np.ndarray], np.ndarray | None]:
    """Joint configurations per row: (count, values per site name, log quadrature weight per config).

    Configuration order: sites in graph order, elements row-major, the first element slowest.
    """
    rules = [site_values(s, quadrature_points) for s in sites]
    sizes = [len(v) ** s.type.size for s, (v, _) in zip(sites, rules, strict=True)]
    total = int(np.prod(sizes, dtype=object)) if sizes else 1
    if total > max_configs:
        desc = ", ".join(f"{s.name}: {n}" for s, n in zip(sites, sizes, strict=True))
        hint = (f" (quadrature_points={quadrature_points} per Normal element)"
                if any(s.op is Op.NORMAL for s in sites) else "")
        raise ExactError(f"scg.exact would enumerate {total} joint configurations per row ({desc}){hint}; "
                         f"the limit is max_configs={max_configs}. Use a smaller graph or raise the limit")
    axes = [len(v) for s, (v, _) in zip(sites, rules, strict=True) for _ in range(s.type.size)]
    index = np.unravel_index(np.arange(total), axes) if axes else ()
    table: dict[str, np.ndarray] = {}
    log_w = None
    k = 0
    for s, (values, logw) in zip(sites, rules, strict=True):
        idx = np.stack(index[k:k + s.type.size], axis=-1) if s.type.size else np.zeros((total, 0), int)
        k += s.type.size
        dtype = np.float64 if s.dtype == F64 else np.int64
        table[s.name] = values[idx].astype(dtype).reshape((total, *s.shape))
        if logw is not None:
            site_w = logw[idx].sum(axis=-1)
            log_w = site_w if log_w is None else log_w + site_w
    return total, table, log_w


def check_continuous(graph: Graph) -> None:
    """Refuse a graph where a Normal sample reaches a discontinuous op (quadrature would be wrong).

    Normal-ness flows through deterministic ops and into Normal samples (via loc or
    scale), not through discrete samples (their values are enumerated, only their
    probabilities depend on the Normal, smoothly).
    """
    source: dict[int, Node] = {}  # id(node) -> a Normal sample it depends on continuously
    for node in graph.nodes:
        if node.op is Op.NORMAL:
            source[id(node)] = next((source[id(x)] for x in node.inputs if id(x) in source), node)
            continue
        if node.op in STOCHASTIC_OPS:
            continue
        hit = next((source[id(x)] for x in node.inputs if id(x) in source), None)
        if hit is None:
            continue
        source[id(node)] = hit
        jumps = [source[id(node.inputs[i])] for i in DISCONTINUOUS.get(node.op, ()) if id(node.inputs[i]) in source]
        if jumps:
            where = f" (created at {node.origin})" if node.origin else ""
            raise ExactError(
                f"scg.exact integrates Normal sample {jumps[0].label()} by Gauss-Hermite quadrature, which is "
                f"wrong for a cost that jumps with it: it reaches a {node.op.pretty} node{where}. "
                "Estimate this graph with many samples instead (scg.diagnostics.gradient_stats)")


def pin_normal(out: Graph, node: Node, inputs: tuple[Node, ...]) -> tuple[Node, Node, Node]:
    """``loc + scale * x`` with ``x`` an input holding the quadrature node; returns (z, x, scale)."""
    loc, scale = inputs
    x = out.add(Op.INPUT, (), {"shape": node.shape, "dtype": F64, "batched": True}, name=node.name,
                note=f"Gauss-Hermite node for {node.name}")
    z = out.add(Op.ADD, (loc, out.add(Op.MUL, (scale, x))), name=node.name, origin=node.origin,
                note=f"quadrature for {node.name}")
    return z, x, scale


def weight_name(model: Graph) -> str:
    """The name of the log-quadrature-weight input: apart from every name in the user's graph."""
    name = "quadrature_log_weight"
    while name in model:
        name = "_" + name
    return name


def weight_input(out: Graph, model: Graph) -> Node:
    """A batched scalar input holding each configuration's log quadrature weight."""
    return out.add(Op.INPUT, (), {"shape": (), "dtype": F64, "batched": True}, name=weight_name(model),
                   note="log product of the Gauss-Hermite weights")


def check_scales(scales: dict[str, tuple[Node, np.ndarray]], n_configs: int) -> None:
    """Every Normal's scale positive and finite (the estimators refuse the same with an InputError).

    ``scales``: sample name -> (scale node of the enumeration graph, its value); batched values are laid
    out (row, configuration) -> row * n_configs + configuration.
    """
    for name, (node, scale) in scales.items():
        scale = np.asarray(scale)
        bad = ~(np.isfinite(scale) & (scale > 0))
        if np.any(bad):
            first = np.argwhere(bad)[0]
            where = f" at row {int(first[0]) // n_configs}" if node.batched else ""
            raise ExactError(f"Normal sample {name!r}: scale must be positive and finite, got "
                             f"{float(scale[tuple(first)])!r}{where}")
