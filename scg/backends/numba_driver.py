"""The step driver: a plan's native steps rendered as ONE generated ``@njit`` function per run.

A call of the Numba backend used to walk the plan from Python (one dispatch, one
allocation and a few checks per step). Here the plan is *scheduled* into

* native **segments**: maximal runs of steps that compile to Numba, rendered as one
  ``drive<i>`` function calling, in plan order, the row kernels (``k<j>``, each its
  own shape-generic ``@njit`` function, shared by identical layers), the BLAS steps
  (``np.dot`` inside njit, into preallocated outputs, through the runtime's
  ``matmul_into`` / ``outer_sum_into``: compiled once per signature, cached with the runtime), the cross-row kernels
  (``rt.loo``, ``rt.colsum``) and the range checks of index operands computed inside
  the segment;
* **host** steps, run by their NumPy rule from Python: folded constants (computed
  once), unbatched parameter-side ops (``row_scale``, a final ``mean * inv_rows``) and
  the BLAS shapes ``np.dot`` does not cover (einsum cases). Host steps move before a
  segment (when they read none of its values) or after it (when nothing in it waits for
  them), so a plain call of the bandit estimators runs ONE native entry.

Every value a segment materialises lives in a workspace array allocated once per
(variant, rows) and reused across calls (``Workspace``); the caller copies out what it
returns. A segment returns 0, or the 1-based number of the failed range check (the
caller then re-runs the NumPy spec to raise its error word for word).

Argument layout (as the kernels'): C-contiguous arrays, batched values ``(n, *shape)``,
unbatched 0-d values as shape ``(1,)``. Names in the text are generated only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scg.backends.numba_render import Out, _is_inline, array_type, kernel_arrays, local_names
from scg.backends.planned import index_depth
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import I64
from scg.passes.fuse import Kernel, Plan


@dataclass(frozen=True)
class Segment:
    """One generated driver: the plan steps it runs and its array arguments."""

    name: str                              # "drive0", ...
    kernels: tuple[Kernel, ...]
    reads: tuple[int, ...]                 # uids produced before the segment (leaves, host steps, ...)
    writes: tuple[int, ...]                # uids it materialises (workspace arrays)
    host_checks: tuple[tuple[int, int], ...]    # (node, index operand) checked from Python first
    native_checks: tuple[tuple[int, int], ...]  # (node, index operand) checked inside, code = position + 1
    loo: tuple[int, ...] = ()              # uids of leave-one-out nodes (need n_samples >= 2)

    @property
    def args(self) -> tuple[int, ...]:
        return self.reads + self.writes


@dataclass(frozen=True)
class Schedule:
    """Plan steps in run order: ``Kernel`` (host step) or ``Segment`` (one native call)."""

    items: tuple[Kernel | Segment, ...]

    @property
    def segments(self) -> list[Segment]:
        return [i for i in self.items if isinstance(i, Segment)]

    @property
    def host(self) -> list[Kernel]:
        return [i for i in self.items if isinstance(i, Kernel)]


def _float(*nodes: Node) -> bool:
    return all(n.dtype != I64 for n in nodes)


def native(k: Kernel) -> bool:
    """Whether plan step ``k`` runs inside a driver."""
    if k.kind in ("rows", "cross"):
        return True
    if k.kind != "blas":
        return False
    (node,) = k.nodes
    a, b = node.inputs
    if not _float(node, a, b) or a.type.rank < 1 or b.type.rank < 1:
        return False
    if node.op is Op.MATMUL:  # the hot case, (n, k) @ (k, m) or (k,): one GEMM/GEMV
        return a.batched and not b.batched and b.type.rank <= 2 and a.shape[-1] == b.shape[0]
    if node.op is Op.OUTER_SUM:  # sum over rows of outer products: a^T b, one GEMM
        return a.batched and b.batched
    return False


# Steps per driver. Numba/LLVM compile time of a driver grows faster than linearly with its
# call sites (measured on the 64-wide HNCA chain, loaded 2-core machine: ~0.2 s per step at
# 20-40 steps, ~0.4 s per step at 78), so a longer run of native steps is cut into drivers
# of at most this many steps (the bandit's plans fit in one).
MAX_DRIVER_STEPS = 48


def schedule(plan: Plan, by_uid: dict[int, Node]) -> Schedule:
    """Group the plan's native steps into segments; host steps move before or after a segment.

    A host step reading nothing of the pending segment is hoisted before it; one that reads
    the segment's values is deferred after it. A segment closes only when a native step
    reads a deferred host step's value (then it must wait for the host).
    """
    items: list[Kernel | Segment] = []
    pending: list[Kernel] = []
    produced: set[int] = set()
    hoisted: list[Kernel] = []
    deferred: list[Kernel] = []
    deferred_out: set[int] = set()

    def close() -> None:
        nonlocal pending, produced, hoisted, deferred, deferred_out
        if pending:
            items.extend(hoisted)
            items.append(_segment(f"drive{sum(isinstance(i, Segment) for i in items)}", pending, by_uid))
            items.extend(deferred)
        pending, produced, hoisted, deferred, deferred_out = [], set(), [], [], set()

    for k in plan.kernels:
        if native(k):
            if any(u in deferred_out for u in k.inputs) or len(pending) >= MAX_DRIVER_STEPS:
                close()
            pending.append(k)
            produced.update(k.outputs)
        elif not pending:
            items.append(k)
        elif any(u in produced or u in deferred_out for u in k.inputs):
            deferred.append(k)
            deferred_out.update(k.outputs)
        else:
            hoisted.append(k)
    close()
    return Schedule(tuple(items))


def _segment(name: str, kernels: list[Kernel], by_uid) -> Segment:
    reads: dict[int, None] = {}
    writes: dict[int, None] = {}
    host_checks, native_checks, loo = [], [], []
    for k in kernels:
        for u in k.inputs:
            if u not in writes and not _is_inline(by_uid[u]):
                reads[u] = None
        for node_uid, idx in k.checks:
            (native_checks if idx in writes else host_checks).append((node_uid, idx))
        for u in k.outputs:
            writes[u] = None
        if k.kind == "cross" and k.nodes[0].op is Op.LOO_BASELINE:
            loo.append(k.nodes[0].uid)
    return Segment(name, tuple(kernels), tuple(reads), tuple(writes), tuple(host_checks),
                   tuple(native_checks), tuple(loo))


def _a(u: int) -> str:
    return f"a{u}"


def _as(node: Node, shape: str, ndim: int) -> str:
    """The node's driver array viewed with ``ndim`` dimensions (``reshape`` only where needed)."""
    have = max(1, node.type.rank + (1 if node.batched else 0))
    return _a(node.uid) if have == ndim else f"{_a(node.uid)}.reshape({shape})"


