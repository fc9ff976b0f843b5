"""The NumPy reference interpreter: the executable specification of the scg IR.

``evaluate`` walks a graph in topological order and computes every node with
the rule of its op in ``numpy_impls`` (see ``numpy_ops``). Every other backend
is parity-tested against it, so it is deliberately plain: one implementation
per op, stable formulas, strict validation of what the caller passes in.

Row layout with K draws per row (``n_samples=K``): a batched value has
``K*B`` rows, draw-major; row ``r`` holds draw ``k = r // B`` of user row
``b = r % B``, so batched inputs are ``np.tile``-d K times along axis 0 and
the sampler for draw k sees rows ``k*B:(k+1)*B`` with ``draw=k``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from scg.backends import numpy_credit, numpy_zoo  # noqa: F401  (register the estimator composites' rules)
from scg.backends.numpy_ops import numpy_impls
from scg.errors import BackendError, InputError, ScgError
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import I64

__all__ = ["PRECISIONS", "Env", "bind", "evaluate", "numpy_impls", "run_node"]

PRECISIONS = {"float64": np.float64, "float32": np.float32}
_LOADED = frozenset({Op.INPUT, Op.PARAM, Op.EXTERNAL_COST, Op.STATE})


@dataclass
class Env:
    """Runtime context of one evaluation."""

    n_rows: int                 # B, rows in the user's batch
    n_samples: int = 1          # K independent draws per row
    seed: int = 0
    dtype: type = np.float64    # float dtype of every float value ("precision")

    @property
    def n(self) -> int:
        """Length of the leading axis of batched arrays: K*B."""
        return self.n_rows * self.n_samples


# -- validation of what the caller passes in ---------------------------------------------
def _fmt_shape(shape: tuple[int, ...], batched: bool) -> str:
    dims = (["B"] if batched else []) + [str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _dtype_name(node: Node) -> str:
    return "int64" if node.dtype == I64 else "float"


def _check_names(what: str, given: Mapping[str, Any], expected: dict[str, Node], skip: set[str]) -> None:
    if not isinstance(given, Mapping):
        raise InputError(f"{what}s must be a dict of name -> array, got {type(given).__name__}")
    listing = ", ".join(f"{k}{_fmt_shape(n.shape, n.batched)}" for k, n in sorted(expected.items())) or "none"
    extra = sorted(str(k) for k in given if k not in expected)
    if extra:
        raise InputError(f"unknown {what} name(s) {', '.join(map(repr, extra))}; the graph expects: {listing}")
    for name, node in expected.items():
        if name not in given and name not in skip:
            raise InputError(f"missing {what} {name!r}: expected a {_dtype_name(node)} array of shape "
                             f"{_fmt_shape(node.shape, node.batched)} (the graph expects: {listing})")


def _as_array(value: Any, node: Node, what: str) -> np.ndarray:
    """``value`` as an ndarray of the node's dtype kind; refuses lossy or non-numeric data."""
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as e:  # ragged lists and the like
        raise InputError(f"{what} {node.label()} is not convertible to an array: {e}") from None
    if node.dtype == I64:
        if arr.dtype.kind not in "iu":
            raise InputError(f"{what} {node.label()} must be an integer array (declared int64), got dtype {arr.dtype}")
        if arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max:  # would wrap to negatives
            first = np.unravel_index(int(np.argmax(arr > np.iinfo(np.int64).max)), arr.shape)
            raise InputError(f"{what} {node.label()} has value {int(arr[first])} at index {tuple(map(int, first))}, "
                             "which does not fit int64 (the declared dtype)")
    elif arr.dtype.kind not in "fiub":
        raise InputError(f"{what} {node.label()} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def _cast(arr: np.ndarray, node: Node, env: Env) -> np.ndarray:
    # not ascontiguousarray: it turns 0-d params into shape (1,)
    return np.asarray(arr, dtype=np.int64 if node.dtype == I64 else env.dtype, order="C")


def _check_shape(arr: np.ndarray, node: Node, what: str, expected: tuple[int, ...]) -> None:
    if arr.shape != expected:
        raise InputError(f"{what} {node.label()} has shape {arr.shape}, expected "
                         f"{_fmt_shape(node.shape, node.batched)} = {expected}")


def _external_rows(arr: np.ndarray, k: int) -> int | None:
    """B implied by an external cost array of shape (K*B,) or (K, B)."""
    if arr.ndim == 2 and arr.shape[0] == k:
        return arr.shape[1]
    if arr.ndim == 1 and arr.shape[0] % k == 0:
        return arr.shape[0] // k
    return None


def _batch_rows(graph: Graph, inputs, external, overrides, k: int, skip: set[int]) -> int:
    """B: from the batched inputs (which must agree), else external costs, else overrides, else 1."""
    rows: dict[str, int] = {}
    for name, node in graph.inputs.items():
        if node.uid in skip or name not in inputs:
            continue
        arr = _as_array(inputs[name], node, "input")
        if arr.ndim != node.type.rank + 1:
            raise InputError(f"input {node.label()} has shape {arr.shape}, expected "
                             f"{_fmt_shape(node.shape, True)} (a leading axis of B rows, then the per-row shape)")
        rows[name] = arr.shape[0]
    if len(set(rows.values())) > 1:
        counts = ", ".join(f"{name!r} has {b}" for name, b in rows.items())
        raise InputError(f"inputs disagree on the number of rows B: {counts}")
    if rows:
        return next(iter(rows.values()))
    for name, node in graph.external_costs.items():
        if name in external and node.uid not in skip:
            b = _external_rows(np.asarray(external[name]), k)
            if b is not None:
                return b
    for node, value in overrides.items():
        if node.batched and np.ndim(value) >= 1:
            return np.shape(value)[0] // k
    return 1


def _load(node: Node, env: Env, params, inputs, external, state) -> np.ndarray:
    """Validated value of an INPUT, PARAM, EXTERNAL_COST or STATE leaf, in the interpreter layout."""
    if node.op is Op.INPUT:
        arr = _as_array(inputs[node.name], node, "input")
        _check_shape(arr, node, "input", (env.n_rows, *node.shape))
        return _cast(np.tile(arr, (env.n_samples,) + (1,) * node.type.rank), node, env)
    if node.op is Op.PARAM:
        arr = _as_array(params[node.name], node, "param")
        _check_shape(arr, node, "param", node.shape)
        return _cast(arr, node, env)
    if node.op is Op.EXTERNAL_COST:
        arr = _as_array(external[node.name], node, "external cost")
        if arr.shape not in ((env.n,), (env.n_samples, env.n_rows)):
            accepted = f"(K*B,) = ({env.n},)" + (f" or (K, B) = {(env.n_samples, env.n_rows)}"
                                                  if env.n_samples > 1 else "")
            raise InputError(f"external cost {node.label()} has shape {arr.shape}, expected {accepted} "
                             "(draw-major: entry k*B + b is draw k of row b)")
        return _cast(arr.reshape(env.n), node, env)
    key = node.attrs.get("name", node.name)
    if key not in state:
        raise InputError(f"missing estimator state {key!r} for {node.label()}: expected an array of shape "
                         f"{node.shape} (known state: {', '.join(sorted(map(str, state))) or 'none'})")
    arr = _as_array(state[key], node, "state")
    _check_shape(arr, node, "state", node.shape)
    return _cast(arr, node, env)


def _check_override(node: Node, value: Any, graph: Graph, env: Env) -> np.ndarray:
    if not isinstance(node, Node) or not graph.contains(node):
        raise InputError(f"override for {node!r}, which is not a node of graph {graph.name!r}")
    arr = _as_array(value, node, "override of")
    expected = (env.n, *node.shape) if node.batched else node.shape
    _check_shape(arr, node, "override of", expected)
    return _cast(arr, node, env)


def _depends_on_external(graph: Graph, overridden: set[int]) -> set[int]:
    """uids of nodes whose value needs an external cost (an overridden node needs nothing)."""
    tainted: set[int] = set()
    for node in graph.nodes:
        if node.uid in overridden:
            continue
        if node.op is Op.EXTERNAL_COST or any(x.uid in tainted for x in node.inputs):
            tainted.add(node.uid)
    return tainted


def bind(graph: Graph, params, inputs, *, seed: int = 0, n_samples: int = 1, precision: str = "float64",
         external=None, state=None, overrides=None,
         stop_at_external: bool = False) -> tuple[Env, dict[int, np.ndarray], set[int]]:
    """Validate the call and load the leaves: ``(env, values by uid, uids to skip)``.

    ``values`` holds every INPUT, PARAM, EXTERNAL_COST and STATE leaf and every
    override, converted to the interpreter layout; the skipped uids are the
    nodes that depend on an external cost when ``stop_at_external`` is set.
    Input, param and external-cost names must match the graph exactly; extra
    ``state`` entries are ignored (an estimator may keep state for pruned nodes).
    Backends share this so that every backend validates calls identically.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise InputError(f"n_samples must be a positive int, got {n_samples!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise InputError(f"seed must be an int in [0, 2**64), got {seed!r}")
    external, state, overrides = external or {}, state or {}, dict(overrides or {})
    over_ids = {getattr(n, "uid", None) for n in overrides}
    skip = _depends_on_external(graph, over_ids) if stop_at_external else set()
    skip_names = {n.name for n in graph.nodes if n.uid in over_ids | skip}
    _check_names("input", inputs, graph.inputs, skip_names)
    _check_names("param", params, graph.params, skip_names)
    _check_names("external cost", external, graph.external_costs, skip_names)
    if not isinstance(state, Mapping):
        raise InputError(f"state must be a dict of name -> array, got {type(state).__name__}")
    k = int(n_samples)
    env = Env(_batch_rows(graph, inputs, external, overrides, k, over_ids), k, int(seed), PRECISIONS[precision])
    values = {node.uid: _check_override(node, v, graph, env) for node, v in overrides.items()}
    for node in graph.nodes:
        if node.op in _LOADED and node.uid not in values and node.uid not in skip:
            values[node.uid] = _load(node, env, params, inputs, external, state)
    return env, values, skip


def run_node(node: Node, args: list[np.ndarray], env: Env) -> np.ndarray:
    """Apply the node's rule from ``numpy_impls`` and check the result has the node's type."""
    try:
        impl = numpy_impls[node.op]
    except KeyError:
        raise BackendError(f"the numpy backend has no implementation of op {node.op.pretty!r} "
                           f"(needed by {node.label()})") from None
    try:
        out = np.asarray(impl(node, args, env))
    except (ScgError, MemoryError):  # out of memory is the call's size, not a bug: the caller reports it
        raise
    except Exception as e:  # a NumPy failure inside a rule is a backend bug; say where it happened
        raise BackendError(f"numpy {node.op.pretty} failed at {node.label()} ({node.type}): {e}") from e
    expected = (env.n, *node.shape) if node.batched else node.shape
    if out.shape != expected:
        raise BackendError(f"numpy {node.op.pretty} returned shape {out.shape} for {node.label()}, "
                           f"expected {expected} ({node.type})")
    return out.astype(np.int64 if node.dtype == I64 else env.dtype, copy=False)


def evaluate(graph: Graph, params: dict[str, np.ndarray], inputs: dict[str, np.ndarray], *, seed: int = 0,
             n_samples: int = 1, precision: str = "float64", external: dict[str, np.ndarray] | None = None,
             state: dict[str, np.ndarray] | None = None, overrides: dict[Node, np.ndarray] | None = None,
             stop_at_external: bool = False) -> dict[int, np.ndarray]:
    """Evaluate every node of ``graph``; return ``{node.uid: value}``.

    Batched values are ``(n_samples * B, *shape)`` (draw-major), unbatched ones
    ``shape``. ``overrides`` pins node values (an overridden node is not
    computed). With ``stop_at_external`` the nodes depending on an external
    cost are skipped (phase 1 of a two-phase call) and absent from the result.
    Floating-point exceptions (log(0), overflow) give inf/nan silently, as in
    compiled backends.
    """
    env, values, skip = bind(graph, params, inputs, seed=seed, n_samples=n_samples, precision=precision,
                             external=external, state=state, overrides=overrides,
                             stop_at_external=stop_at_external)
    with np.errstate(all="ignore"):
        for node in graph.nodes:
            if node.uid in values or node.uid in skip:
                continue
            values[node.uid] = run_node(node, [values[x.uid] for x in node.inputs], env)
    return values
