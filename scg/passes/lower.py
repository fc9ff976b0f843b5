"""Lowering: decide, per node, how a loop-generating backend computes it (target-agnostic).

``lower(graph)`` is a pure function returning a frozen :class:`Lowered`: every
node's :class:`OpClass` (the shape of loop nest that computes it) plus the
index operands that must be range-checked before a kernel reads them. The
fusion pass (``scg.passes.fuse``) groups nodes by these classes.

Composite ops (densities, softplus, logsumexp, softmax, the HNCA counterfactual
terms) are *not* rewritten into primitive IR nodes here: a graph-level expansion
would change the rounding of every value against the NumPy specification
(the parity contract). Instead each composite is classified as a loop shape and
expanded at template level into scalar primitive code inside its fused loop;
e.g. ``hnca_affine_delta`` becomes one loop nest over (parents x children) per
row whose inner body is a softplus and two multiply-adds (Young 2022, sec. 4),
never a (rows x parents x children) tensor.

Classes:

* ``MAP``: elementwise over the node's own per-row shape (with broadcasting
  reads); fuses with other maps of the same shape into one loop.
* ``REDUCE``: a sum/mean of a whole per-row value down to one number per row;
  fuses into the loop that produces its operand (an accumulator).
* ``ROWOP``: needs a whole row of an operand (softmax, logsumexp, categorical
  sampling and density, HNCA counterfactuals); its own loop nest per row.
* ``CROSS``: couples rows (leave-one-out baseline across draws, the sum over rows
  of an unbroadcast); its own generated kernel.
* ``BLAS``: matmul and outer_sum: one BLAS call on the whole batch.
* ``HOST``: everything unbatched (parameter-side algebra, constants) and rare
  layouts without a template; run by the NumPy rule between kernels.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Kind, Op


class OpClass(enum.Enum):
    MAP = "map"
    REDUCE = "reduce"
    ROWOP = "rowop"
    CROSS = "cross"
    BLAS = "blas"
    HOST = "host"
    LEAF = "leaf"  # supplied by the caller (inputs, params, external costs, state)


ROW_CLASSES = frozenset({OpClass.MAP, OpClass.REDUCE, OpClass.ROWOP})

_MAP_OPS = frozenset({
    Op.COST, Op.STOP_GRADIENT, Op.BROADCAST_TO, Op.ONE_HOT, Op.TAKE, Op.BERNOULLI, Op.NORMAL,
    Op.NOISE_NORMAL, Op.NOISE_UNIFORM, Op.ROW_SCALE, Op.BERNOULLI_LOGP, Op.NORMAL_LOGP,
})
_ROW_OPS = frozenset({Op.SOFTMAX, Op.LOG_SOFTMAX, Op.CATEGORICAL, Op.CATEGORICAL_LOGP,
                      Op.HNCA_AFFINE_DELTA, Op.HNCA_ONEHOT_LOGLIK})
# row ops whose loop nests read operands as whole rows of arrays (never from registers)
ARRAY_OPERAND_OPS = frozenset({Op.HNCA_AFFINE_DELTA, Op.HNCA_ONEHOT_LOGLIK})
# op -> (index operand position, depth source) of ops whose integer operand must be range-checked
INDEX_OPERANDS = {Op.ONE_HOT: 0, Op.TAKE: 1, Op.CATEGORICAL_LOGP: 1}


def _size(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _classify(node: Node) -> OpClass:
    op = node.op
    if op in (Op.INPUT, Op.PARAM, Op.EXTERNAL_COST, Op.STATE):
        return OpClass.LEAF
    if op in (Op.MATMUL, Op.OUTER_SUM):
        return OpClass.BLAS
    if not node.batched:
        return OpClass.HOST
    if op is Op.LOO_BASELINE:
        return OpClass.CROSS if node.inputs[0].batched else OpClass.HOST
    if op.kind in (Kind.UNARY, Kind.BINARY, Kind.TERNARY) or op in _MAP_OPS:
        return OpClass.MAP
    if op is Op.RESHAPE:  # only reshapes that add or drop size-1 axes are index renamings
        return OpClass.MAP if squeezed(node.shape) == squeezed(node.inputs[0].shape) else OpClass.HOST
    if op is Op.UNBROADCAST:
        src = node.inputs[0]
        if src.shape == node.shape:
            return OpClass.MAP if src.batched else OpClass.HOST
        return OpClass.REDUCE if _size(node.shape) == 1 and src.batched else OpClass.HOST
    if op in (Op.SUM, Op.MEAN):
        return OpClass.REDUCE if _size(node.shape) == 1 else OpClass.HOST
    if op is Op.LOGSUMEXP:
        t = node.inputs[0]
        whole = _size(node.shape) == 1
        return OpClass.ROWOP if whole or tuple(node.attrs["axes"]) == (t.rank - 1,) else OpClass.HOST
    if op in _ROW_OPS:
        return OpClass.ROWOP
    return OpClass.HOST


def _unbroadcast_rows(node: Node) -> bool:
    """A batched -> unbatched unbroadcast that is a plain sum over rows (a CROSS kernel)."""
    if node.op is not Op.UNBROADCAST:
        return False
    src = node.inputs[0]
    return src.batched and not node.batched and src.shape == node.shape


@dataclass(frozen=True)
class Lowered:
    """How each node is computed: ``classes[uid]``; ``checked[uid]`` = uid of its index operand."""

    graph: Graph
    classes: Mapping[int, OpClass]
    checked: Mapping[int, int]

    def cls(self, node: Node) -> OpClass:
        return self.classes[node.uid]


def lower(graph: Graph) -> Lowered:
    """Classify every node of ``graph`` (pure: the graph is not modified)."""
    classes: dict[int, OpClass] = {}
    checked: dict[int, int] = {}
    for node in graph.nodes:
        cls = _classify(node)
        if _unbroadcast_rows(node):
            cls = OpClass.CROSS
        classes[node.uid] = cls
        pos = INDEX_OPERANDS.get(node.op)
        if pos is not None and cls in ROW_CLASSES and node.inputs[pos].op is not Op.CATEGORICAL:
            checked[node.uid] = node.inputs[pos].uid  # samples are in range by construction
    return Lowered(graph, MappingProxyType(classes), MappingProxyType(checked))
