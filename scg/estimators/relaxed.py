"""Relaxed re-evaluation: Concrete / Gumbel-softmax and straight-through Gumbel (a graph pass).

``relax(graph, sites)`` rewrites the model so that the consumers of each named discrete
sample read a continuous relaxation of it, driven by the same noise as the sample:

* Bernoulli with logits ``phi``: ``z = sigmoid((phi + log(1-u) - log u) / tau)`` with
  ``u`` the site's own uniform, so ``z > 1/2`` exactly when the realised ``b = 1[u < s]``
  is 1 (Maddison et al. 2017, eq. 21; Jang et al. 2017);
* Categorical with logits ``l``: ``z = softmax((l + G) / tau)``, ``G = -log(-log v)``
  with ``v`` uniforms of a stream of its own (Maddison et al. 2017, eq. 10).

``"concrete"``: consumers read ``z``; differentiating the relaxed graph pathwise is
unbiased for the *relaxed* objective ``E[f(z)]`` at temperature ``tau``, not for ``E[f(b)]``.
``"gumbel_st"``: consumers read ``straight_through(hard, z)``: the discrete value forward,
``z``'s gradient backward (Bengio et al. 2013; Jang et al. 2017, sec. 2.2); biased for
both objectives (for a cost affine in the sample it equals the Concrete gradient). For a
categorical the hard value is ``one_hot`` of the realised (reported) sample and ``G`` is
drawn given that argmax (``_gumbels_given_argmax``), so ``argmax(l + G)`` is the sample.

Relaxed meanings of the ops that consume a discrete sample: a Bernoulli value is a
float in arithmetic already (every elementwise op, matmul, sums, log-densities,
distribution parameters); a categorical index ``a`` has three: ``one_hot(a) -> z``,
``equal(a, y) -> take(z, y)``, ``take(x, a) -> sum(x * z, -1)``, plus its
``log_prob(a) -> sum(z * log_softmax(l), -1)``. Comparisons (``equal``, ``greater``,
``step``, a ``where`` condition) of a Bernoulli value and every other use of an index have
no relaxation: refused at compile time, naming the op and the sample.
"""

from __future__ import annotations

from collections.abc import Mapping

from scg.errors import EstimatorError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Kind, Op
from scg.ir.types import F64, I64
from scg.passes.rewrite import replay

_NO_RELAXATION = frozenset({Op.EQUAL, Op.GREATER, Op.STEP})


def relax(graph: Graph, sites: Mapping[str, tuple[str, float]]) -> tuple[Graph, dict[str, Node]]:
    """Rewrite ``graph`` so the named samples are read relaxed; ``sites``: name -> (kind, tau)."""
    out = Graph(graph.name)
    relaxed: dict[int, Node] = {}        # id(original sample) -> the value its consumers read
    kinds: dict[int, str] = {}
    used = [n.attrs["site"] for n in graph.nodes if "site" in n.attrs]
    fresh = iter(range(max(used, default=-1) + 1, 1 << 30))

    def add(op, *ins, note, **attrs):
        ins = tuple(x if isinstance(x, Node) else _const(out, x) for x in ins)
        return out.add(op, ins, attrs, note=note)

    def hook(node: Node, inputs: tuple[Node, ...]) -> Node | None:
        if node.op in STOCHASTIC_OPS and node.name in sites:
            kind, tau = sites[node.name]
            sample = out.add(node.op, inputs, node.attrs, name=node.name, origin=node.origin, note=node.note)
            note = f"{kind} for {node.name} (temperature {tau:g})"
            if node.op is Op.BERNOULLI:
                relaxed[id(node)] = _bernoulli(add, out, node, sample, inputs[0], kind, tau, note)
            elif node.op is Op.CATEGORICAL:
                relaxed[id(node)] = _categorical(add, out, node, sample, inputs[0], kind, tau, next(fresh), note)
            else:
                raise EstimatorError(f"{kind} relaxes discrete nodes; {node.label()} is a {node.op.pretty} node")
            kinds[id(node)] = node.op.pretty
            return sample
        hit = [x for x in node.inputs if id(x) in relaxed]
        if not hit:
            return None
        return _consumer(add, out, node, inputs, hit[0], relaxed, sites)

    subst = replay(out, graph.nodes, {}, hook=hook, fresh=True)
    out.outputs = {k: subst.get(id(v), v) for k, v in graph.outputs.items()}
    return out, {n.name: relaxed[id(n)] for n in graph.nodes if id(n) in relaxed}


def _const(graph: Graph, value: float) -> Node:
    return graph.add(Op.CONST, (), {"value": float(value), "dtype": F64, "shape": (), "batched": False})


def _bernoulli(add, out, node, sample, logits, kind, tau, note) -> Node:
    u = out.add(Op.NOISE_UNIFORM, (), {"shape": node.shape, "dtype": F64, "batched": True,
                                       "site": node.attrs["site"], "sample": node.name}, note=note)
    logistic = add(Op.SUB, add(Op.LOG, add(Op.SUB, 1.0, u, note=note), note=note), add(Op.LOG, u, note=note),
                   note=note)
    z = add(Op.SIGMOID, add(Op.DIV, add(Op.ADD, logits, logistic, note=note), tau, note=note), note=note)
    return z if kind == "concrete" else add(Op.STRAIGHT_THROUGH, sample, z, note=note)


