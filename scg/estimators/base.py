"""Shared machinery of every estimator: the surrogate builder.

An estimator is derived as IR: each stochastic node contributes per-row
surrogate terms whose gradient, in expectation, is that node's share of
``dJ/dtheta`` (Schulman et al. 2015, Thm 1). The builder owns the estimator
graph under construction and the pieces every estimator needs: log-densities,
``Qhat`` (the sum of downstream costs), baselines and stop-gradients. Every node
it adds carries a provenance note saying which estimator made it and for whom.
"""

from __future__ import annotations

from typing import Any

from scg.errors import EstimatorError
from scg.ir.distributions import DENSITY_OF
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64
from scg.passes.dependencies import Dependencies, SiteInfo

BASELINES = (None, "ema", "loo")


class SurrogateBuilder:
    """Builds the surrogate loss of one estimator graph, term by term."""

    def __init__(self, graph: Graph, deps: Dependencies, baseline: str | None):
        if baseline not in BASELINES:
            raise EstimatorError(f"unknown baseline {baseline!r}; expected one of None, 'ema', 'loo'")
        self.graph = graph
        self.model_nodes = tuple(graph.nodes)  # the model part, before any estimator node
        self.deps = deps
        self.baseline_kind = baseline
        self.terms: list[Node] = []           # per-row scalar surrogate terms
        self.site_terms: dict[str, list[Node]] = {}  # the same terms by the site they credit
        self.ema_updates: dict[str, Node] = {}  # state name -> this call's mean Qhat
        self.cache: dict[str, Any] = {}       # per-graph shared pieces (e.g. MuProp's mean field)

    # -- node construction -------------------------------------------------
    def add(self, op: Op, *inputs: Node | float, note: str | None = None, name: str | None = None,
            **attrs: Any) -> Node:
        nodes = tuple(x if isinstance(x, Node) else self.const(x) for x in inputs)
        return self.graph.add(op, nodes, attrs, name=name, note=note)

    def const(self, value: float) -> Node:
        return self.graph.add(Op.CONST, (), {"value": float(value), "dtype": F64, "shape": (),
                                             "batched": False})

    def sg(self, x: Node, note: str | None = None, name: str | None = None) -> Node:
        return self.add(Op.STOP_GRADIENT, x, note=note, name=name)

    def row_total(self, x: Node, note: str | None = None, name: str | None = None) -> Node:
        """Sum over every per-row axis: a per-row scalar."""
        if x.shape == ():
            return x
        return self.add(Op.SUM, x, axes=tuple(range(len(x.shape))), keepdims=False, note=note, name=name)

    def total(self, nodes: list[Node] | tuple[Node, ...], note: str | None = None, name: str | None = None) -> Node:
        """Elementwise sum of per-row scalars (0. when empty); ``name`` names the last add."""
        if not nodes:
            return self.const(0.0)
        acc = nodes[0]
        for i, n in enumerate(nodes[1:], start=2):
            acc = self.add(Op.ADD, acc, n, note=note, name=name if i == len(nodes) else None)
        return acc

    def add_term(self, site: str, term: Node) -> None:
        """A per-row surrogate term crediting ``site`` (printed and returned as ``surrogate/<site>``)."""
        self.terms.append(term)
        self.site_terms.setdefault(site, []).append(term)

    def row_mean(self, x: Node, note: str | None = None) -> Node:
        """Mean over rows (and draws) of a batched per-row scalar: an unbatched scalar."""
        s = self.add(Op.UNBROADCAST, x, shape=(), batched=False, note=note)
        return self.add(Op.MUL, s, self.row_scale(), note=note)

    def row_scale(self) -> Node:
        if "row_scale" not in self.cache:
            self.cache["row_scale"] = self.graph.add(
                Op.ROW_SCALE, (), {"dtype": F64, "shape": (), "batched": False}, name="inv_rows")
        return self.cache["row_scale"]

    # -- estimator pieces ----------------------------------------------------
    def logp(self, sample: Node, note: str | None = None) -> Node:
        """Elementwise log-density of ``sample``'s realised value under its distribution."""
        return self.add(DENSITY_OF[sample.op], *sample.inputs, sample, note=note)

    def qhat(self, info: SiteInfo, costs: tuple[Node, ...] | None = None, note: str | None = None) -> Node:
        """Sum of the sampled costs downstream of the site (a per-row scalar)."""
        return self.total(list(info.downstream_costs if costs is None else costs), note=note,
                          name=f"qhat.{info.name}")

    def baseline(self, info: SiteInfo, q: Node, note: str | None = None) -> Node | None:
        """A baseline for ``q`` that does not depend on the site's sample, or None."""
        if self.baseline_kind == "ema":
            state = self.graph.add(Op.STATE, (), {"dtype": F64, "shape": (), "batched": False,
                                                  "name": f"ema_{info.name}"},
                                   name=f"ema_{info.name}", note=note)
            self.ema_updates[f"ema_{info.name}"] = self.row_mean(q, note=f"EMA update for {info.name}")
            return state
        if self.baseline_kind == "loo":
            return self.add(Op.LOO_BASELINE, q, note=note, name=f"baseline.{info.name}")
        return None

    def score_term(self, info: SiteInfo, weight: Node, note: str) -> None:
        """Add ``sum(log p(w | pa)) * sg(weight)`` (the score-function surrogate)."""
        lp = self.row_total(self.logp(info.node, note=note), note=note, name=f"logp.{info.name}")
        self.add_term(info.name, self.add(Op.MUL, lp, self.sg(weight, note=note), note=note,
                                          name=f"term.{info.name}"))

    def centered(self, info: SiteInfo, q: Node, note: str) -> Node:
        b = self.baseline(info, q, note=note)
        return q if b is None else self.add(Op.SUB, q, b, note=note, name=f"centered.{info.name}")


def describe_costs(costs: tuple[Node, ...], empty: str = "0") -> str:
    return " + ".join(c.name for c in costs) if costs else empty
