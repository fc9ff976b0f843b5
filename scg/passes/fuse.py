"""Fusion: group a lowered graph into a plan of kernels (target-agnostic).

``fuse(lowered, given, skip)`` is a pure function returning a frozen :class:`Plan`.

Scheduling is as-soon-as-possible over *positions*: row kernels sit at odd
positions, the steps that cannot live inside a per-row loop (BLAS calls, host
ops, cross-row kernels) at even positions between them. A row-class node joins
the earliest row kernel after every non-row step it reads, so all the per-row
work between two matmuls becomes *one* kernel (one parallel region over rows).

Inside a row kernel the body is a list of blocks run once per row:

* ``loop`` blocks iterate over one per-row shape (``()`` = straight-line code
  for per-row scalars). Elementwise nodes of that shape fuse into the first such
  loop where their operands are ready; a per-row reduction becomes an
  accumulator inside the loop that produces its operand.
* ``op`` blocks hold one row op (softmax, categorical, HNCA counterfactuals...).

A value is materialised (written to a ``(rows, *shape)`` array) only if another
step, a later block, or the caller needs it; everything else stays in registers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from scg.ir.graph import Graph, reads_data
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.printer import assign_names
from scg.ir.types import I64
from scg.passes.lower import ARRAY_OPERAND_OPS, ROW_CLASSES, Lowered, OpClass

# per-row work (elements touched) from which a row kernel is worth a parallel region. The
# kernels run inside one generated driver call (numba_driver), so a region costs its thread
# wake-up only (no Python around it); 1024 makes every 200-wide sampling layer of the bandit
# parallel over rows (Philox draws are a pure function of the row: same bits on any thread
# count), while the tiny kernels of small graphs stay serial. Parallel kernels cost more cold
# compile (measured on the bandit's 880-element output kernel: 5.6 s serial, 12.9 s parallel).
PARALLEL_MIN_WORK = 1024
# Bounds on one generated kernel. Numba's compile time grows faster than linearly with a
# function's size (measured: one prange kernel copying through 100 arrays 26 s, 200 arrays
# 85 s; a 600-op tanh chain as one kernel ended in RecursionError), so a long run of per-row
# work is cut into kernels of at most this many nodes / array operands: compile time is then
# linear in the graph, and identical pieces share one compiled kernel (numba_render).
MAX_KERNEL_NODES = 48
MAX_KERNEL_READS = 24


def loop_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The iteration shape of a value: per-row scalars (any size-1 shape) run as straight-line code."""
    n = 1
    for d in shape:
        n *= d
    return () if n == 1 else tuple(shape)


@dataclass(frozen=True)
class Block:
    kind: str                  # "loop" or "op"
    shape: tuple[int, ...]     # iteration shape (loop) or the op's per-row shape
    nodes: tuple[int, ...]     # uids, in execution order


@dataclass(frozen=True)
class Kernel:
    """One step of the plan: a generated row/cross kernel, a BLAS call or a host (NumPy) op."""

    name: str
    kind: str                              # "rows" | "cross" | "blas" | "host"
    nodes: tuple[Node, ...]
    inputs: tuple[int, ...] = ()           # uids read that other steps (or the caller) produce
    outputs: tuple[int, ...] = ()          # uids written to full arrays
    blocks: tuple[Block, ...] = ()         # rows kernels only
    checks: tuple[tuple[int, int], ...] = ()  # (node uid, index operand uid) range-checked first
    parallel: bool = False
    work: int = 0                          # per-row work estimate (elements), for the parallel decision


@dataclass(frozen=True)
class Plan:
    """The fused plan of one graph variant; ``str(plan)`` prints it."""

    graph: Graph
    kernels: tuple[Kernel, ...]
    given: frozenset[int]                  # uids supplied by the caller (leaves, overrides)
    skip: frozenset[int]                   # uids not computed (phase 1 of a two-phase call)
    names: Mapping[int, str] = field(repr=False, compare=False, default_factory=dict)

    def kernel(self, name: str) -> Kernel:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(name)

    def __str__(self) -> str:
        return format_plan(self)


