"""DiCE, the infinitely differentiable Monte-Carlo estimator (Foerster et al. 2018, eq. 3 and Thm 1).

With ``magic(x) = exp(x - sg(x))`` (value 1, derivative ``magic(x) dx``), the
DiCE objective of one row is

    L = sum_c magic(S_c) * c,      S_c = sum of log p(w | DEPS_w) over the stochastic ancestors w of c

(every element of a multi-element sample counts). Its value is the sampled total
cost, and its ``n``-th derivative, for every ``n``, is an unbiased estimate of the
``n``-th derivative of ``J`` (Thm 1): the first is the score-function estimator
with downstream costs (plus the pathwise term of each cost), the second an
unbiased Hessian, unlike the second derivative of the Schulman surrogate
``log p * sg(c) + c``, which drops the score-score and score-cost cross terms
(the classic error; toy: ``b ~ Bern(sigmoid(t))``, cost ``(b + 0.5) t^2`` at
``t = 0.3`` has ``J'' = 2.438959``, the surrogate's mean is 2.125246).

Derivatives are IR: ``grad`` of ``L`` gives the gradient, and the Hessian is the
Jacobian of that gradient by second-order autodiff of the same graph
(`scg.passes.higher`), or a Hessian-vector product for large parameters.

Normal nodes follow the credit routes of `scg.estimators.routing`, which hold at
every order: reparameterised (``loc + scale * eps``) where every cost they reach is
differentiable along smooth ops; reparameterised, with ``log p(sg(z))`` added to
the magic of the opaque (black-box or external) costs they reach, where only
those break the route; and otherwise a plain DiCE node (its log-density in the
magic of all its downstream costs, its value held). Graphs with no unbiased
estimate (a black-box cost depending on a param directly, ...) are refused there.

Loaded DiCE (Farquhar et al. 2019, eq. 9 without baselines): ``options={"loaded_lambda": lam}``
weights each log-density in ``S_c`` by ``lam ** d(w, c)``, where ``d(w, c)`` is the
largest number of stochastic nodes on a path from ``w`` to ``c`` (``w`` excluded):
in a sequence ``a_0 -> s_1 -> a_1 -> ...`` it is the time lag ``t - t'``. ``lam = 1`` is
DiCE; ``lam < 1`` trades bias for variance in every order (biased: a warning, and
``est.unbiased`` is False).

Baselines (Mao et al. 2019, sec. 3): ``sum_w (1 - magic(log p(w))) * sg(b_w)``
has expectation zero in every derivative order when ``b_w`` does not depend on
``w`` (``sum_w p(w) = 1`` identically); ``"ema"`` and ``"loo"`` give ``b_w``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from scg.estimators.base import SurrogateBuilder
from scg.estimators.pathwise import density_inputs, reparameterise
from scg.estimators.routing import route
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import REPARAMETERISABLE_OPS, STOCHASTIC_OPS, Op
from scg.ir.types import F64
from scg.ir.verify import maybe_verify
from scg.passes.autodiff import grad
from scg.passes.dependencies import Dependencies, analyse, is_opaque, named_nodes
from scg.passes.higher import hessian, hvp
from scg.passes.simplify import simplify

DEFAULT_MAX_HESSIAN_SIZE = 64  # total parameter elements for which order=2 builds every Hessian block


@dataclass(frozen=True)
class DerivedDice:
    graph: Graph                                  # the estimator IR
    assignment: Mapping[str, str]                 # sample name -> "dice" (score, in magic) or "pathwise"
    hessian_keys: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # output key -> (p, q)
    hvp_vectors: Mapping[str, str] = field(default_factory=dict)  # param -> its vector leaf's name


def assign(model: Graph) -> tuple[dict[str, str], dict[str, tuple[str, ...]]]:
    """``"pathwise"`` or ``"dice"`` per sample, and per pathwise node the opaque costs its score serves."""
    wanted = {name: "pathwise" if n.op in REPARAMETERISABLE_OPS else "dice" for name, n in model.samples.items()}
    routing = route(model, wanted)
    assignment = {name: "pathwise" if e == "pathwise" else "dice" for name, e in routing.assignment.items()}
    return assignment, dict(routing.score_costs)


def _magic(b: SurrogateBuilder, x: Node, note: str) -> Node:
    """``magic(x) = exp(x - sg(x))``: 1 in value, ``magic(x) dx`` in derivative, at every order."""
    return b.add(Op.EXP, b.add(Op.SUB, x, b.sg(x, note=note), note=note), note=note)


class _Lags:
    """``d(w, c)``: the most stochastic nodes on a path from ``w`` to cost ``c``, ``w`` excluded (Loaded DiCE)."""

    def __init__(self, graph: Graph):
        self.graph, self.named, self._depths = graph, named_nodes(graph), {}

    def _depth(self, start: Node) -> dict[int, int]:
        if id(start) not in self._depths:
            depth = {id(start): 0}
            for n in self.graph.nodes:
                reached = [depth[id(x)] for x in n.inputs if id(x) in depth]
                if reached:
                    depth[id(n)] = max(reached) + (1 if n.op in STOCHASTIC_OPS else 0)
            self._depths[id(start)] = depth
        return self._depths[id(start)]

    def __call__(self, start: Node, cost: Node) -> int:
        depth = self._depth(start)
        if cost.op is not Op.EXTERNAL_COST:
            return depth.get(id(cost), 0)
        declared = cost.attrs.get("depends_on")
        sources = [self.named[s] for s in declared] if declared is not None else [
            n for n in self.graph.nodes if n.op in STOCHASTIC_OPS]
        return max((depth[id(s)] for s in sources if id(s) in depth), default=0)


def _objective(b: SurrogateBuilder, deps: Dependencies, held: dict[str, tuple[Node, tuple[str, ...]]],
               loaded: float = 1.0) -> Node:
    """``sum_c magic(S_c) c``; ``held`` maps a pathwise node to (its node, the opaque costs it scores);
    ``loaded`` is Loaded DiCE's ``lambda``."""
    logp: dict[str, Node] = {}
    lags = _Lags(b.graph)

    def weighted(lp: Node, start: Node, cost: Node, note: str) -> tuple[Node, str]:
        lag = lags(start, cost) if loaded != 1.0 else 0
        if lag == 0:
            return lp, ""
        return b.add(Op.MUL, lp, loaded**lag, note=note), f" * {loaded:g}^{lag}"

    def site_logp(info) -> Node:
        if info.name not in logp:
            note = f"dice: log p({info.name})"
            logp[info.name] = b.row_total(b.logp(info.node, note=note), note=note)
        return logp[info.name]

    def held_logp(name: str, z: Node) -> Node:
        if name not in logp:
            note = f"dice: log p(sg({name})) (pathwise, scored for opaque costs)"
            loc, scale = density_inputs(z)
            logp[name] = b.row_total(b.add(Op.NORMAL_LOGP, loc, scale, b.sg(z, note=note), note=note), note=note)
        return logp[name]

    terms = []
    for cost in deps.costs:
        ancestors = [info for info in deps.sites.values() if any(c is cost for c in info.downstream_costs)]
        scored = [(name, z) for name, (z, costs) in held.items() if cost.name in costs]
        opaque = is_opaque(cost)
        parts = ([(site_logp(i), i.node, f"log p({i.name})") for i in ancestors]
                 + [(held_logp(name, z), z, f"log p(sg({name}))") for name, z in scored])
        lps, names = [], []
        for lp, start, label in parts:
            lp, factor = weighted(lp, start, cost, f"loaded dice for {cost.name}")
            lps.append(lp)
            names.append(label + factor)
        note = f"dice for {cost.name}: magic({' + '.join(names)}) * {'sg(' + cost.name + ')' if opaque else cost.name}"
        value = b.sg(cost, note=note) if opaque else cost
        if lps:
            value = b.add(Op.MUL, _magic(b, b.total(lps, note=note), note), value, note=note)
        terms.append(value)
    for name, info in deps.sites.items():
        if not info.downstream_costs or b.baseline_kind is None:
            continue
        note = f"dice baseline for {name} (Mao et al. 2019): (1 - magic(log p({name}))) * sg(b)"
        base = b.baseline(info, b.qhat(info, note=note), note=note)
        one_minus = b.add(Op.SUB, 1.0, _magic(b, site_logp(info), note), note=note)
        terms.append(b.add(Op.MUL, one_minus, b.sg(base, note=note), note=note))
    return b.total(terms, note="dice objective")


