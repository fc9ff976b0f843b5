"""From a model graph to its estimator graph: the derivation pipeline.

Straight-line stages, each a pure function, verified after each with
``SCG_CHECKS=1`` and printable with ``SCG_DUMP=after:<stage>``:

0. ``route``: which (Normal node, cost) pairs get pathwise credit, which a score term
   (:mod:`scg.estimators.routing`); graphs with no unbiased estimate are refused;
1. ``reparameterise``: Normal nodes served pathwise become ``loc + scale * eps``;
2. ``analyse``: downstream costs, direct costs, children of every sample;
3. ``surrogate``: each sample's estimator adds its terms (provenance-noted);
4. ``grad``: reverse-mode autodiff of ``mean over rows of (terms + costs)``;
5. ``simplify``: CSE, DCE and algebraic folding.

The result's outputs: ``cost`` (mean total cost), ``cost/<name>``,
``sample/<name>``, ``grad/<param>``, ``ema/<node>`` (EMA baseline updates) and
``surrogate/<site>`` (the per-row surrogate terms crediting each site, so every
site's term stays visible in the printed IR) and, for REBAR/RELAX with ``cv_lr > 0``,
``cvgrad/<key>`` (the gradient of ``sum(g^2)`` w.r.t. each control-variate state entry:
second-order autodiff through the ``grad`` stage's output).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx

from scg.errors import ScgWarning
from scg.estimators import learned_cv, score_function, vimco, zoo
from scg.estimators.base import SurrogateBuilder
from scg.estimators.pathwise import reparameterise
from scg.estimators.registry import SITE_RULES, assign
from scg.estimators.routing import route
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.verify import maybe_verify
from scg.passes.autodiff import grad
from scg.passes.dependencies import analyse
from scg.passes.simplify import simplify


@dataclass(frozen=True)
class Derived:
    graph: Graph                      # the estimator IR
    assignment: Mapping[str, str]     # sample name -> estimator used for it
    baseline: str | None
    objective: str = "mean"
    options: Mapping = None       # resolved estimator options (temperature, ...)
    unbiased: bool = True         # False when a biased estimator (concrete, gumbel_st) serves a node
    cv_state: Mapping = None      # rebar/relax: state key -> initial value of the control-variate parameters


def derive(model: Graph, estimator: str | Mapping[str, str] = "scg", baseline: str | None = None,
           objective: str = "mean", options: Mapping | None = None) -> Derived:
    assigned = assign(model, estimator)
    opts = zoo.check(model, assigned, objective, options)
    zoo.warn_biased(assigned, opts)
    routing = route(model, assigned)
    zoo.check_routing(routing, objective)
    assignment = routing.assignment
    label = estimator if isinstance(estimator, str) else "mixed"
    pathwise = {n for n, e in assignment.items() if e == "pathwise"}
    graph, rewritten = reparameterise(model, pathwise)
    maybe_verify(graph, "reparameterise")
    graph, relaxed = zoo.relax_sites(graph, assignment, opts)
    maybe_verify(graph, "relax")
    deps = analyse(graph)
    _warn_about_dead_ends(graph, deps, skip=set(relaxed))

    work = graph.derive(f"{model.name}.{label}")
    builder = SurrogateBuilder(work, deps, baseline)
    builder.cache["objective"] = objective
    builder.cache["options"] = opts
    builder.cache["learned_cv"] = {n: e for n, e in assignment.items() if e in zoo.LEARNED}
    for name, info in deps.sites.items():
        if name in routing.reasons:
            score_function.derive_site(builder, info, label=f"score function (not pathwise: {routing.reasons[name]})")
        else:
            SITE_RULES[assignment[name]](builder, info)
    costs_by_name = {c.name: c for c in deps.costs}
    for name, opaque in routing.score_costs.items():
        score_function.derive_opaque_part(builder, rewritten[name], tuple(costs_by_name[c] for c in opaque))
    graph = maybe_verify(builder.graph, "surrogate")

    note = "surrogate loss"
    white = [c for c in deps.costs if c.op is Op.COST and not c.attrs.get("blackbox")]
    if objective == "iwae":
        white = vimco.objective_costs(builder, white)
    surrogate = builder.total(builder.terms + white, note=note)
    loss = builder.add(Op.MUL, surrogate, builder.row_scale(), note=note, name="surrogate")
    graph = builder.graph
    params = list(model.params.values())
    graph, grads = grad(graph, loss, params, note="autodiff")
    graph = maybe_verify(graph, "grad")
    cv = learned_cv.cv_state(builder)
    cv_grads = {}
    if cv and opts.get("cv_lr", 0.0) > 0:  # frozen control variates need no second-order pass
        graph, cv_grads = learned_cv.variance_gradient(graph, grads, cv)
        graph = maybe_verify(graph, "variance gradient")
    builder.graph = graph

    outputs: dict[str, Node] = {}
    costs = list(deps.costs)
    outputs["cost"] = builder.row_mean(builder.total(costs, note="total cost"), note="mean total cost")
    if objective == "iwae":
        outputs["objective"] = vimco.objective_value(builder)
    for c in costs:
        outputs[f"cost/{c.name}"] = c
    for name, node in graph.samples.items():
        if name is not None:  # unnamed: coupled copies re-drawn for ARM/DisARM
            outputs[f"sample/{name}"] = node
    for name, node in rewritten.items():
        outputs[f"sample/{name}"] = node
    for p, g in zip(params, grads, strict=True):
        outputs[f"grad/{p.name}"] = g
    for name, node in builder.ema_updates.items():
        outputs[f"ema/{name}"] = node
    for key, g in cv_grads.items():
        outputs[f"cvgrad/{key}"] = g
    for name, terms in builder.site_terms.items():
        outputs[f"surrogate/{name}"] = builder.total(terms, note=f"surrogate terms crediting {name}")
    graph = builder.graph
    graph.outputs = outputs
    graph = maybe_verify(simplify(graph), "simplify")
    return Derived(graph, dict(assignment), baseline, objective, opts, zoo.unbiased(assignment),
                   {k: init for k, (_node, init) in cv.items()})


def _warn_about_dead_ends(graph: Graph, deps, skip: set[str] = frozenset()) -> None:
    """Legal but probably unintended: samples no cost sees, params no cost depends on."""
    for name, info in deps.sites.items():
        if not info.downstream_costs and name not in skip:  # a relaxed sample's consumers read its relaxation
            warnings.warn(ScgWarning(f"stochastic node {name!r} has no path to any cost: it is sampled, "
                                     "but no estimator term is derived for it"), stacklevel=5)
    view = graph.to_networkx()
    live = set().union(*(nx.ancestors(view, c.uid) for c in deps.costs)) if deps.costs else set()
    for name, p in graph.params.items():
        if p.uid not in live:
            warnings.warn(ScgWarning(f"param {name!r} influences no cost: its gradient is always zero"),
                          stacklevel=5)