def _node_work(node: Node) -> int:
    from scg.ir.ops import Op
    size = max(1, _size(node.inputs[0].shape) if node.inputs else 1, _size(node.shape))
    if node.op in (Op.HNCA_AFFINE_DELTA, Op.HNCA_ONEHOT_LOGLIK):
        size = _size(node.inputs[1].shape) * 8  # parents x children, transcendental-heavy
    return size


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _positions(lowered: Lowered, todo: list[Node], given: frozenset[int]) -> dict[int, int]:
    pos: dict[int, int] = {}
    for node in todo:
        row = lowered.cls(node) in ROW_CLASSES
        checked = lowered.checked.get(node.uid)
        p = 1 if row else 0
        for x in node.inputs:
            q = 0 if x.uid in given else pos[x.uid]
            if row:
                strict = x.uid == checked and x.uid not in given  # checked on the host before the kernel
                q = q + 1 if q % 2 == 0 else (q + 2 if strict else q)
            else:
                q = q + 1 if q % 2 else q
            p = max(p, q)
        pos[node.uid] = p
    return pos


def _blocks(nodes: list[Node], lowered: Lowered) -> tuple[list[Block], dict[int, int]]:
    """Assign the nodes of one row kernel to loop/op blocks; returns blocks and uid -> block index."""
    kinds: list[str] = []
    shapes: list[tuple[int, ...]] = []
    members: list[list[int]] = []
    where: dict[int, int] = {}
    local = {n.uid for n in nodes}
    for node in nodes:
        cls = lowered.cls(node)
        it = loop_shape(node.inputs[0].shape) if cls is OpClass.REDUCE else loop_shape(node.shape)
        lo = 0
        for i, x in enumerate(node.inputs):
            if x.uid not in local:
                continue
            b = where[x.uid]
            same_loop = (cls in (OpClass.MAP, OpClass.REDUCE) and lowered.cls(x) is OpClass.MAP
                         and kinds[b] == "loop" and shapes[b] == it and not _array_operand(node, i))
            lo = max(lo, b if same_loop else b + 1)
        if cls is OpClass.ROWOP:
            idx = None
        else:
            idx = next((b for b in range(lo, len(kinds)) if kinds[b] == "loop" and shapes[b] == it), None)
        if idx is None:
            kinds.append("loop" if cls is not OpClass.ROWOP else "op")
            shapes.append(it if cls is not OpClass.ROWOP else tuple(node.shape))
            members.append([])
            idx = len(kinds) - 1
        members[idx].append(node.uid)
        where[node.uid] = idx
    blocks = [Block(k, s, tuple(m)) for k, s, m in zip(kinds, shapes, members, strict=True)]
    return blocks, where


def _array_operand(node: Node, i: int) -> bool:
    """Operands read at a data-dependent position (not the loop index): must be complete first."""
    from scg.ir.ops import Op
    return node.op is Op.TAKE and i == 0


def fuse(lowered: Lowered, given: frozenset[int] = frozenset(), skip: frozenset[int] = frozenset(),
         parallel: bool | None = None) -> Plan:
    """The kernel plan computing every node of ``lowered.graph`` not in ``given`` or ``skip``.

    ``parallel``: None decides per kernel from its per-row work (``PARALLEL_MIN_WORK``);
    True/False forces every row kernel parallel/serial.
    """
    graph = lowered.graph
    skip = set(skip)
    for n in graph.nodes:  # whatever needs a deferred value is deferred too
        if n.uid not in given and any(x.uid in skip for x in n.inputs):
            skip.add(n.uid)
    todo = [n for n in graph.nodes if n.uid not in given and n.uid not in skip]
    pos = _positions(lowered, todo, given)
    order = {n.uid: i for i, n in enumerate(graph.nodes)}
    todo.sort(key=lambda n: (pos[n.uid], order[n.uid]))
    consumers: dict[int, list[Node]] = {}
    for n in todo:
        for x in n.inputs:
            consumers.setdefault(x.uid, []).append(n)
    outputs = {n.uid for n in graph.outputs.values()} | _checked_labels(graph)

    kernels: list[Kernel] = []
    groups: list[tuple[int, list[Node]]] = []
    for n in todo:
        p = pos[n.uid]
        if p % 2 and groups and groups[-1][0] == p:
            groups[-1][1].append(n)
        else:
            groups.append((p, [n]))
    for p, members in groups:
        if p % 2 == 0:
            for n in members:
                kind = {OpClass.BLAS: "blas", OpClass.CROSS: "cross"}.get(lowered.cls(n), "host")
                ins = tuple(dict.fromkeys(x.uid for x in n.inputs))
                kernels.append(Kernel(f"k{len(kernels)}", kind, (n,), ins, (n.uid,)))
            continue
        for chunk in _chunks(members):
            kernels.append(_row_kernel(f"k{len(kernels)}", chunk, lowered, consumers, outputs, parallel))
    return Plan(graph, tuple(kernels), frozenset(given), frozenset(skip),
                MappingProxyType(assign_names(graph)))


