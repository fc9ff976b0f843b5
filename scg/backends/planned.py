"""The planned-program base shared by the compiled backends (numba CPU, numba CUDA).

A compiled backend turns a derived graph into a program in the same stages:
lowering (``scg.passes.lower``), fusion into a plan of steps per call pattern
(``scg.passes.fuse``; one *variant* per set of given and deferred nodes),
rendering of the plan's kernels to source, loading that source through the
kernel cache, and launching the steps. :class:`PlannedProgram` owns every stage
that does not depend on the target, so a rule cannot be lost in one backend's
copy of it again (the CUDA backend once skipped every distribution-argument
check):

* set-up: precision, lowering, the "has a template for every op" check;
* variants: compiled once per call pattern, under a lock (threads may share a
  program), kept in memory;
* inspection: ``plan`` and ``source`` of a plain call;
* argument checks, one path for every backend (:meth:`check_call`): index
  operands before a kernel reads them (:meth:`index_checks`), and after the
  kernels the spec's distribution-argument checks (``numpy_ops.check_arguments``)
  on every argument the plan materialised; any other problem shows up as a
  non-finite output (or, in the CUDA simulator, a Python math error inside a
  kernel), and then the NumPy spec is re-run on the call to raise its very
  InputError naming the node.

Subclasses supply the target hooks: ``_supported`` (a template exists),
``_load_runtime``, ``_render`` (plan -> module source), ``_step`` (one plan step
-> a callable) and ``run`` (moving values and launching the steps).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from scg.backends import kernel_cache, numpy_ops
from scg.backends.numpy_ops import _check_indices
from scg.backends.numpy_ref import PRECISIONS, evaluate, numpy_impls
from scg.errors import BackendError, InputError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Kind, Op
from scg.passes.fuse import Kernel, Plan, fuse
from scg.passes.lower import OpClass, lower

LOADED = frozenset({Op.INPUT, Op.PARAM, Op.EXTERNAL_COST, Op.STATE})
# ops whose unbatched value depends on their operands only (foldable when the operands are constants)
_PURE = frozenset({Op.RESHAPE, Op.BROADCAST_TO, Op.TRANSPOSE, Op.SUM, Op.MEAN})
_PURE_KINDS = frozenset({Kind.UNARY, Kind.BINARY, Kind.TERNARY})
# what the numpy rules say when an index is out of range (identical errors on every backend)
CHECK_WHAT = {Op.ONE_HOT: "one_hot of", Op.TAKE: "take with index", Op.CATEGORICAL_LOGP: "log_prob of value"}


def index_depth(node: Node) -> int:
    """The exclusive upper bound of ``node``'s index operand."""
    return node.attrs["depth"] if node.op is Op.ONE_HOT else node.inputs[0].shape[-1]


@dataclass
class Variant:
    """A plan, its generated module and the callables that run its steps."""

    plan: Plan
    source: str
    module: Any
    steps: list[Callable]
    nbytes: Callable[[int], int] | None = None   # bytes a call with n rows materialises (where a backend sizes)
    schedule: Any = None                         # a backend's run order of the steps (numba: native segments)
    workspace: Any = None                        # a backend's reusable buffers (numba: per row count)
    drivers: dict[str, Callable] | None = None   # numba: the generated step drivers by name
    host: dict[str, Callable] | None = None      # numba: the host steps by plan kernel name

    @property
    def parallel(self) -> bool:
        return any(k.parallel for k in self.plan.kernels)


