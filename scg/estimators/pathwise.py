"""The pathwise (reparameterisation) rewrite, Kingma & Welling 2014; Schulman et al. 2015, sec. 2.

A Normal sample ``z ~ N(loc, scale)`` becomes the deterministic node
``z = loc + scale * eps`` with ``eps ~ N(0, 1)`` drawn at the same random site,
so the rewritten graph produces bit-identical values and gradients flow through
``z`` into every cost downstream (the second sum of the Schulman surrogate).
"""

from __future__ import annotations

from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import F64
from scg.passes.rewrite import replay


def reparameterise(graph: Graph, sites: set[str]) -> tuple[Graph, dict[str, Node]]:
    """Rewrite the Normal samples named in ``sites``; return the graph and their new nodes.

    A rewritten node keeps its distribution's parameters reachable as ``z.inputs[0]``
    (``loc``) and ``z.inputs[1].inputs[0]`` (``scale``): :func:`density_inputs`.
    """
    out = Graph(graph.name)
    rewritten: dict[str, Node] = {}

    def hook(node: Node, inputs: tuple[Node, ...]) -> Node | None:
        if node.op is not Op.NORMAL or node.name not in sites:
            return None
        note = f"pathwise for {node.name}"
        loc, scale = inputs
        eps = out.add(Op.NOISE_NORMAL, (), {"shape": node.shape, "dtype": F64, "batched": True,
                                            "site": node.attrs["site"], "sample": node.name}, note=note)
        scaled = out.add(Op.MUL, (scale, eps), {}, note=note)
        z = out.add(Op.ADD, (loc, scaled), {}, name=node.name, note=note, origin=node.origin)
        rewritten[node.name] = z
        return z

    subst = replay(out, graph.nodes, {}, hook=hook, fresh=True)
    out.outputs = {k: subst.get(id(v), v) for k, v in graph.outputs.items()}
    return out, rewritten


def density_inputs(z: Node) -> tuple[Node, Node]:
    """``(loc, scale)`` of a node made by :func:`reparameterise`."""
    loc, scaled = z.inputs
    return loc, scaled.inputs[0]
