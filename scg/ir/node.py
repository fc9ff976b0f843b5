"""The one node type of the scg IR."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from scg.ir.ops import Op
from scg.ir.types import TensorType

_ids = itertools.count()


class Node:
    """An immutable IR node: ``op`` applied to ``inputs`` with ``attrs``.

    ``name`` is the user's name hint (inputs, params, samples, costs, or a name a
    pass chose); ``origin`` is the user's source line that created the node, used
    in error messages; ``note`` is a provenance comment printed next to derived
    nodes (``# derived by hnca for h1``). Nodes compare by identity; ``uid`` gives
    a stable creation order.
    """

    __slots__ = ("attrs", "inputs", "name", "note", "op", "origin", "type", "uid")

    def __init__(
        self,
        op: Op,
        inputs: tuple[Node, ...],
        attrs: Mapping[str, Any],
        type: TensorType,
        name: str | None = None,
        origin: str | None = None,
        note: str | None = None,
    ):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = MappingProxyType(dict(attrs))
        self.type = type
        self.name = name
        self.origin = origin
        self.note = note
        self.uid = next(_ids)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def batched(self) -> bool:
        return self.type.batched

    def label(self) -> str:
        """How errors refer to this node: the user's name, else its expression in the user's names
        (``one_hot(y + 1)``, two levels deep), never an internal id."""
        return repr(self.name) if self.name else f"`{expression(self)}`"

    def __repr__(self) -> str:
        return f"Node({self.op.pretty}, {self.label()}, {self.type})"


_INFIX = {Op.ADD: "+", Op.SUB: "-", Op.MUL: "*", Op.DIV: "/", Op.MATMUL: "@"}


def expression(node: Node, depth: int = 2) -> str:
    """``node`` as an expression over named nodes and constants, ``...`` below ``depth`` levels
    (depth is a small constant: no recursion over the depth of the graph)."""
    if node.name:
        return node.name
    if node.op is Op.CONST:
        value = node.attrs.get("value")
        size = getattr(value, "size", 1)
        return repr(value.item() if size == 1 and hasattr(value, "item") else value) if size == 1 else "const"
    if depth == 0:
        return "..."
    args = [expression(x, depth - 1) for x in node.inputs]
    if node.op in _INFIX and len(args) == 2:
        wrap = [a if " " not in a else f"({a})" for a in args]
        return f"{wrap[0]} {_INFIX[node.op]} {wrap[1]}"
    if node.op is Op.NEG:
        return f"-{args[0]}" if " " not in args[0] else f"-({args[0]})"
    return f"{node.op.pretty}({', '.join(args)})"
