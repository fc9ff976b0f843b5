"""Reverse-mode autodiff on the IR: every differentiable op against central finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from fdcheck import SETTINGS, batches, broadcast_pair, dims, fd_check, operand, seeds, shapes, vals
from hypothesis import given, settings
from hypothesis import strategies as st

import scg
from scg.dsl.value import apply
from scg.ir import Op

# -- elementwise ops -----------------------------------------------------------------------------
UNARY = {
    "neg": (lambda x: -x, {}), "exp": (scg.exp, {}), "log": (scg.log, {"positive": True}),
    "sigmoid": (scg.sigmoid, {}), "tanh": (scg.tanh, {}), "relu": (scg.relu, {"away": 0.3}),
    "leaky_relu": (lambda v: scg.leaky_relu(v, negative_slope=0.2), {"away": 0.3}),
    "softplus": (scg.softplus, {}), "log_sigmoid": (scg.log_sigmoid, {}), "square": (scg.square, {}),
    "sqrt": (scg.sqrt, {"positive": True}),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@SETTINGS
@given(shape=shapes, batch=batches, seed=seeds)
def test_unary(name, shape, batch, seed):
    fn, domain = UNARY[name]
    rng = np.random.default_rng(seed)
    g = scg.Graph("unary")
    with g:
        x = scg.input("x", shape=shape)
        p = scg.param("p", shape=shape)
        c = rng.normal(size=shape)
        loss = scg.cost("loss", (fn(x * p) * c).sum())
    params = {"p": rng.uniform(0.7, 1.4, size=shape)}
    fd_check(g, loss, [p, x], params, {"x": vals(rng, (batch, *shape), **domain)})


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@SETTINGS
@given(data=st.data(), full=shapes, batch=batches, seed=seeds, swap=st.booleans())
def test_binary_broadcasting(op, data, full, batch, seed, swap):
    rng = np.random.default_rng(seed)
    sx, sp = broadcast_pair(data, full)
    g = scg.Graph("binary")
    with g:
        x = scg.input("x", shape=sx)
        p = scg.param("p", shape=sp)
        a, b = (p, x) if swap else (x, p)
        y = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
        loss = scg.cost("loss", (y * rng.normal(size=y.shape)).sum())
    positive = op == "div"
    params = {"p": vals(rng, sp, positive=positive)}
    fd_check(g, loss, [p, x], params, {"x": vals(rng, (batch, *sx), positive=positive)})


@SETTINGS
@given(n=dims, batch=batches, seed=seeds)
def test_batched_row_scalar_times_unbatched_vector(n, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("rowscalar")
    with g:
        s = scg.input("s")              # per-row scalar: (B,)
        v = scg.param("v", shape=(n,))  # unbatched vector
        u = scg.input("u", shape=(n,))
        loss = scg.cost("loss", scg.tanh(s * v + u * s).sum())
    fd_check(g, loss, [s, v, u], {"v": rng.normal(size=n)},
             {"s": rng.normal(size=batch), "u": rng.normal(size=(batch, n))})


@SETTINGS
@given(data=st.data(), full=shapes, batch=batches, seed=seeds)
def test_where_and_batched_operands(data, full, batch, seed):
    rng = np.random.default_rng(seed)
    sa, sb = broadcast_pair(data, full)
    g = scg.Graph("where")
    with g:
        cond = scg.input("cond", shape=full)
        a = scg.input("a", shape=sa)
        b = scg.param("b", shape=sb)
        y = scg.where(cond, a * a, b * a)
        loss = scg.cost("loss", (y * rng.normal(size=full)).sum())
    inputs = {"cond": rng.integers(0, 2, size=(batch, *full)).astype(float), "a": rng.normal(size=(batch, *sa))}
    fd_check(g, loss, [a, b], {"b": rng.normal(size=sb)}, inputs)


def test_comparisons_steps_and_casts_pass_no_gradient():
    rng = np.random.default_rng(0)
    g = scg.Graph("cmp")
    with g:
        x = scg.input("x", shape=(3,))
        k = scg.input("k", shape=(3,), dtype="int64")
        p = scg.param("p", shape=(3,))
        gate = scg.greater(x, 0.0) + scg.equal(x, p) + scg.to_float(k)
        loss = scg.cost("loss", (x * p * gate).sum())
    inputs = {"x": vals(rng, (2, 3), away=0.2), "k": rng.integers(0, 3, size=(2, 3))}
    fd_check(g, loss, [x, p], {"p": rng.normal(size=3) + 5.0}, inputs)


# -- reductions and normalisations ----------------------------------------------------------------
@pytest.mark.parametrize("reduce", ["sum", "mean"])
@SETTINGS
@given(data=st.data(), shape=st.lists(dims, min_size=1, max_size=3).map(tuple), batch=batches,
       seed=seeds, keepdims=st.booleans())
def test_sum_mean_keepdims(reduce, data, shape, batch, seed, keepdims):
    rng = np.random.default_rng(seed)
    axes = tuple(sorted(data.draw(st.sets(st.integers(0, len(shape) - 1), min_size=1))))
    g = scg.Graph("reduce")
    with g:
        x = scg.input("x", shape=shape)
        p = scg.param("p", shape=shape[-1:])
        y = getattr(scg, reduce)(scg.tanh(x * p), axis=axes, keepdims=keepdims)
        loss = scg.cost("loss", (y * rng.normal(size=y.shape)).sum())
    fd_check(g, loss, [x, p], {"p": rng.normal(size=shape[-1:])}, {"x": rng.normal(size=(batch, *shape))})


@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=2).map(tuple), batch=batches, seed=seeds,
       keepdims=st.booleans())
def test_logsumexp_keepdims(shape, batch, seed, keepdims):
    rng = np.random.default_rng(seed)
    g = scg.Graph("lse")
    with g:
        x = scg.input("x", shape=shape)
        p = scg.param("p", shape=shape)
        y = scg.logsumexp(x * p, keepdims=keepdims)
        loss = scg.cost("loss", (y * rng.normal(size=y.shape)).sum())
    fd_check(g, loss, [x, p], {"p": rng.normal(size=shape)}, {"x": rng.normal(size=(batch, *shape))})


@pytest.mark.parametrize("fn", [scg.softmax, scg.log_softmax])
@SETTINGS
@given(shape=st.lists(dims, min_size=1, max_size=2).map(tuple), batch=batches, seed=seeds)
def test_softmax_and_log_softmax(fn, shape, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("softmax")
    with g:
        x = scg.input("x", shape=shape)
        p = scg.param("p", shape=shape[-1:])
        loss = scg.cost("loss", (fn(x + p) * rng.normal(size=shape)).sum())
    fd_check(g, loss, [x, p], {"p": rng.normal(size=shape[-1:])}, {"x": rng.normal(size=(batch, *shape))})


# -- structural ops ------------------------------------------------------------------------------------
@pytest.mark.parametrize("batched", [(True, False), (False, True), (True, True), (False, False)],
                         ids=["Bxp", "pxB", "BxB", "pxp"])
@pytest.mark.parametrize("ranks", [(1, 1), (1, 2), (2, 1), (2, 2)], ids=["vv", "vm", "mv", "mm"])
@settings(max_examples=6, deadline=None)
@given(n=dims, k=dims, m=dims, batch=batches, seed=seeds)
def test_matmul_rank_and_batch_combinations(batched, ranks, n, k, m, batch, seed):
    rng = np.random.default_rng(seed)
    sa = (k,) if ranks[0] == 1 else (n, k)
    sb = (k,) if ranks[1] == 1 else (k, m)
    g = scg.Graph("matmul")
    with g:
        a, pa, ia = operand(rng, "a", sa, batched[0], batch)
        b, pb, ib = operand(rng, "b", sb, batched[1], batch)
        y = a @ b
        loss = (y * rng.normal(size=y.shape)).sum() if y.shape else y * 1.5
    gg, _ = fd_check(g, loss, [a, b], {**pa, **pb}, {**ia, **ib})
    if batched in ((True, False), (False, True)) and ranks == (2, 2):
        assert any(n.op is Op.OUTER_SUM for n in gg.nodes), "an unbatched matrix gradient should use outer_sum"


@SETTINGS
@given(lead=st.lists(dims, max_size=1).map(tuple), n=dims, m=dims, batch=batches, seed=seeds)
def test_outer_sum(lead, n, m, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("outer")
    with g:
        a = scg.input("a", shape=lead + (n,))
        b = scg.input("b", shape=lead + (m,))
        p = scg.param("p", shape=(m,))
        y = apply(Op.OUTER_SUM, a, scg.tanh(b * p))
        loss = (y * rng.normal(size=(n, m))).sum()
    fd_check(g, loss, [a, b, p], {"p": rng.normal(size=m)},
             {"a": rng.normal(size=(batch, *lead, n)), "b": rng.normal(size=(batch, *lead, m))})


@SETTINGS
@given(n=dims, m=dims, batch=batches, seed=seeds)
def test_transpose_reshape(n, m, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("struct")
    with g:
        x = scg.input("x", shape=(n, m))
        p = scg.param("p", shape=(m, n))
        y = scg.tanh(x.T * p).reshape(n * m)
        loss = scg.cost("loss", (y * rng.normal(size=n * m)).sum())
    fd_check(g, loss, [x, p], {"p": rng.normal(size=(m, n))}, {"x": rng.normal(size=(batch, n, m))})


@SETTINGS
@given(data=st.data(), full=shapes, batch=batches, seed=seeds, to_batched=st.booleans())
def test_broadcast_to_and_unbroadcast(data, full, batch, seed, to_batched):
    rng = np.random.default_rng(seed)
    src, _ = broadcast_pair(data, full)
    g = scg.Graph("bcast")
    with g:
        x = scg.input("x", shape=full)
        p = scg.param("p", shape=src)
        up = apply(Op.BROADCAST_TO, scg.tanh(p), shape=full, batched=to_batched)
        down = apply(Op.UNBROADCAST, x * up, shape=src, batched=False)
        loss = (down * rng.normal(size=src)).sum()
    fd_check(g, loss, [x, p], {"p": rng.normal(size=src)}, {"x": rng.normal(size=(batch, *full))})


@SETTINGS
@given(lead=st.lists(dims, max_size=1).map(tuple), k=dims, batch=batches, seed=seeds, x_batched=st.booleans())
def test_take(lead, k, batch, seed, x_batched):
    rng = np.random.default_rng(seed)
    g = scg.Graph("take")
    with g:
        x, px, ix = operand(rng, "x", lead + (k,), x_batched, batch)
        idx = scg.input("idx", shape=lead, dtype="int64")
        loss = (scg.take(scg.sigmoid(x) * 2.0, idx) * rng.normal(size=lead)).sum()
    fd_check(g, loss, [x], px, {**ix, "idx": rng.integers(0, k, size=(batch, *lead))})


# -- densities ----------------------------------------------------------------------------------------
@SETTINGS
@given(shape=shapes, batch=batches, seed=seeds)
def test_bernoulli_logp(shape, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("blogp")
    with g:
        logits = scg.param("logits", shape=shape)
        v = scg.input("v", shape=shape)  # the density is smooth in a real-valued v too
        loss = scg.cost("loss", (scg.Bernoulli(logits=logits).log_prob(v) * rng.normal(size=shape)).sum())
    fd_check(g, loss, [logits, v], {"logits": rng.normal(size=shape)}, {"v": rng.uniform(0, 1, (batch, *shape))})


@SETTINGS
@given(lead=st.lists(dims, max_size=1).map(tuple), k=dims, batch=batches, seed=seeds)
def test_categorical_logp(lead, k, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("clogp")
    with g:
        w = scg.param("w", shape=lead + (k,))
        x = scg.input("x", shape=(k,))
        v = scg.input("v", shape=lead, dtype="int64")
        loss = scg.cost("loss", (scg.Categorical(logits=w * x).log_prob(v) * rng.normal(size=lead)).sum())
    inputs = {"x": rng.normal(size=(batch, k)), "v": rng.integers(0, k, size=(batch, *lead))}
    fd_check(g, loss, [w, x], {"w": rng.normal(size=lead + (k,))}, inputs)


@SETTINGS
@given(shape=shapes, batch=batches, seed=seeds)
def test_normal_logp(shape, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("nlogp")
    with g:
        loc = scg.param("loc", shape=shape)
        log_scale = scg.param("log_scale", shape=shape)
        v = scg.input("v", shape=shape)
        loss = scg.cost("loss", scg.Normal(loc, scg.exp(log_scale)).log_prob(v).sum())
    params = {"loc": rng.normal(size=shape), "log_scale": rng.uniform(-0.5, 0.5, size=shape)}
    fd_check(g, loss, [loc, log_scale, v], params, {"v": rng.normal(size=(batch, *shape))})
