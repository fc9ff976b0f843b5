"""The Numba CPU backend: lower -> fuse -> render -> cache -> run.

``NumbaProgram(graph, precision)`` implements the ``Program`` protocol of
``scg.backends.registry`` with exactly the semantics of the NumPy interpreter
(``numpy_ref.evaluate``): the same validation and loading (it calls
``numpy_ref.bind``), the same row layout with ``n_samples``, overrides,
``stop_at_external`` and state. The fused plan is scheduled by ``numba_driver``
into native segments and host steps; a plain call of the bandit or SBN
estimators is ONE call of a generated ``@njit`` driver, which runs in order:

* ``rows`` kernels: generated ``@njit`` functions (``prange`` over rows when the
  per-row work pays for a parallel region), all elementwise chains, densities,
  sampling, per-row reductions and HNCA counterfactual loop nests; one compiled
  kernel per distinct pattern (identical layers share it);
* ``cross`` kernels: runtime ``@njit`` functions for values coupling rows
  (leave-one-out baseline, sums over rows);
* ``blas`` steps: ``np.dot`` inside the driver into preallocated outputs, *between*
  kernels so BLAS threads never compete with a parallel region (docs/design.md,
  toolchain facts);
* range checks of index operands computed inside the driver (a failed one makes the
  NumPy spec re-run on the call to raise its error).

What stays on the host, per call: ``bind`` (validation and loading of the arguments),
range checks of caller-supplied index operands, the unbatched parameter-side steps
(``row_scale``, the final ``mean * inv_rows`` of a cost, transposes of parameters, BLAS
shapes ``np.dot`` does not cover) by their NumPy rule, the distribution-argument checks,
and copying the returned values out of the workspace. Constants are folded (their rule
runs at the first call only).

Every uniform is a pure function of (seed, site, draw, row, element) (Philox,
``scg.backends.rng``), so results do not depend on the thread count.

Values a driver writes live in a workspace reused by every call with the same row
count; ``run`` returns fresh arrays: every graph output and leaf, and in a phase-1
call (``stop_at_external``) every materialised value (phase 2 takes them back as
overrides). Each call pattern (which nodes are overridden or deferred) gets its own
plan variant, compiled once and cached in memory and on disk.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import types
from collections.abc import Callable

import numba
import numpy as np

from scg.backends import kernel_cache, numba_runtime
from scg.backends.numba_driver import Schedule, Segment, Workspace, render_drivers, schedule
from scg.backends.numba_render import Renderer, kernel_arrays, supported
from scg.backends.numpy_ops import _check_indices
from scg.backends.numpy_ref import bind, run_node
from scg.backends.planned import CHECK_WHAT, PlannedProgram, index_depth
from scg.backends.rng import seed_key
from scg.errors import BackendError
from scg.guards import blas_threads
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.passes.fuse import Kernel, Plan
from scg.passes.lower import OpClass

if "NUMBA_THREADING_LAYER" not in os.environ:
    # measured on 2 cores: OpenMP workers spin after each region and starve the BLAS/Python thread
    # between kernels (5-15x slower steps); workqueue workers sleep. The user's choice wins.
    numba.config.THREADING_LAYER = "workqueue"


def runtime_module(precision: str):
    """The shared runtime module for ``precision`` (imported from the kernel cache)."""
    return kernel_cache.load(f"scg_rt_{precision}", numba_runtime.runtime_source(precision))


class _BlasLimit:
    """While any program runs, BLAS gets ``SCG_BLAS_THREADS`` threads (default 1; "0" leaves BLAS alone).

    Measured on the 2-core machines, 784-200-200-200-10 bandit, float32, median step:
    HNCA B=50 216 ms (BLAS threaded, OpenMP layer) -> 164 ms (workqueue) -> 13 ms (workqueue
    + 1 BLAS thread); REINFORCE B=50 103 ms -> 2.3 ms. Idle OpenBLAS workers spin and fight
    the Numba kernels and the Python thread for the cores; one BLAS thread costs ~1-3 ms per
    1024-row layer.

    Reference-counted across threads: the first run to enter sets the limit, the last to
    leave restores the user's setting (nested threadpoolctl limits from two threads restore
    out of order and left BLAS at 1 thread for good).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = 0
        self._limiter = None

    @contextlib.contextmanager
    def __call__(self):
        limit = blas_threads()  # an ScgError naming the variable when it is not a count
        if limit is None or _controller() is None:
            yield
            return
        with self._lock:
            if self._active == 0:
                self._limiter = _controller().limit(limits=limit, user_api="blas")
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    self._limiter.restore_original_limits()
                    self._limiter = None


