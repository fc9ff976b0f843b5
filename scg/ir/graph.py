"""The graph container: nodes in topological order plus named outputs.

Passes never mutate a graph; they build a new one (nodes are immutable and may
be shared between graphs, so a derived graph reuses its model's nodes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from scg.errors import GraphError
from scg.ir.infer import infer_type
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op

# ops whose node carries a user-visible name in the graph's namespace
NAMED_OPS = frozenset({Op.INPUT, Op.PARAM, Op.COST, Op.EXTERNAL_COST}) | STOCHASTIC_OPS


class Graph:
    """A DAG of :class:`Node` in creation (hence topological) order.

    ``outputs`` maps result names to nodes; for a user model they are filled by
    the DSL, for a derived estimator graph they name samples, costs and grads.
    """

    def __init__(self, name: str = "graph"):
        if not isinstance(name, str) or not name:
            raise GraphError(f"a graph name must be a non-empty string, got {name!r}")
        self.name = name
        self.nodes: list[Node] = []
        self.outputs: dict[str, Node] = {}
        self._named: dict[str, Node] = {}
        self._members: set[int] = set()
        self._next_site = 0
        self._views: dict[frozenset[Op], tuple[int, dict[str, Node]]] = {}

    # -- construction -------------------------------------------------------
    def add(
        self,
        op: Op,
        inputs: Iterable[Node] = (),
        attrs: Mapping[str, Any] | None = None,
        *,
        name: str | None = None,
        origin: str | None = None,
        note: str | None = None,
    ) -> Node:
        """Create a node, infer its type, and append it."""
        inputs = tuple(inputs)
        attrs = dict(attrs or {})
        for x in inputs:
            if id(x) not in self._members:
                raise GraphError(
                    f"{x.label()} belongs to another graph; build each graph's nodes inside its own "
                    f"`with graph:` block (while adding {op.pretty} {name or ''})".rstrip())
        if op in STOCHASTIC_OPS and "site" not in attrs:
            attrs["site"] = self._next_site
        try:
            typ = infer_type(op, tuple(x.type for x in inputs), attrs)
        except GraphError as e:
            where = f" (created at {origin})" if origin else ""
            who = f"node {name!r}" if name else f"an unnamed {op.pretty} node"
            raise GraphError(f"{who}{where}: {e}") from None
        return self.append(Node(op, inputs, attrs, typ, name=name, origin=origin, note=note))

    def append(self, node: Node) -> Node:
        """Append an existing node (its inputs must already be members)."""
        if id(node) in self._members:
            return node
        for x in node.inputs:
            if id(x) not in self._members:
                raise GraphError(f"{node.label()} uses {x.label()}, which is not in graph {self.name!r}")
        if node.op in NAMED_OPS and node.name is not None:
            other = self._named.get(node.name)
            if other is not None:
                raise GraphError(
                    f"the name {node.name!r} is used twice in graph {self.name!r} "
                    f"(first by the {other.op.pretty} node, now by the new {node.op.pretty} node)")
            self._named[node.name] = node
        if node.op in STOCHASTIC_OPS:
            self._next_site = max(self._next_site, node.attrs["site"] + 1)
        self.nodes.append(node)
        self._members.add(id(node))
        return node

    def contains(self, node: Node) -> bool:
        return id(node) in self._members

    def derive(self, name: str | None = None) -> Graph:
        """A new graph holding this graph's nodes (shared), to extend in a pass."""
        g = Graph(name or self.name)
        for n in self.nodes:
            g.append(n)
        return g

    # -- views --------------------------------------------------------------
    def _role(self, ops: frozenset[Op] | set[Op]) -> dict[str, Node]:
        # backends consult these views on every call: cache them until the graph grows
        key = frozenset(ops)
        cached = self._views.get(key)
        if cached is None or cached[0] != len(self.nodes):
            cached = (len(self.nodes), {n.name: n for n in self.nodes if n.op in key})
            self._views[key] = cached
        return dict(cached[1])

    @property
    def inputs(self) -> dict[str, Node]:
        return self._role({Op.INPUT})

    @property
    def params(self) -> dict[str, Node]:
        return self._role({Op.PARAM})

    @property
    def samples(self) -> dict[str, Node]:
        return self._role(STOCHASTIC_OPS)

    @property
    def costs(self) -> dict[str, Node]:
        return self._role({Op.COST, Op.EXTERNAL_COST})

    @property
    def external_costs(self) -> dict[str, Node]:
        return self._role({Op.EXTERNAL_COST})

    def __getitem__(self, name: str) -> Node:
        try:
            return self._named[name]
        except KeyError:
            known = ", ".join(sorted(self._named)) or "none"
            raise GraphError(f"graph {self.name!r} has no node named {name!r} (named nodes: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._named

    def __len__(self) -> int:
        return len(self.nodes)

    def __str__(self) -> str:
        from scg.ir.printer import format_graph  # printer imports graph for typing only
        return format_graph(self)

    def __repr__(self) -> str:
        return f"<scg Graph {self.name!r}: {len(self.nodes)} nodes>"

    def to_networkx(self):
        """This graph as a ``networkx.DiGraph`` (see :mod:`scg.ir.networkx_view`)."""
        from scg.ir.networkx_view import to_networkx
        return to_networkx(self)

    def to_dot(self) -> str:
        from scg.ir.dot import to_dot
        return to_dot(self)


def reads_data(node: Node) -> bool:
    """Whether ``node``'s value comes from an input, not counting inputs seen only through a sample.

    A categorical label is range-checked against the sample it is compared with only when it
    reads the user's data (``equal(a, y)``, ``equal(a, y + 1)``): that is a likely data bug. A
    label made of samples and constants (``equal(a, b)`` with ``b`` over more classes, or the
    enumerated values HNCA puts in place of ``b``) may leave ``[0, K)``, and ``equal`` is then 0.
    """
    stack, seen = [node], set()
    while stack:
        n = stack.pop()
        if n.op is Op.INPUT:
            return True
        if n.op in STOCHASTIC_OPS or n.uid in seen:
            continue
        seen.add(n.uid)
        stack.extend(n.inputs)
    return False