def _vector_names(model: Graph) -> dict[str, str]:
    taken = {n.name for n in model.nodes if n.name}
    out = {}
    for p in model.params:
        name = f"{p}.v"
        while name in taken:
            name += "_"
        out[p] = name
    return out


def derive_dice(model: Graph, baseline: str | None = None, *, order: int = 1,
                max_hessian_size: int = DEFAULT_MAX_HESSIAN_SIZE, hvp_only: bool = False,
                loaded_lambda: float = 1.0) -> DerivedDice:
    """The DiCE estimator graph: outputs as `derive`'s, plus ``hessian/<i>`` blocks (``order=2``) or,
    with ``hvp_only``, ``hvp/<param>`` outputs fed by one vector param ``<param>.v`` per param."""
    assignment, score_costs = assign(model)
    graph, rewritten = reparameterise(model, {n for n, e in assignment.items() if e == "pathwise"})
    maybe_verify(graph, "reparameterise")
    deps = analyse(graph)

    builder = SurrogateBuilder(graph.derive(f"{model.name}.dice"), deps, baseline)
    held = {name: (rewritten[name], costs) for name, costs in score_costs.items()}
    surrogate = _objective(builder, deps, held, loaded_lambda)
    loss = builder.add(Op.MUL, surrogate, builder.row_scale(), note="dice objective", name="surrogate")
    params = [builder.graph[p] for p in model.params]
    graph, grads = grad(builder.graph, loss, params, note="autodiff")
    graph = maybe_verify(graph, "grad")

    extra: dict[str, Node] = {}
    keys: dict[str, tuple[str, str]] = {}
    vectors: dict[str, str] = {}
    if hvp_only:
        vectors = _vector_names(model)
        leaves = [graph.add(Op.PARAM, (), {"shape": p.shape, "dtype": F64, "batched": False}, name=vectors[p.name],
                            note="hessian-vector product: the vector") for p in params]
        graph, products = hvp(graph, grads, params, leaves)
        extra = {f"hvp/{p.name}": h for p, h in zip(params, products, strict=True)}
    elif order == 2 and 0 < sum(p.type.size for p in params) <= max_hessian_size:
        graph, blocks = hessian(graph, grads, params)
        for i, ((a, c), node) in enumerate(sorted(blocks.items())):
            extra[f"hessian/{i}"] = node
            keys[f"hessian/{i}"] = (params[a].name, params[c].name)
    graph = maybe_verify(graph, "hessian")
    builder.graph = graph

    outputs: dict[str, Node] = {"cost": builder.row_mean(builder.total(list(deps.costs), note="total cost"),
                                                          note="mean total cost")}
    for c in deps.costs:
        outputs[f"cost/{c.name}"] = c
    for name, node in {**graph.samples, **rewritten}.items():
        outputs[f"sample/{name}"] = node
    for p, g in zip(params, grads, strict=True):
        outputs[f"grad/{p.name}"] = g
    for name, node in builder.ema_updates.items():
        outputs[f"ema/{name}"] = node
    outputs.update(extra)
    graph = builder.graph
    graph.outputs = outputs
    graph = maybe_verify(simplify(graph), "simplify")
    return DerivedDice(graph, assignment, keys, vectors)


def total_param_size(model: Graph) -> int:
    return int(sum(np.prod(p.shape, dtype=np.int64) for p in model.params.values()))
