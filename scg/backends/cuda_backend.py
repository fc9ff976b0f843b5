"""The Numba CUDA backend: lower -> fuse -> render (``cuda_render``) -> run on the device.

``CudaProgram(graph, precision)`` implements the ``Program`` protocol of
``scg.backends.registry`` with the semantics of the NumPy interpreter: it
validates and loads a call with ``numpy_ref.bind`` and runs the same fused plan
as the Numba CPU backend, step by step:

* ``rows`` kernels: generated ``@cuda.jit`` kernels, one thread per row
  (grid-stride), the CPU kernels' bodies (``cuda_render``); samples come from the
  same counter-based Philox, so a seed gives the NumPy backend's samples;
* ``blas`` steps: matmul (every layout) and outer_sum (the parameter-gradient
  reduction over rows) by the fixed kernels of ``cuda_runtime``: one thread per
  output element, summing in a fixed order (deterministic, no atomics);
* ``cross`` steps: leave-one-out baseline and sums over rows, on the device;
* ``host`` steps of the plan: unbatched elementwise nodes and transposes
  (parameter-side algebra such as ``exp(s)``, ``W.T``, scaling a gradient) run on
  the device as small generated kernels ``u<uid>`` (``cuda_render.device_host_op``);
  the rest (constants, unbatched reductions, rare layouts) by their NumPy rule on
  the host, their operands copied to the host when they live on the device. The
  printed plan still says "host op" for both (the plan is target-agnostic).

Device residency: values live where they were produced and move only when a
step on the other side reads them (each at most once per call). Parameters can
stay on the GPU across steps::

    prog = est.program                                   # a CudaProgram
    dparams = prog.to_device(params)                     # once
    for step in range(n):
        values = prog.run(dparams, inputs, seed=step, keep_on_device=True)
        prog.sgd_step(dparams, values, lr=0.1)           # p -= lr * grad, on the device
    params = prog.to_host(dparams)

``run(..., keep_on_device=True)`` returns device arrays for the values computed
on the device (no copy back); the default returns NumPy arrays, like every
backend. ``adam_step`` keeps the Adam moments on the device too.

Sizes: before a call, the bytes of every array the plan materialises are
compared with ``cuda_runtime.memory_limit()`` (the device's free memory; under
the simulator a nominal 4 GiB; ``SCG_CUDA_MEMORY_LIMIT`` lowers it) and a call
that would not fit raises a ``BackendError`` naming the sizes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from scg.backends import cuda_runtime, kernel_cache
from scg.backends.cuda_render import cuda_supported, device_host_op, render_module
from scg.backends.numba_render import _is_inline, kernel_arrays
from scg.backends.numpy_ref import PRECISIONS, bind, run_node
from scg.backends.planned import PlannedProgram
from scg.backends.rng import seed_key
from scg.errors import BackendError, InputError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import I64
from scg.passes.fuse import Kernel, Plan
from scg.passes.lower import OpClass


def is_device_array(x: Any) -> bool:
    """A numba.cuda device array (or the simulator's stand-in)."""
    return hasattr(x, "copy_to_host") and hasattr(x, "shape") and not isinstance(x, np.ndarray)


class Store:
    """Values of one call, each on the host, the device or both; moved on demand (at most once)."""

    def __init__(self, cuda, shapes: dict[int, tuple[int, ...]]):
        self.cuda = cuda
        self.shapes = shapes   # uid -> full (interpreter-layout) shape
        self.host: dict[int, np.ndarray] = {}
        self.dev: dict[int, Any] = {}

    def __contains__(self, uid: int) -> bool:
        return uid in self.host or uid in self.dev

    def h(self, uid: int) -> np.ndarray:
        if uid not in self.host:
            self.host[uid] = self.dev[uid].copy_to_host().reshape(self.shapes[uid])
        return self.host[uid]

    def d(self, uid: int):
        if uid not in self.dev:
            a = np.ascontiguousarray(self.host[uid])
            self.dev[uid] = self.cuda.to_device(a.reshape(-1) if a.ndim == 0 else a)
        return self.dev[uid]

    def put_host(self, uid: int, a: np.ndarray) -> None:
        self.host[uid] = a
        self.dev.pop(uid, None)

    def put_dev(self, uid: int, a) -> None:
        self.dev[uid] = a
        self.host.pop(uid, None)

    def uids(self):
        return self.host.keys() | self.dev.keys()


class CudaProgram(PlannedProgram):
    """A derived graph compiled to Numba CUDA kernels (see the module docstring)."""

    backend = "cuda"
    module_prefix = "scg_cuda_k"
    fuse_parallel = False

    def __init__(self, graph: Graph, precision: str = "float64"):
        if precision in PRECISIONS:  # a bad precision is the base's InputError, before asking for a device
            self.cuda = cuda_runtime.require_cuda()
            self.k = cuda_runtime.kernels()
        super().__init__(graph, precision)

    def _supported(self, node: Node, cls: OpClass) -> bool:
        return cuda_supported(node, cls)

    def _load_runtime(self):
        try:
            return kernel_cache.load(f"scg_cudart_{self.precision}", cuda_runtime.runtime_source(self.precision))
        except Exception as e:
            raise BackendError(f"numba.cuda could not compile the scg device runtime: {type(e).__name__}: {e}") from e

    def _render(self, plan: Plan) -> str:
        return render_module(plan, self.lowered, self.precision, self.rt.__name__)

    def llvm(self, kernel: str | None = None) -> str:
        raise BackendError("the cuda backend shows its kernels as Python source (est.source); for PTX use "
                           "numba.cuda.compile_ptx on module.SIGNATURES (needs the numba-cuda package)")

    # -- compilation -------------------------------------------------------------------
    def _sizer(self, plan: Plan, given: frozenset) -> Callable[[int], int]:
        """Bytes of every array a call materialises, as a function of the row count n."""
        by_uid = {n.uid: n for n in self.graph.nodes}
        uids = set(given) | {u for k in plan.kernels for u in k.outputs}
        per_row, fixed = 0, 0
        for u in uids:
            node = by_uid[u]
            item = 8 if node.dtype == I64 else np.dtype(self.dtype).itemsize
            size = math.prod(node.shape) * item
            if node.batched:
                per_row += size
            else:
                fixed += size
        return lambda n: per_row * n + fixed

    def _step(self, k: Kernel, module) -> Callable:
        by_uid = {n.uid: n for n in self.graph.nodes}
        dtype, cuda, kern = self.dtype, self.cuda, self.k
        if k.kind == "rows":
            func = getattr(module, k.name)
            arrays = kernel_arrays(k, by_uid)
            outs = [(u, tuple(by_uid[u].shape), np.int64 if by_uid[u].dtype == "i64" else dtype)
                    for u in k.outputs]
            check = self.index_checks(k)
            sites = module.SITES[k.name]

            def rows(S: Store, env, k0, k1):
                check(S.h)
                for u, shape, dt in outs:
                    S.put_dev(u, cuda.device_array((env.n, *shape), dt))
                blocks, tpb = cuda_runtime.launch_config(env.n)
                func[blocks, tpb](env.n, env.n_rows, k0, k1, *sites, dtype(1.0 / env.n), *[S.d(u) for u in arrays])
            return rows
        (node,) = k.nodes
        if k.kind == "cross" and node.op is Op.LOO_BASELINE:
            def loo(S: Store, env, k0, k1):
                x = node.inputs[0]
                if env.n_samples < 2:  # the spec's error, word for word
                    run_node(node, [S.h(x.uid)], env)
                xd = S.d(x.uid)
                size = math.prod(x.shape)
                out = cuda.device_array((env.n, *node.shape), dtype)
                cuda_runtime.launch(kern["loo"], env.n_rows * size, xd.reshape(env.n, size),
                                    out.reshape(env.n, size), env.n_samples, env.n_rows)
                S.put_dev(node.uid, out)
            return loo
        if k.kind == "cross":  # unbroadcast: a sum over rows
            def colsum(S: Store, env, k0, k1):
                size = math.prod(node.shape)
                out = cuda.device_array(node.shape or (1,), dtype)
                cuda_runtime.launch(kern["colsum"], size, S.d(node.inputs[0].uid).reshape(env.n, size),
                                    out.reshape(size))
                S.put_dev(node.uid, out)
            return colsum
        if k.kind == "blas" and node.op is Op.MATMUL:
            return self._matmul(node)
        if k.kind == "blas" and node.op is Op.OUTER_SUM:
            return self._outer_sum(node)

        if device_host_op(node, k):  # unbatched elementwise / transpose: a small generated kernel
            func = getattr(module, f"u{node.uid}")
            ins = list(dict.fromkeys(x.uid for x in node.inputs if not _is_inline(x)))
            size = math.prod(node.shape)
            odt = np.int64 if node.dtype == I64 else dtype

            def unbatched(S: Store, env, k0, k1):
                out = cuda.device_array(node.shape or (1,), odt)
                blocks, tpb = cuda_runtime.launch_config(size)
                func[blocks, tpb](*[S.d(u) for u in ins], out)
                S.put_dev(node.uid, out)
            return unbatched

        def host(S: Store, env, k0, k1):  # other host nodes: the numpy rule itself, on the host
            S.put_host(node.uid, run_node(node, [S.h(x.uid) for x in node.inputs], env))
        return host

    def _matmul(self, node: Node) -> Callable:
        """Every matmul layout as one batched product out[z, i, j] = sum_k a[z, i, k] b[z, k, j]."""
        ta, tb = node.inputs
        ni = ta.shape[-2] if ta.type.rank == 2 else 1
        nk = ta.shape[-1]
        nj = tb.shape[-1] if tb.type.rank == 2 else 1
        cuda, dtype, bmm = self.cuda, self.dtype, self.k["bmm"]

        def matmul(S: Store, env, k0, k1):
            nz = env.n if node.batched else 1
            a = S.d(ta.uid).reshape(env.n if ta.batched else 1, ni, nk)
            b = S.d(tb.uid).reshape(env.n if tb.batched else 1, nk, nj)
            out = cuda.device_array((nz, ni, nj), dtype)
            cuda_runtime.launch(bmm, nz * ni * nj, a, b, out)
            full = (env.n, *node.shape) if node.batched else node.shape
            S.put_dev(node.uid, out.reshape(full) if full else out.reshape(1))
        return matmul

    def _outer_sum(self, node: Node) -> Callable:
        """sum over rows (and leading per-row axes) of outer(a, b): the parameter-gradient reduction."""
        ta, tb = node.inputs
        n, m = ta.shape[-1], tb.shape[-1]
        la, lb = math.prod(ta.shape[:-1]), math.prod(tb.shape[:-1])
        cuda, dtype, kern = self.cuda, self.dtype, self.k["outer_sum"]

        def outer_sum(S: Store, env, k0, k1):
            ra = la * (env.n if ta.batched else 1)
            rb = lb * (env.n if tb.batched else 1)
            # an unbatched operand is broadcast over the batch: row q of it is q % (its own rows)
            nrows = la * (env.n if ta.batched or tb.batched else 1)
            out = cuda.device_array((n, m), dtype)
            cuda_runtime.launch(kern, n * m, S.d(ta.uid).reshape(ra, n), S.d(tb.uid).reshape(rb, m), nrows, out)
            S.put_dev(node.uid, out)
        return outer_sum

    # -- device residency -----------------------------------------------------------------
    def to_device(self, params: dict[str, np.ndarray]) -> dict[str, Any]:
        """Copies of ``params`` on the device, in the program's dtype (pass them to ``run``)."""
        out = {}
        for name, value in params.items():
            node = self.graph.params.get(name)
            a = np.ascontiguousarray(value, dtype=np.int64 if node is not None and node.dtype == I64 else self.dtype)
            out[name] = self.cuda.to_device(a.reshape(-1) if a.ndim == 0 else a)
        return out

    @staticmethod
    def to_host(values: dict) -> dict:
        """NumPy copies of a dict of device arrays (others pass through)."""
        return {k: v.copy_to_host() if is_device_array(v) else v for k, v in values.items()}

    def _grad_pairs(self, dparams: dict, values: dict[int, Any]):
        for key, node in self.graph.outputs.items():
            if key.startswith("grad/"):
                name = key.removeprefix("grad/")
                g = values[node.uid]
                if not is_device_array(g):
                    g = self.cuda.to_device(np.ascontiguousarray(g, dtype=self.dtype).reshape(-1))
                p = dparams[name]
                if not is_device_array(p):
                    raise InputError(f"param {name!r} is not a device array: use program.to_device(params)")
                yield name, p.reshape(p.size), g.reshape(g.size)

    def sgd_step(self, dparams: dict, values: dict[int, Any], lr: float) -> None:
        """p -= lr * grad for every param, on the device (``values`` from ``run``)."""
        for _, p, g in self._grad_pairs(dparams, values):
            cuda_runtime.launch(self.k["axpy"], p.size, p, self.dtype(-lr), g)

    def adam_step(self, dparams: dict, values: dict[int, Any], state: dict, lr: float = 1e-3,
                  betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        """One Adam step on the device; ``state`` (a dict the caller keeps) holds the moments on the device."""
        t = state["t"] = state.get("t", 0) + 1
        b1, b2 = betas
        for name, p, g in self._grad_pairs(dparams, values):
            if name not in state:
                state[name] = (self.cuda.to_device(np.zeros(p.size, self.dtype)),
                               self.cuda.to_device(np.zeros(p.size, self.dtype)))
            m, v = state[name]
            f = self.dtype
            cuda_runtime.launch(self.k["adam"], p.size, p, g, m, v, f(lr), f(b1), f(b2), f(eps),
                                f(1.0 - b1 ** t), f(1.0 - b2 ** t))

    # -- execution ----------------------------------------------------------------------
    def _split_device_params(self, params) -> tuple[dict, dict]:
        """Device-array params -> zero-stride host placeholders for ``bind`` + the arrays themselves."""
        host, dev = {}, {}
        for name, value in (params.items() if hasattr(params, "items") else []):
            node = self.graph.params.get(name)
            if node is None or not is_device_array(value):
                host[name] = value
                continue
            want_dt = np.dtype(np.int64 if node.dtype == I64 else self.dtype)
            shape = tuple(value.shape)
            if shape != tuple(node.shape) and not (node.shape == () and shape == (1,)):
                raise InputError(f"param {node.label()} is a device array of shape {shape}, expected {node.shape}")
            if np.dtype(value.dtype) != want_dt:
                raise InputError(f"param {node.label()} is a device array of dtype {value.dtype}, expected "
                                 f"{want_dt} (precision={self.precision!r}); use program.to_device(params)")
            host[name] = np.broadcast_to(np.zeros((), want_dt), node.shape)
            dev[node.uid] = value
        return (host if dev else params), dev

    def _host_params(self, params) -> dict:
        """Host copies of device-array params, in their declared shapes (for re-running the spec)."""
        out = self.to_host(dict(params))
        for name, node in self.graph.params.items():
            if name in out:
                out[name] = np.asarray(out[name]).reshape(node.shape)
        return out

    def run(self, params, inputs, keep_on_device: bool = False, **call) -> dict[int, Any]:
        """Evaluate the graph with ``numpy_ref.evaluate``'s semantics; see the module docstring."""
        host_params, dev_params = self._split_device_params(params)
        env, values, skip = bind(self.graph, host_params, inputs, precision=self.precision, **call)
        variant = self._variant(frozenset(values), frozenset(skip))
        need, limit = variant.nbytes(env.n), cuda_runtime.memory_limit()
        if need > limit:
            raise BackendError(f"graph {self.graph.name!r} needs ~{need / 2**20:.1f} MiB of device memory for "
                               f"{env.n} rows (B={env.n_rows} x n_samples={env.n_samples}) but only "
                               f"{limit / 2**20:.1f} MiB are available; use fewer rows per call")
        by_uid = {n.uid: n for n in self.graph.nodes}
        shapes = {n.uid: ((env.n, *n.shape) if n.batched else tuple(n.shape)) for n in self.graph.nodes}
        S = Store(self.cuda, shapes)
        for uid, v in values.items():
            if uid in dev_params:
                S.put_dev(uid, dev_params[uid])
            else:
                S.put_host(uid, v)
        k0, k1 = seed_key(env.seed)
        spec = self.spec(self._host_params(params) if dev_params else params, inputs, call)
        with np.errstate(all="ignore"):
            try:
                for step in variant.steps:
                    step(S, env, k0, k1)
            except (ArithmeticError, ValueError) as e:  # the simulator's math errors inside a kernel
                raise self.kernel_failed(e, spec) from e
        self.check_call(lambda u: S.h(u) if u in S else None, env, skip, spec)
        if keep_on_device:
            return {u: (S.dev[u] if u in S.dev else S.host[u]) for u in S.uids()}
        out = {}
        for u in S.uids():
            a = S.h(u)
            node = by_uid[u]
            out[u] = a.astype(np.int64 if node.dtype == I64 else self.dtype, copy=False)
        return out