def _blas(node: Node, out: Out) -> None:
    a, b = node.inputs
    if node.op is Op.MATMUL:
        k = a.shape[-1]
        target = _as(node, f"(-1, {b.shape[-1]})", 2) if b.type.rank == 2 else _as(node, "-1", 1)
        out(f"rt.matmul_into({_as(a, f'(-1, {k})', 2)}, {_a(b.uid)}, {target})  # matmul #{node.uid}")
        return
    p, m = a.shape[-1], b.shape[-1]
    target = _a(node.uid) if tuple(node.shape) == (p, m) else f"{_a(node.uid)}.reshape(({p}, {m}))"
    out(f"rt.outer_sum_into({_as(a, f'(-1, {p})', 2)}, {_as(b, f'(-1, {m})', 2)}, {target})  # outer_sum #{node.uid}")


def render_segment(seg: Segment, by_uid: dict[int, Node], sites: dict[str, tuple[int, ...]],
                   precision: str) -> str:
    """The source of one driver (uid names renumbered locally, so equal segments have equal text)."""
    out = Out()
    types = ", ".join(["int64"] * 4 + [precision] + [array_type(by_uid[u], precision) for u in seg.args])
    params = ", ".join(["n", "B", "key0", "key1", "inv_n"] + [_a(u) for u in seg.args])
    out(f'@njit("int64({types})", **JIT)')
    out(f"def {seg.name}({params}):")
    out.indent()
    out(f"# {len(seg.kernels)} plan steps in one native call")
    checks = {idx: i + 1 for i, (_node, idx) in enumerate(seg.native_checks)}
    for k in seg.kernels:
        for node_uid, idx in k.checks:
            if idx in checks:
                depth = index_depth(by_uid[node_uid])
                out(f"if not rt.in_range({_a(idx)}.reshape(-1), {depth}):")
                out(f"    return {checks[idx]}")
        if k.kind == "rows":
            # np.int64(site), not a literal: Numba would compile one kernel per literal value
            args = ["n", "B", "key0", "key1", *(f"np.int64({s})" for s in sites[k.name]), "inv_n"]
            args += [_a(u) for u in kernel_arrays(k, by_uid)]
            out(f"{k.name}({', '.join(args)})")
            continue
        (node,) = k.nodes
        x = node.inputs[0]
        if k.kind == "blas":
            _blas(node, out)
        elif node.op is Op.LOO_BASELINE:
            out(f"rt.loo({_as(x, '(n, -1)', 2)}, {_as(node, '(n, -1)', 2)}, n // B, B)  # loo #{node.uid}")
        else:  # unbroadcast: a sum over rows
            out(f"rt.colsum({_as(x, '(n, -1)', 2)}, {_as(node, '-1', 1)})  # colsum #{node.uid}")
    out("return 0")
    return local_names("\n".join(out.lines))


def render_drivers(sched: Schedule, by_uid: dict[int, Node], sites, precision: str) -> str:
    parts = [render_segment(seg, by_uid, sites, precision) for seg in sched.segments]
    return "\n\n\n".join(parts) + ("\n" if parts else "")


def workspace_shape(node: Node, n: int) -> tuple[int, ...]:
    """A value's array shape in the kernels' argument layout."""
    if node.batched:
        return (n, *node.shape)
    return tuple(node.shape) or (1,)


class Workspace:
    """The arrays a variant's segments write, for one row count; reused by every call with it.

    Callers hold ``RUN_LOCK`` while a workspace is in use and copy out what they return.
    """

    def __init__(self, sched: Schedule, by_uid: dict[int, Node], n: int, dtype):
        self.n = n
        self.arrays: dict[int, np.ndarray] = {}
        self.views: dict[int, np.ndarray] = {}   # the same memory in the interpreter's layout
        for seg in sched.segments:
            for u in seg.writes:
                node = by_uid[u]
                arr = np.empty(workspace_shape(node, n), np.int64 if node.dtype == I64 else dtype)
                self.arrays[u] = arr
                self.views[u] = arr if node.batched else arr.reshape(node.shape)