blas_limit = _BlasLimit()
# Numba's workqueue layer (our default, see above) aborts the process when two threads enter
# parallel regions at once. Calls from several threads therefore take turns through the kernels
# (bind, checks and the Python around them stay concurrent). Measured in
# benchmarks/threads.py: the lock costs under a microsecond a call, and concurrent throughput
# equals serial throughput (each call's kernels already use every core; njit code holds the GIL).
RUN_LOCK = threading.RLock()


@functools.cache
def _controller():
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS of np.dot inside njit: limited too)
        from threadpoolctl import ThreadpoolController
    except ImportError:  # optional: without it BLAS keeps its own threads
        return None
    return ThreadpoolController()


def _arg(a: np.ndarray) -> np.ndarray:
    """A kernel argument: C-contiguous, at least 1-d (0-d values travel as (1,)), writeable (one signature)."""
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()


class NumbaProgram(PlannedProgram):
    """A derived graph compiled to Numba CPU kernels (see the module docstring)."""

    backend = "numba"
    module_prefix = "scg_k"

    def __init__(self, graph: Graph, precision: str = "float64", parallel: bool | None = None):
        self.fuse_parallel = parallel
        self._schedules: dict[int, Schedule] = {}
        self._outputs = frozenset(n.uid for n in graph.outputs.values())
        super().__init__(graph, precision)

    @property
    def parallel(self) -> bool | None:
        return self.fuse_parallel

    def _supported(self, node: Node, cls: OpClass) -> bool:
        return supported(node, cls)

    def _load_runtime(self):
        return runtime_module(self.precision)

    def _render(self, plan: Plan) -> str:
        renderer = Renderer()
        renderer.signatures = False  # the drivers' explicit signatures compile the kernels they call
        source = renderer.render_module(plan, self.lowered, self.precision, self.rt.__name__)
        sched = schedule(plan, self._by_uid)
        self._schedules[id(plan)] = sched
        return source + "\n\n" + render_drivers(sched, self._by_uid, renderer.kernel_sites, self.precision)

    def _finish_variant(self, variant) -> None:
        variant.schedule = self._schedules.pop(id(variant.plan))
        variant.drivers = {seg.name: getattr(variant.module, seg.name) for seg in variant.schedule.segments}
        variant.host = {k.name: step for k, step in zip(variant.plan.kernels, variant.steps, strict=True)}

    # -- inspection ------------------------------------------------------------------
    def llvm(self, kernel: str | None = None) -> str:
        """LLVM IR of the generated kernels (all, or the one named e.g. ``"k1"``)."""
        names = [k.name for k in self._base.plan.kernels if k.kind == "rows"]
        if kernel is not None and kernel not in names:
            raise BackendError(f"no generated kernel named {kernel!r}; kernels: {', '.join(names) or 'none'}")
        module = self._inspectable()
        parts = []
        for name in names if kernel is None else [kernel]:
            for sig, ir in getattr(module, name).inspect_llvm().items():
                parts.append(f"; ---- kernel {name} {sig}\n{ir}")
        return "\n".join(parts)

    @functools.cached_property
    def _inspectable_ns(self) -> dict:
        # Numba cannot show LLVM IR of code loaded from its cache: recompile a private, uncached copy.
        source = self._base.source.replace("JIT = dict(cache=True,", "JIT = dict(cache=False,", 1)
        ns: dict = {"__name__": self._base.module.__name__ + "_inspect"}
        exec(compile(source, "<scg inspect>", "exec"), ns)  # noqa: S102 -- our generated text
        return ns

    def _inspectable(self):
        return types.SimpleNamespace(**self._inspectable_ns)

    # -- compilation -------------------------------------------------------------------
    def _step(self, k: Kernel, module) -> Callable:
        by_uid = {n.uid: n for n in self.graph.nodes}
        dtype = self.dtype
        if k.kind == "rows":
            func = getattr(module, k.name)
            arrays = kernel_arrays(k, by_uid)
            outs = [(u, tuple(by_uid[u].shape), np.int64 if by_uid[u].dtype == "i64" else dtype)
                    for u in k.outputs]
            check = self.index_checks(k)
            sites = module.SITES[k.name]

            def rows(V, env, k0, k1):
                check(V.__getitem__)
                for u, shape, dt in outs:
                    V[u] = np.empty((env.n, *shape), dt)
                func(env.n, env.n_rows, k0, k1, *sites, dtype(1.0 / env.n), *[_arg(V[u]) for u in arrays])
            return rows
        (node,) = k.nodes
        if k.kind == "cross" and node.op is Op.LOO_BASELINE:
            def loo(V, env, k0, k1):
                x = V[node.inputs[0].uid]
                if env.n_samples < 2:  # the spec's error, word for word
                    run_node(node, [x], env)
                out = np.empty_like(x)
                self.rt.loo(x.reshape(env.n, -1), out.reshape(env.n, -1), env.n_samples, env.n_rows)
                V[node.uid] = out
            return loo
        if k.kind == "cross":  # unbroadcast: a sum over rows
            def colsum(V, env, k0, k1):
                x = np.ascontiguousarray(V[node.inputs[0].uid])
                out = np.empty(node.shape, dtype)
                self.rt.colsum(x.reshape(env.n, -1), out.reshape(-1))
                V[node.uid] = out
            return colsum

        if node.uid in self.folded:
            cache: list[np.ndarray] = []

            def folded(V, env, k0, k1):  # a constant: its numpy rule once, at the first call
                if not cache:
                    cache.append(run_node(node, [V[x.uid] for x in node.inputs], env))
                V[node.uid] = cache[0]
            return folded

        def host(V, env, k0, k1):  # BLAS (matmul, outer_sum) and unbatched nodes: the numpy rule itself
            V[node.uid] = run_node(node, [V[x.uid] for x in node.inputs], env)
        return host

    # -- execution ----------------------------------------------------------------------
    def run(self, params, inputs, **call) -> dict[int, np.ndarray]:
        """Evaluate the graph with ``numpy_ref.evaluate``'s semantics; see the module docstring."""
        env, values, skip = bind(self.graph, params, inputs, precision=self.precision, **call)
        leaves = set(values)
        variant = self._variant(frozenset(values), frozenset(skip))
        k0, k1 = seed_key(env.seed)
        inv_n = self.dtype(1.0 / env.n)
        spec_call = self.spec(params, inputs, call)
        # a phase-1 call hands every value back as phase 2's overrides; otherwise the outputs suffice
        keep = None if (skip or call.get("stop_at_external")) else self._outputs
        with RUN_LOCK, np.errstate(all="ignore"), blas_limit():
            ws = variant.workspace
            if ws is None or ws.n != env.n:  # buffers for this row count, reused by the next calls
                ws = variant.workspace = Workspace(variant.schedule, self._by_uid, env.n, self.dtype)
            for item in variant.schedule.items:
                if isinstance(item, Kernel):
                    variant.host[item.name](values, env, k0, k1)
                    continue
                self._before(item, values, env)
                code = variant.drivers[item.name](env.n, env.n_rows, k0, k1, inv_n,
                                                  *[_arg(values[u]) for u in item.reads],
                                                  *[ws.arrays[u] for u in item.writes])
                values.update((u, ws.views[u]) for u in item.writes)
                if code:  # an index computed inside the segment is out of range: the spec's error
                    spec_call()
                    raise BackendError(f"numba range check {code} of graph {self.graph.name!r} failed "
                                       "but the numpy spec accepted the call")
            self.check_call(values.get, env, skip, spec_call)
            # fresh arrays out: the workspace is overwritten by the next call
            return {u: v if u in leaves else v.copy() for u, v in values.items()
                    if u in leaves or keep is None or u in keep}

    def _before(self, seg: Segment, values, env) -> None:
        """Python-side checks of a segment's operands (the ones a kernel cannot report by name)."""
        for node_uid, idx in seg.host_checks:
            node = self._by_uid[node_uid]
            _check_indices(values[idx], index_depth(node), node, CHECK_WHAT[node.op])
        if seg.loo and env.n_samples < 2:  # the spec's error, word for word
            run_node(self._by_uid[seg.loo[0]], [None], env)
