"""Re-create part of a graph with some nodes substituted (a pure graph transform).

The workhorse of the pathwise rewrite (a Normal sample becomes
``loc + scale * noise``), MuProp's mean-field pass (each sample becomes its
mean) and HNCA's counterfactuals (a unit set to each of its values).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import STOCHASTIC_OPS, Op

# (original node, its remapped inputs) -> replacement node, or None for the default
CopyHook = Callable[[Node, tuple[Node, ...]], Node | None]


def replay(
    into: Graph,
    nodes: Iterable[Node],
    subst: dict[int, Node],
    *,
    hook: CopyHook | None = None,
    only: set[int] | None = None,
    note: str | None = None,
    fresh: bool = False,
) -> dict[int, Node]:
    """Copy ``nodes`` (topological order) into ``into``, remapping inputs by ``subst``.

    ``subst`` maps ``id(original)`` to its replacement and is extended with every
    copy made. ``hook`` sees every node first and may return its replacement.

    Two modes:

    * ``fresh=False`` (counterfactuals inside an existing graph): unchanged nodes
      are shared, not copied; a stochastic node keeps its realised value (only the
      inputs of its distribution change, which is what a counterfactual needs);
      a COST node maps to its copied input so no second named cost appears.
      ``only`` (ids) restricts copying to the nodes that matter for a target.
    * ``fresh=True`` (whole-graph rewrites into an empty graph): every node is
      appended, re-created with the same name and attrs (random site included)
      when an input changed.
    """
    for node in nodes:
        if id(node) in subst or (only is not None and id(node) not in only):
            continue
        new_inputs = tuple(subst.get(id(x), x) for x in node.inputs)
        replacement = hook(node, new_inputs) if hook is not None else None
        if replacement is not None:
            subst[id(node)] = replacement
            continue
        changed = any(a is not b for a, b in zip(new_inputs, node.inputs, strict=True))
        if fresh:
            if changed:
                subst[id(node)] = into.add(node.op, new_inputs, node.attrs, name=node.name,
                                           origin=node.origin, note=node.note)
            else:
                into.append(node)
        elif changed and node.op not in STOCHASTIC_OPS:
            if node.op is Op.COST:
                subst[id(node)] = new_inputs[0]
            else:
                subst[id(node)] = into.add(node.op, new_inputs, node.attrs, origin=node.origin,
                                           note=note or node.note)
    return subst


def between(sources: Iterable[Node], targets: Iterable[Node]) -> set[int]:
    """Ids of nodes on some path from a source to a target (both ends included)."""
    users: dict[int, list[Node]] = {}
    up: set[int] = set()
    stack = list(targets)
    while stack:
        n = stack.pop()
        if id(n) in up:
            continue
        up.add(id(n))
        for x in n.inputs:
            users.setdefault(id(x), []).append(n)
            stack.append(x)
    down: set[int] = set()
    stack = [s for s in sources if id(s) in up]
    while stack:
        n = stack.pop()
        if id(n) in down:
            continue
        down.add(id(n))
        stack.extend(users.get(id(n), ()))
    return down


def nodes_between(sources: Iterable[Node], targets: Iterable[Node]) -> list[Node]:
    """The nodes on some path from a source to a target, in topological order.

    What :func:`replay` needs to copy for a counterfactual: walking only these (not the
    whole, growing graph) keeps a derivation with many counterfactuals linear.
    """
    targets = list(targets)
    ids = between(sources, targets)
    found: dict[int, Node] = {}
    stack = list(targets)
    while stack:
        n = stack.pop()
        if id(n) in ids and id(n) not in found:
            found[id(n)] = n
            stack.extend(n.inputs)
    return sorted(found.values(), key=lambda n: n.uid)  # uids grow with creation: a topological order
