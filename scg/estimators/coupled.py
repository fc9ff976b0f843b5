"""Coupled sampling: a Bernoulli site's antithetic partner and the downstream re-evaluation.

The shared machinery of ARM and DisARM (Yin & Zhou 2019; Dong, Mnih & Tucker 2020),
all of it IR:

* ``site_uniform``: a ``noise_uniform`` node at the site's own random stream, i.e. the
  uniform ``u`` from which the sampler drew ``b~ = 1[u < sigmoid(phi)]`` (bit for bit);
* ``antithetic``: its partner ``b = 1[1 - u < sigmoid(phi)]`` from the same noise;
* ``re_evaluate``: the subgraph from the site to the given costs copied once with the
  site set to another value. Downstream stochastic nodes are re-created as *coupled
  copies*: same op, same random site (``coupled`` attribute), new distribution
  parameters, so each member of the pair re-samples the layers below it from the same
  noise (common random numbers). Reparameterisation noise is shared as it is.

HNCA's counterfactual flips one unit and keeps the children's realised values (it
conditions on them); a coupled member re-samples them instead (it marginalises them),
which is what an antithetic pair over the whole layer needs.
"""

from __future__ import annotations

from scg.estimators.base import SurrogateBuilder
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op
from scg.ir.types import F64
from scg.passes.dependencies import SiteInfo
from scg.passes.rewrite import between


def reevaluable(info: SiteInfo) -> tuple[tuple[Node, ...], tuple[Node, ...]]:
    """(white costs the pair re-evaluates, opaque costs that need the site's score term instead)."""
    white = tuple(c for c in info.downstream_costs if c.op is Op.COST and not c.attrs.get("blackbox"))
    opaque = tuple(c for c in info.downstream_costs if c not in white)
    return white, opaque


def site_uniform(b: SurrogateBuilder, u: Node, note: str) -> Node:
    """The uniform of ``u``'s random stream (per-row shape ``u.shape``)."""
    return b.graph.add(Op.NOISE_UNIFORM, (), {"shape": u.shape, "dtype": F64, "batched": True,
                                              "site": u.attrs["site"], "sample": u.name}, note=note,
                       name=f"u.{u.name}")


def antithetic(b: SurrogateBuilder, u: Node, noise: Node, note: str) -> tuple[Node, Node]:
    """``(sigmoid(phi), 1[1 - u < sigmoid(phi)])``: the partner of the realised ``1[u < sigmoid(phi)]``."""
    s = b.add(Op.SIGMOID, u.inputs[0], note=note)
    return s, b.add(Op.GREATER, s, b.add(Op.SUB, 1.0, noise, note=note), note=note, name=f"partner.{u.name}")


def re_evaluate(graph: Graph, model_nodes: tuple[Node, ...], site: Node, value: Node,
                targets: tuple[Node, ...], note: str) -> list[Node]:
    """``targets`` (costs) recomputed with ``site := value``, downstream samples re-drawn from the same noise."""
    only = between([site], targets)
    subst: dict[int, Node] = {id(site): value}
    for node in model_nodes:
        if id(node) in subst or id(node) not in only:
            continue
        ins = tuple(subst.get(id(x), x) for x in node.inputs)
        if node.op is Op.COST:
            subst[id(node)] = ins[0]
        elif node.op in STOCHASTIC_OPS:
            attrs = dict(node.attrs, coupled=f"{node.name} re-drawn for {site.name}")
            subst[id(node)] = graph.add(node.op, ins, attrs, origin=node.origin, note=note)
        else:
            subst[id(node)] = graph.add(node.op, ins, node.attrs, origin=node.origin, note=note)
    return [subst.get(id(t), t) for t in targets]