def _checked_labels(graph: Graph) -> set[int]:
    """Computed integer labels compared with a categorical sample (``equal(a, y + 1)``): written to
    full arrays, so the call-time range check sees them as it sees an input label."""
    labels = set()
    for n in graph.nodes:
        if n.op is Op.EQUAL:
            for sample, label in (n.inputs, n.inputs[::-1]):
                if sample.op is Op.CATEGORICAL and label.dtype == I64 and reads_data(label):
                    labels.add(label.uid)
    return labels


def _chunks(members: list[Node]) -> list[list[Node]]:
    """Consecutive pieces of a row group (in topological order) within the kernel size bounds."""
    chunks: list[list[Node]] = [[]]
    local: set[int] = set()
    reads: set[int] = set()
    for n in members:
        new = {x.uid for x in n.inputs if x.uid not in local} - reads
        if chunks[-1] and (len(chunks[-1]) >= MAX_KERNEL_NODES or len(reads) + len(new) > MAX_KERNEL_READS):
            chunks.append([])
            local, reads = set(), set()
            new = {x.uid for x in n.inputs}
        chunks[-1].append(n)
        local.add(n.uid)
        reads |= new
    return chunks


def _row_kernel(name: str, members: list[Node], lowered: Lowered, consumers, outputs, parallel) -> Kernel:
    blocks, where = _blocks(members, lowered)
    local = {n.uid for n in members}
    ins: dict[int, None] = {}
    outs: list[int] = []
    for n in members:
        for x in n.inputs:
            if x.uid not in local:
                ins[x.uid] = None
        external_use = n.uid in outputs or any(c.uid not in local for c in consumers.get(n.uid, []))
        scalar = loop_shape(n.shape) == ()
        uses = [c for c in consumers.get(n.uid, []) if c.uid in local]
        later = any(where[c.uid] != where[n.uid] for c in uses)
        whole_row = any(c.op in ARRAY_OPERAND_OPS for c in uses)
        # the HNCA loop nests write their result row through an array argument, even one element wide
        writes_array = n.op in ARRAY_OPERAND_OPS
        if (external_use or whole_row or writes_array or (later and not scalar)
                or (lowered.cls(n) is OpClass.ROWOP and not scalar)):
            outs.append(n.uid)
    checks = tuple((n.uid, lowered.checked[n.uid]) for n in members if n.uid in lowered.checked)
    work = sum(_node_work(n) for n in members)
    par = work >= PARALLEL_MIN_WORK if parallel is None else bool(parallel)
    return Kernel(name, "rows", tuple(members), tuple(ins), tuple(outs), tuple(blocks), checks, par, work)


def format_plan(plan: Plan) -> str:
    """Readable plan text: one header per kernel, its blocks and the nodes they compute."""
    names = plan.names
    graph = plan.graph

    def nm(uid: int) -> str:
        node = by_uid.get(uid)
        return names.get(id(node), f"#{uid}") if node is not None else f"#{uid}"

    by_uid = {n.uid: n for n in graph.nodes}
    gen = sum(k.kind in ("rows", "cross") for k in plan.kernels)
    lines = [f"plan {graph.name}: {len(plan.kernels)} steps, {gen} generated kernels"
             + (f", {len(plan.skip)} nodes deferred" if plan.skip else "")]
    for k in plan.kernels:
        if k.kind == "rows":
            mode = "parallel over rows" if k.parallel else "serial over rows"
            lines.append(f"  {k.name}: rows kernel ({mode}, ~{k.work} elements/row)")
            lines.append(f"    reads {' '.join(map(nm, k.inputs)) or '-'}")
            lines.append(f"    writes {' '.join(map(nm, k.outputs)) or '-'}")
            for uid, idx in k.checks:
                lines.append(f"    range-check {nm(idx)} for {nm(uid)}")
            for b in k.blocks:
                dom = "x".join(map(str, b.shape)) or "scalar"
                body = ", ".join(f"{nm(u)}={by_uid[u].op.pretty}" for u in b.nodes)
                lines.append(f"    {'loop' if b.kind == 'loop' else 'op  '} [{dom}]: {body}")
        else:
            n = k.nodes[0]
            args = " ".join(nm(x.uid) for x in n.inputs)
            what = {"blas": "BLAS", "cross": "cross-row kernel", "host": "host op (numpy rule)"}[k.kind]
            lines.append(f"  {k.name}: {what}: {nm(n.uid)} = {n.op.pretty} {args}".rstrip())
    return "\n".join(lines)
