"""MuProp's mean-field network (Gu et al. 2016, sec. 3): every sample replaced by its mean.

Built once per estimator graph, inside it: a Bernoulli unit becomes
``sigmoid(logits)``, reparameterisation noise becomes 0 (so a pathwise Normal
becomes its ``loc``). A categorical value has no mean in index space; its uses
``one_hot(a)`` and ``equal(a, y)`` become ``softmax(logits)`` and
``softmax(logits)[y]``, the mean of the one-hot encoding. Any other use of a
categorical value cannot be mean-fielded and raises an error naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

from scg.errors import EstimatorError
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import I64
from scg.passes.rewrite import between, replay

NOTE = "muprop mean field"


@dataclass(frozen=True)
class MeanField:
    values: dict[int, Node]     # id(original node) -> its mean-field counterpart
    means: dict[str, Node]      # site name -> mean-field value of a Bernoulli/continuous site


def build_mean_field(builder) -> MeanField:
    if "mean_field" in builder.cache:
        return builder.cache["mean_field"]
    graph = builder.graph
    probs: dict[int, Node] = {}   # categorical site -> softmax of its mean-field logits
    means: dict[str, Node] = {}

    def add(op, *inputs, **attrs):
        return graph.add(op, inputs, attrs, note=NOTE)

    def hook(node: Node, inputs: tuple[Node, ...]) -> Node | None:
        if node.op is Op.BERNOULLI:
            means[node.name] = add(Op.SIGMOID, inputs[0])
            return means[node.name]
        if node.op is Op.CATEGORICAL:
            probs[id(node)] = add(Op.SOFTMAX, inputs[0], axis=len(inputs[0].shape) - 1)
            return None
        if node.op is Op.NORMAL:
            raise EstimatorError(f"muprop: Normal node {node.label()} should have been reparameterised first")
        if node.op is Op.NOISE_NORMAL:
            zero = graph.add(Op.CONST, (), {"value": 0.0, "dtype": "f64", "shape": (), "batched": False})
            return add(Op.BROADCAST_TO, zero, shape=node.shape, batched=True)
        cats = [x for x in node.inputs if id(x) in probs]
        if not cats:
            return None
        (cat,) = cats
        if node.op is Op.ONE_HOT and cat.shape == () and node.attrs["depth"] == probs[id(cat)].shape[-1]:
            return probs[id(cat)]
        other = node.inputs[1] if node.inputs[0] is cat else node.inputs[0]
        if node.op is Op.EQUAL and other.dtype == I64 and id(other) not in probs and cat.shape == ():
            return add(Op.TAKE, probs[id(cat)], inputs[1] if node.inputs[0] is cat else inputs[0])
        raise EstimatorError(
            f"muprop: cannot form a mean-field value for {node.label()} ({node.op.pretty}) of the categorical "
            f"sample {cat.label()}; only one_hot(a) and equal(a, y) have one. Use "
            f"estimator={{'default': 'muprop', ...}} with 'reinforce' for the nodes upstream of it")
    model = builder.model_nodes
    sites = [n for n in model if n.op in STOCHASTIC_OPS or n.op is Op.NOISE_NORMAL]
    costs = [n for n in model if n.op is Op.COST and not n.attrs.get("blackbox")]
    values = replay(graph, model, {}, hook=hook, note=NOTE, only=between(sites, costs))
    result = MeanField(values, means)
    builder.cache["mean_field"] = result
    return result
