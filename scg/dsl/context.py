"""The stack of graphs under construction (``with scg.Graph(...):``)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from scg.errors import GraphError

if TYPE_CHECKING:
    from scg.ir.graph import Graph

_stack: list[Graph] = []
_SCG_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def push(graph: Graph) -> None:
    _stack.append(graph)


def pop(graph: Graph) -> None:
    if not _stack or _stack[-1] is not graph:
        raise GraphError(f"graph {graph.name!r} exited out of order")
    _stack.pop()


def active_graph() -> Graph | None:
    """The innermost graph under construction, or None outside every ``with`` block."""
    return _stack[-1] if _stack else None


def current_graph(what: str) -> Graph:
    if not _stack:
        raise GraphError(
            f"scg.{what}(...) must be called inside a `with scg.Graph(name):` block "
            "(no graph is under construction)")
    return _stack[-1]


def user_origin() -> str | None:
    """``file:line`` of the first caller frame outside the scg package."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if not filename.startswith(_SCG_DIR + os.sep):
            return f"{os.path.basename(filename)}:{frame.f_lineno}"
        frame = frame.f_back
    return None
