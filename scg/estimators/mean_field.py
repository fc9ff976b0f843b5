"""MuProp's mean-field network (Gu et al. 2016, sec. 3): every sample replaced by its mean.

Built once per estimator graph, inside it. Each sample becomes the mean its row of
the distribution table names, broadcast to one value per row (so MuProp's slope
``f'(xbar)`` is taken per row even when the distribution's parameters are shared
by all rows, e.g. a prior layer): a Bernoulli unit ``sigmoid(logits)``, a Normal
served by the score function its ``loc``, reparameterisation noise 0. A
categorical value has no mean in index space; its uses ``one_hot(a, K)``,
``equal(a, y)``, ``equal(a1, a2)`` and ``to_float(a)`` become ``softmax(logits)``,
``softmax(logits)[y]``, ``sum(p1 * p2)`` and ``sum(k p_k)``, the means of those uses.
Any other use (``take``, a ``one_hot`` of another depth) is evaluated at
``a = 0``: MuProp needs a sample-free expansion point, not the mean, to stay
unbiased, and the IR note says which uses got one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scg.ir.distributions import DISTRIBUTIONS
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import I64
from scg.passes.rewrite import between, replay

NOTE = "muprop mean field"


@dataclass(frozen=True)
class MeanField:
    values: dict[int, Node]     # id(original node) -> its mean-field counterpart
    means: dict[str, Node]      # site name -> mean-field value of a Bernoulli/continuous site
    at_zero: tuple[Node, ...]   # categorical uses with no mean, evaluated at a = 0


def build_mean_field(builder) -> MeanField:
    if "mean_field" in builder.cache:
        return builder.cache["mean_field"]
    graph = builder.graph
    probs: dict[int, Node] = {}   # categorical site -> softmax of its mean-field logits
    means: dict[str, Node] = {}
    fallback: list[Node] = []     # categorical uses evaluated at a = 0

    def add(op, *inputs, **attrs):
        return graph.add(op, inputs, attrs, note=NOTE)

    def batched(x: Node, shape: tuple[int, ...]) -> Node:
        return x if x.batched and x.shape == shape else add(Op.BROADCAST_TO, x, shape=shape, batched=True)

    def hook(node: Node, inputs: tuple[Node, ...]) -> Node | None:
        if node.op in DISTRIBUTIONS:
            mean = DISTRIBUTIONS[node.op].mean
            if mean == "softmax":
                k = inputs[0].shape[-1]
                probs[id(node)] = batched(add(Op.SOFTMAX, inputs[0], axis=len(inputs[0].shape) - 1), (*node.shape, k))
                return None
            value = add(Op.SIGMOID, inputs[0]) if mean == "sigmoid" else inputs[0]
            means[node.name] = batched(value, node.shape)
            return means[node.name]
        if node.op is Op.NOISE_NORMAL:
            zero = graph.add(Op.CONST, (), {"value": 0.0, "dtype": "f64", "shape": (), "batched": False})
            return add(Op.BROADCAST_TO, zero, shape=node.shape, batched=True)
        cats = [x for x in node.inputs if id(x) in probs]
        if not cats:
            return None
        return _categorical_use(node, inputs, cats) or _at_zero(node, inputs)

    def _categorical_use(node: Node, inputs: tuple[Node, ...], cats: list[Node]) -> Node | None:
        cat = cats[0]
        p = probs[id(cat)]
        if node.op is Op.ONE_HOT and node.attrs["depth"] == p.shape[-1]:
            return p
        if node.op is Op.CAST_F:  # E[a] = sum_k k p_k
            k = p.shape[-1]
            ks = np.arange(k, dtype=np.float64)
            ks.setflags(write=False)
            arange = graph.add(Op.CONST, (), {"value": ks, "dtype": "f64", "shape": (k,), "batched": False})
            return add(Op.SUM, add(Op.MUL, p, arange), axes=(len(p.shape) - 1,), keepdims=False)
        if node.op is not Op.EQUAL or cat.shape != ():
            return None
        if len(cats) == 2 and cats[1].shape == () and probs[id(cats[1])].shape == p.shape:
            both = add(Op.MUL, p, probs[id(cats[1])])
            return add(Op.SUM, both, axes=(0,), keepdims=False)
        other = inputs[1] if node.inputs[0] is cat else inputs[0]
        if len(cats) == 1 and other.dtype == I64:
            return add(Op.TAKE, p, other)
        return None

    def _at_zero(node: Node, inputs: tuple[Node, ...]) -> Node:
        fallback.append(node)
        zero = graph.add(Op.CONST, (), {"value": 0, "dtype": I64, "shape": (), "batched": False})
        swapped = tuple(add(Op.BROADCAST_TO, zero, shape=x.shape, batched=True) if id(x) in probs else y
                        for x, y in zip(node.inputs, inputs, strict=True))
        return add(node.op, *swapped, **node.attrs)

    model = builder.model_nodes
    sites = [n for n in model if n.op in STOCHASTIC_OPS or n.op is Op.NOISE_NORMAL]
    costs = [n for n in model if n.op is Op.COST and not n.attrs.get("blackbox")]
    values = replay(graph, model, {}, hook=hook, note=NOTE, only=between(sites, costs))
    result = MeanField(values, means, tuple(fallback))
    builder.cache["mean_field"] = result
    return result
