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
        """How errors refer to this node: the user's name, else op and id."""
        return repr(self.name) if self.name else f"<{self.op.pretty} #{self.uid}>"

    def __repr__(self) -> str:
        return f"Node({self.op.pretty}, {self.label()}, {self.type})"