def _categorical(add, out, node, sample, logits, kind, tau, site, note) -> Node:
    k = logits.shape[-1]
    shape = node.shape + (k,)
    v = out.add(Op.NOISE_UNIFORM, (), {"shape": shape, "dtype": F64, "batched": True, "site": site,
                                       "sample": f"{node.name}/gumbel"}, note=note)
    axis = len(shape) - 1
    if kind == "concrete":
        gumbel = add(Op.NEG, add(Op.LOG, add(Op.NEG, add(Op.LOG, v, note=note), note=note), note=note), note=note)
        return add(Op.SOFTMAX, add(Op.DIV, add(Op.ADD, logits, gumbel, note=note), tau, note=note), note=note,
                   axis=axis)
    # straight-through: the forward value is one_hot(sample), the draw out.samples reports, so the
    # perturbed logits must have their argmax there: drawn from the Gumbels conditioned on it
    hard = add(Op.ONE_HOT, sample, note=note, depth=k)
    given = _gumbels_given_argmax(add, logits, hard, v, axis, note)
    if logits.type != given.type:   # unbatched logits: the soft side needs the per-draw type
        logits = add(Op.BROADCAST_TO, logits, note=note, shape=given.shape, batched=given.batched)
    perturbed = add(Op.STRAIGHT_THROUGH, given, logits, note=note)
    z = add(Op.SOFTMAX, add(Op.DIV, perturbed, tau, note=note), note=note, axis=axis)
    return add(Op.STRAIGHT_THROUGH, hard, z, note=note)


def _gumbels_given_argmax(add, logits, hard, v, axis, note) -> Node:
    """``log_softmax(l) + G`` for iid Gumbels ``G`` conditioned on the argmax being ``hard``'s class.

    Top-down construction (Maddison, Tarlow & Minka 2014, A* sampling; Tucker et al. 2017,
    REBAR, appendix C): with ``E = -log v`` (iid Exp(1)) and log-probabilities ``lp``, the
    maximum is ``M = -log E_b`` and the others are Gumbels truncated below it,
    ``-log(E_i exp(-lp_i) + E_b)``. With ``b`` drawn from the categorical, ``(b, G)`` has
    the joint law of ``b = argmax(l + G)``, ``G`` iid Gumbel: so the straight-through value
    (``straight_through(perturbed, l)``: this value, the gradient of ``l + G`` at fixed
    ``G``) gives the usual straight-through Gumbel estimator, with its forward draw ``b``.
    """
    lp = add(Op.LOG_SOFTMAX, logits, note=note, axis=axis)
    e = add(Op.NEG, add(Op.LOG, v, note=note), note=note)
    e_top = add(Op.SUM, add(Op.MUL, hard, e, note=note), note=note, axes=(axis,), keepdims=True)
    below = add(Op.NEG, add(Op.LOG, add(Op.ADD, add(Op.MUL, e, add(Op.EXP, add(Op.NEG, lp, note=note), note=note),
                                                     note=note), e_top, note=note), note=note), note=note)
    top = add(Op.NEG, add(Op.LOG, e_top, note=note), note=note)
    return add(Op.WHERE, hard, top, below, note=note)


def _consumer(add, out: Graph, node: Node, inputs: tuple[Node, ...], sample: Node, relaxed, sites) -> Node:
    """The relaxed meaning of ``node``, one of whose inputs is the relaxed ``sample``."""
    y = relaxed[id(sample)]
    kind = sites[sample.name][0]
    note = f"{kind}: relaxed {node.op.pretty} of {sample.name}"
    if sample.op is Op.BERNOULLI:
        cond = node.op is Op.WHERE and node.inputs[0] is sample
        if node.op in _NO_RELAXATION or cond or node.op.kind is Kind.CREDIT:
            what = "a where condition" if cond else node.op.pretty
            raise EstimatorError(
                f"{kind}: {what} of the Bernoulli sample {sample.label()} has no continuous relaxation "
                f"(its gradient is zero almost everywhere). Use another estimator for {sample.name!r}, e.g. "
                f"estimator={{'default': {kind!r}, {sample.name!r}: 'disarm'}}")
        ins = tuple(relaxed.get(id(x), n) for x, n in zip(node.inputs, inputs, strict=True))
        return out.add(node.op, ins, node.attrs, name=node.name, origin=node.origin, note=node.note or note)
    # a categorical index: only one_hot, equal with an integer, take and log_prob have relaxed meanings
    if node.op is Op.ONE_HOT and node.attrs["depth"] == y.shape[-1]:
        return y
    if node.op is Op.EQUAL:
        other = inputs[1] if node.inputs[0] is sample else inputs[0]
        if other.dtype == I64 and id(other) not in relaxed and other.shape == sample.shape:
            return add(Op.TAKE, y, other, note=note)
    if node.op is Op.TAKE and node.inputs[1] is sample and node.inputs[0] is not sample:
        return add(Op.SUM, add(Op.MUL, inputs[0], y, note=note), note=note, axes=(len(y.shape) - 1,),
                   keepdims=False)
    if node.op is Op.CATEGORICAL_LOGP and node.inputs[1] is sample:
        logp = add(Op.MUL, y, add(Op.LOG_SOFTMAX, inputs[0], note=note, axis=len(inputs[0].shape) - 1), note=note)
        return add(Op.SUM, logp, note=note, axes=(len(logp.shape) - 1,), keepdims=False)
    raise EstimatorError(
        f"{kind}: {node.op.pretty} of the categorical sample {sample.label()} has no continuous relaxation; "
        f"relaxed meanings exist for one_hot(a), equal(a, y) with an int y of a's shape, take(x, a) and "
        f"log_prob(a). Use another estimator for {sample.name!r}, e.g. "
        f"estimator={{'default': {kind!r}, {sample.name!r}: 'reinforce'}}")