class PlannedProgram:
    """Shared stages of a compiled program (see the module docstring); subclasses add the target."""

    backend = "compiled"        # the user's name of the backend, for messages
    module_prefix = "scg_k"     # kernel-cache module name prefix
    fuse_parallel: bool | None = None

    def __init__(self, graph: Graph, precision: str = "float64"):
        if precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
        self.graph = graph
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.lowered = lower(graph)
        self._by_uid = {n.uid: n for n in graph.nodes}
        for node in graph.nodes:
            cls = self.lowered.cls(node)
            if cls is OpClass.LEAF:
                continue
            if not self._supported(node, cls) or (cls in (OpClass.HOST, OpClass.BLAS) and node.op not in numpy_impls):
                raise BackendError(f"the {self.backend} backend has no kernel template for op {node.op.pretty!r} "
                                   f"(needed by {node.label()}, {node.type})")
        self.rt = self._load_runtime()
        self._variants: dict[tuple[frozenset, frozenset], Variant] = {}
        self._compile_lock = threading.Lock()
        base = frozenset(n.uid for n in graph.nodes if n.op in LOADED)
        self._base = self._variant(base, frozenset())

    # -- target hooks ------------------------------------------------------------------------
    def _supported(self, node: Node, cls: OpClass) -> bool:
        raise NotImplementedError

    def _load_runtime(self) -> Any:
        raise NotImplementedError

    def _render(self, plan: Plan) -> str:
        raise NotImplementedError

    def _step(self, k: Kernel, module: Any) -> Callable:
        raise NotImplementedError

    def _sizer(self, plan: Plan, given: frozenset) -> Callable[[int], int] | None:
        return None

    def _finish_variant(self, variant: Variant) -> None:
        """Anything a backend derives from a compiled variant (numba: its schedule of driver calls)."""

    # -- inspection ------------------------------------------------------------------------
    @property
    def plan(self) -> Plan:
        """The fused plan of a plain one-phase call (``print(est.plan)``)."""
        return self._base.plan

    @property
    def source(self) -> str:
        """The generated kernel module of a plain call."""
        return self._base.source

    # -- variants --------------------------------------------------------------------------
    def _variant(self, given: frozenset, skip: frozenset) -> Variant:
        key = (given, skip)
        variant = self._variants.get(key)
        if variant is not None:
            return variant
        with self._compile_lock:  # two threads asking for a new call pattern compile it once
            if key not in self._variants:
                plan = fuse(self.lowered, given, skip, parallel=self.fuse_parallel)
                source = self._render(plan)
                try:
                    module = kernel_cache.load(self.module_prefix, source)
                except Exception as e:  # a template bug: say which graph, never a raw traceback only
                    raise BackendError(f"{self.backend} could not compile the kernels of graph "
                                       f"{self.graph.name!r}: {type(e).__name__}: {e}") from e
                steps = [self._step(k, module) for k in plan.kernels]
                variant = Variant(plan, source, module, steps, self._sizer(plan, given))
                self._finish_variant(variant)
                self._variants[key] = variant
            return self._variants[key]

    # -- the one argument-check path --------------------------------------------------------
    def index_checks(self, k: Kernel) -> Callable[[Callable[[int], np.ndarray]], None]:
        """The range checks of kernel ``k``'s index operands; call the result with a uid -> host array getter."""
        checks = [(self._by_uid[u], i) for u, i in k.checks]

        def check(get: Callable[[int], np.ndarray]) -> None:
            for node, i in checks:
                _check_indices(get(i), index_depth(node), node, CHECK_WHAT[node.op])
        return check

    def check_call(self, get: Callable[[int], np.ndarray | None], env, skip, spec_call: Callable[[], Any]) -> None:
        """After the kernels: the spec's distribution-argument checks (see the module docstring).

        ``get(uid)`` returns a materialised value on the host (None where the plan has
        none); ``spec_call()`` runs the NumPy spec on the same call.
        """
        nodes = self._checked_nodes
        if not nodes or not numpy_ops.argument_checks():
            return
        for node in nodes:
            if node.uid in skip:
                continue
            args = [get(x.uid) for x in node.inputs]
            if any(a is not None for a in args):
                numpy_ops.check_arguments(node, args, env)
        for node in self.graph.outputs.values():
            v = get(node.uid)
            if v is not None and v.dtype.kind == "f" and not np.isfinite(v).all():
                spec_call()  # raises the spec's InputError; if it returns, the non-finite values are the spec's too
                return

    def kernel_failed(self, error: Exception, spec_call: Callable[[], Any]) -> BackendError:
        """A kernel raised (the CUDA simulator runs kernels as Python: math.log(-1) raises ValueError).

        Bad arguments make the spec raise its InputError here; otherwise the error is
        returned as a BackendError for the caller to raise.
        """
        if numpy_ops.argument_checks():
            spec_call()
        return BackendError(f"a {self.backend} kernel of graph {self.graph.name!r} failed: "
                            f"{type(error).__name__}: {error}")

    @property
    def folded(self) -> frozenset[int]:
        """uids of nodes whose value is the same on every call (constants and pure ops of constants).

        A backend computes them once (constant folding at the first call; their rule only
        depends on the program's dtype) instead of re-running their NumPy rule on every call.
        """
        got = self.__dict__.get("_folded")
        if got is None:
            ok: set[int] = set()
            for n in self.graph.nodes:
                if n.batched:
                    continue
                if n.op is Op.CONST or (n.op in _PURE or n.op.kind in _PURE_KINDS) and all(
                        x.uid in ok for x in n.inputs):
                    ok.add(n.uid)
            got = self.__dict__["_folded"] = frozenset(ok)
        return got

    @property
    def _checked_nodes(self) -> list[Node]:
        nodes = self.__dict__.get("_checked")
        if nodes is None:
            nodes = self.__dict__["_checked"] = [n for n in self.graph.nodes if n.op in numpy_ops.CHECKED_OPS]
        return nodes

    def spec(self, params, inputs, call: dict) -> Callable[[], Any]:
        """A thunk that runs the NumPy spec on this call (for the checks above)."""
        return lambda: evaluate(self.graph, params, inputs, precision=self.precision, **call)
