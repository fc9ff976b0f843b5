"""Per-op Numba templates (the ``numba_templates`` rule tables).

``map_templates[op](node, cx, idx)`` returns the scalar Python expression of an
elementwise (MAP) node at per-row index ``idx`` (a list of index expressions of
the node's rank); ``cx`` is the renderer's context (``val``/``fval`` give operand
expressions with NumPy broadcasting, ``elem`` the flat element index, ``lit`` a
constant in the working dtype). ``row_templates[op](node, cx, out)`` emits the
statements of a row op through ``out`` (an indenting line writer).

Each template mirrors its rule in ``numpy_ops`` / ``numpy_credit`` expression by
expression (same operand order, same dtype casts) so that float64 results agree
to rounding and samples bit for bit. Only generated identifiers and numbers
ever appear in the text: never a user string.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from scg.ir.node import Node
from scg.ir.ops import Op
from scg.ir.types import I64

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _unary(fmt: str) -> Callable:
    def tpl(node, cx, idx):
        return fmt.format(cx.fval(node.inputs[0], idx))
    return tpl


def _arith(sym: str) -> Callable:
    def tpl(node, cx, idx):
        get = cx.val if node.dtype == I64 else cx.fval
        a, b = (get(x, idx) for x in node.inputs)
        return f"({a} {sym} {b})"
    return tpl


def _compare(sym: str) -> Callable:
    def tpl(node, cx, idx):
        a, b = (cx.val(x, idx) for x in node.inputs)
        return f"({cx.lit(1.0)} if {a} {sym} {b} else {cx.lit(0.0)})"
    return tpl


def _where(node, cx, idx):
    c = cx.val(node.inputs[0], idx)
    a, b = (cx.fval(x, idx) for x in node.inputs[1:])
    return f"({a} if {c} != 0 else {b})"


def _identity(node, cx, idx):
    return cx.val(node.inputs[0], idx)


def _cast(node, cx, idx):
    return cx.fval(node.inputs[0], idx)


def _reshape(node, cx, idx):
    """Adding/dropping size-1 axes: the non-1 axes map in order."""
    src = node.inputs[0]
    keep = [i for i, d in zip(idx, node.shape, strict=True) if d != 1]
    it = iter(keep)
    mapped = ["0" if d == 1 else next(it) for d in src.shape]
    return cx.val(src, mapped, aligned=True)


def _one_hot(node, cx, idx):
    v = cx.val(node.inputs[0], idx[:-1])
    return f"({cx.lit(1.0)} if {v} == {idx[-1]} else {cx.lit(0.0)})"


def _take(node, cx, idx):
    x, i = node.inputs
    return cx.fval(x, idx + [cx.val(i, idx)])


def _leaky_relu(node, cx, idx):
    return f"rt.leaky_relu({cx.fval(node.inputs[0], idx)}, {cx.lit(float(node.attrs['negative_slope']))})"


def _bernoulli(node, cx, idx):
    logit = f"F64({cx.val(node.inputs[0], idx)})"
    return f"rt.bern_at({logit}, k0, k1, {cx.site(node)}, d, b, {cx.elem(node, idx)})"


def _noise(node, cx, idx):
    return f"rt.normal_at(k0, k1, {cx.site(node)}, d, b, {cx.elem(node, idx)})"


def _noise_uniform(node, cx, idx):
    return f"F(rt.uniform1(k0, k1, {cx.site(node)}, d, b, {cx.elem(node, idx)}))"  # numpy_zoo.noise_uniform


def _normal(node, cx, idx):
    loc, scale = (cx.fval(x, idx) for x in node.inputs)
    return f"({loc} + {scale} * {_noise(node, cx, idx)})"


def _bernoulli_logp(node, cx, idx):
    logits, value = (cx.fval(x, idx) for x in node.inputs)
    inf = f"({cx.lit(0.0)} if {value} == ({cx.lit(1.0)} if {logits} > 0 else {cx.lit(0.0)}) else {cx.lit(-math.inf)})"
    return f"(({value} * {logits} - rt.softplus({logits})) if abs({logits}) != math.inf else {inf})"  # numpy_ops


def _normal_logp(node, cx, idx):
    loc, scale, value = (cx.fval(x, idx) for x in node.inputs)
    z = f"(({value} - {loc}) / {scale})"
    return f"({cx.lit(-0.5)} * ({z} * {z}) - math.log({scale}) - {cx.lit(_HALF_LOG_2PI)})"


map_templates: dict[Op, Callable[[Node, object, list[str]], str]] = {
    Op.NEG: lambda node, cx, idx: f"(-{cx.val(node.inputs[0], idx)})",
    Op.EXP: _unary("math.exp({})"), Op.LOG: _unary("math.log({})"), Op.SIGMOID: _unary("rt.sigmoid({})"),
    Op.TANH: _unary("math.tanh({})"), Op.RELU: _unary("rt.relu({})"),
    Op.LEAKY_RELU: _leaky_relu, Op.SOFTPLUS: _unary("rt.softplus({})"),
    Op.LOG_SIGMOID: _unary("(-rt.softplus(-{}))"), Op.SQUARE: _unary("({0} * {0})"),
    Op.SQRT: _unary("math.sqrt({})"), Op.STEP: _unary("rt.step({})"), Op.CAST_F: _cast,
    Op.ADD: _arith("+"), Op.SUB: _arith("-"), Op.MUL: _arith("*"), Op.DIV: _arith("/"),
    Op.EQUAL: _compare("=="), Op.GREATER: _compare(">"), Op.WHERE: _where,
    Op.COST: _cast, Op.STOP_GRADIENT: _identity, Op.BROADCAST_TO: _identity, Op.UNBROADCAST: _identity,
    Op.RESHAPE: _reshape, Op.ONE_HOT: _one_hot, Op.TAKE: _take,
    Op.BERNOULLI: _bernoulli, Op.NORMAL: _normal, Op.NOISE_NORMAL: _noise,
    Op.ROW_SCALE: lambda node, cx, idx: "inv_n",
    Op.NOISE_UNIFORM: _noise_uniform, Op.STRAIGHT_THROUGH: _identity,
    Op.BERNOULLI_LOGP: _bernoulli_logp, Op.NORMAL_LOGP: _normal_logp,
}


# -- row ops: whole-row loop nests --------------------------------------------------------
def _lead_loops(cx, out, shape: tuple[int, ...]) -> list[str]:
    """Open nested loops over ``shape``; returns their index variables."""
    idx = []
    for d in shape:
        v = cx.fresh("j")
        out(f"for {v} in range({d}):")
        out.indent()
        idx.append(v)
    return idx


def _close(out, n: int) -> None:
    for _ in range(n):
        out.dedent()


def _shifted_max(cx, out, get: Callable[[str], str], k: int) -> str:
    """Emit the NaN-propagating max over k of get(k), replaced by 0 when not finite (numpy_ops._shift)."""
    m, kv, t = cx.fresh("m"), cx.fresh("k"), cx.fresh("t")
    out(f"{m} = {get('0')}")
    out(f"for {kv} in range(1, {k}):")
    out(f"    {t} = {get(kv)}")
    out(f"    if {t} > {m} or {t} != {t}:")
    out(f"        {m} = {t}")
    out(f"if not ({m} - {m} == 0):")
    out(f"    {m} = {cx.lit(0.0)}")
    return m


def _softmax_like(log: bool):
    def tpl(node, cx, out):
        x, k = node.inputs[0], node.shape[-1]
        lead = _lead_loops(cx, out, node.shape[:-1])
        m = _shifted_max(cx, out, lambda kk: cx.fval(x, lead + [kk]), k)
        s, kv = cx.fresh("s"), cx.fresh("k")
        out(f"{s} = F64(0.0)")
        out(f"for {kv} in range({k}):")
        e = f"({cx.fval(x, lead + [kv])} - {m})"
        if log:
            out(f"    {s} += F64(math.exp({e}))")
            out(f"for {kv} in range({k}):")
            out(f"    {cx.store(node, lead + [kv], f'{e} - math.log(F({s}))')}")
        else:
            out(f"    {cx.store(node, lead + [kv], f'math.exp({e})')}")
            out(f"    {s} += F64({cx.load(node, lead + [kv])})")
            out(f"for {kv} in range({k}):")
            out(f"    {cx.store(node, lead + [kv], f'{cx.load(node, lead + [kv])} / F({s})')}")
        _close(out, len(lead))
    return tpl


def _logsumexp(node, cx, out):
    x = node.inputs[0]
    whole = tuple(node.attrs["axes"]) != (x.type.rank - 1,)  # else: over the last axis only
    if whole:  # flatten every per-row axis of x: nested loops, then one running max and sum
        lead, dims = [], x.shape
    else:
        lead, dims = _lead_loops(cx, out, x.shape[:-1]), x.shape[-1:]
    m, t = cx.fresh("m"), cx.fresh("t")
    out(f"{m} = {cx.fval(x, lead + ['0'] * len(dims))}")
    inner = _lead_loops(cx, out, dims)
    out(f"{t} = {cx.fval(x, lead + inner)}")
    out(f"if {t} > {m} or {t} != {t}:")
    out(f"    {m} = {t}")
    _close(out, len(inner))
    out(f"if not ({m} - {m} == 0):")
    out(f"    {m} = {cx.lit(0.0)}")
    s = cx.fresh("s")
    out(f"{s} = F64(0.0)")
    inner = _lead_loops(cx, out, dims)
    out(f"{s} += F64(math.exp({cx.fval(x, lead + inner)} - {m}))")
    _close(out, len(inner))
    oidx = lead + ["0"] * (node.type.rank - len(lead))
    out(cx.store(node, oidx, f"math.log(F({s})) + {m}"))
    _close(out, len(lead))


def _categorical(node, cx, out):
    """rng.categorical per element: float64 logits, max shift, inverse CDF by a left-to-right cumsum."""
    t, k = node.inputs[0], node.inputs[0].shape[-1]
    lead = _lead_loops(cx, out, node.shape)
    get = lambda kk: f"F64({cx.val(t, lead + [kk])})"
    m, kv, tot, tgt, acc, pick = (cx.fresh(p) for p in ("m", "k", "tot", "tgt", "acc", "pick"))
    out(f"{m} = {get('0')}")
    out(f"for {kv} in range(1, {k}):")
    out(f"    if {get(kv)} > {m}:")
    out(f"        {m} = {get(kv)}")
    out(f"{tot} = 0.0")
    out(f"for {kv} in range({k}):")
    out(f"    {tot} += math.exp({get(kv)} - {m})")
    out(f"{tgt} = rt.uniform1(k0, k1, {cx.site(node)}, d, b, {cx.elem(node, lead)}) * {tot}")
    out(f"{acc} = 0.0")
    out(f"{pick} = {k - 1}")
    out(f"for {kv} in range({k}):")
    out(f"    {acc} += math.exp({get(kv)} - {m})")
    out(f"    if {tgt} < {acc}:")
    out(f"        {pick} = {kv}")
    out("        break")
    out(cx.store(node, lead, pick))
    _close(out, len(lead))


def _categorical_logp(node, cx, out):
    """log_softmax(logits)[..., value]: (x_c - m) - log(sum exp(x - m))."""
    t, v = node.inputs
    k = t.shape[-1]
    lead = _lead_loops(cx, out, node.shape)
    m = _shifted_max(cx, out, lambda kk: cx.fval(t, lead + [kk]), k)
    s, kv = cx.fresh("s"), cx.fresh("k")
    out(f"{s} = F64(0.0)")
    out(f"for {kv} in range({k}):")
    out(f"    {s} += F64(math.exp({cx.fval(t, lead + [kv])} - {m}))")
    c = cx.val(v, lead)
    out(cx.store(node, lead, f"({cx.fval(t, lead + [c])} - {m}) - math.log(F({s}))"))
    _close(out, len(lead))


def _hnca_affine(node, cx, out):
    u, w, lg, c = node.inputs
    fn = "rt.hnca_bern_row" if node.attrs["child"] == "bernoulli" else "rt.hnca_cat_row"
    out(f"{fn}({cx.row(u)}, {cx.row(w)}, {cx.row(lg)}, {cx.row(c)}, {cx.row(node)})")


def _hnca_onehot(node, cx, out):
    u, w, lg, c = node.inputs
    fn = "rt.hnca_onehot_bern_row" if node.attrs["child"] == "bernoulli" else "rt.hnca_onehot_cat_row"
    out(f"{fn}({cx.row(u)}, {cx.row(w)}, {cx.row(lg)}, {cx.row(c)}, {cx.row(node)})")


row_templates: dict[Op, Callable] = {
    Op.SOFTMAX: _softmax_like(False), Op.LOG_SOFTMAX: _softmax_like(True), Op.LOGSUMEXP: _logsumexp,
    Op.CATEGORICAL: _categorical, Op.CATEGORICAL_LOGP: _categorical_logp,
    Op.HNCA_AFFINE_DELTA: _hnca_affine, Op.HNCA_ONEHOT_LOGLIK: _hnca_onehot,
}
REDUCE_OPS = frozenset({Op.SUM, Op.MEAN, Op.UNBROADCAST})
