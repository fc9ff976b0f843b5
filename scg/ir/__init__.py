"""The scg intermediate representation: one node type, an op enum, a graph."""

from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import DISCRETE_OPS, REPARAMETERISABLE_OPS, STOCHASTIC_OPS, Kind, Op
from scg.ir.printer import format_graph
from scg.ir.types import F64, I64, TensorType
from scg.ir.verify import maybe_verify, verify

__all__ = [
    "DISCRETE_OPS",
    "F64",
    "I64",
    "REPARAMETERISABLE_OPS",
    "STOCHASTIC_OPS",
    "Graph",
    "Kind",
    "Node",
    "Op",
    "TensorType",
    "format_graph",
    "maybe_verify",
    "verify",
]
