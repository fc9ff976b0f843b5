"""Reverse-mode autodiff on the IR, checked against central finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scg
from scg.backends.numpy_ref import evaluate
from scg.dsl.value import apply
from scg.errors import GraphError
from scg.ir import Op, verify
from scg.passes import grad, vjp_rules

SETTINGS = settings(max_examples=80, deadline=None)
dims = st.integers(1, 4)
shapes = st.lists(dims, min_size=0, max_size=2).map(tuple)
batches = st.integers(1, 3)
seeds = st.integers(0, 2**31 - 1)


# -- the finite-difference oracle ------------------------------------------------------------
def _objective(graph, loss, params, inputs, overrides):
    """The quantity grad differentiates: the sum over rows of ``loss``."""
    return float(np.sum(evaluate(graph, params, inputs, overrides=overrides)[loss.uid]))


def _numeric(graph, loss, w, params, inputs, eps):
    """Central differences of the objective in every element of ``w``'s value."""
    if w.op is Op.PARAM:
        value = params[w.name]
    elif w.op is Op.INPUT:
        value = inputs[w.name]
    else:  # an intermediate node (e.g. a sample): pin its value with an override
        value = evaluate(graph, params, inputs)[w.uid]
    value = np.array(value, dtype=np.float64)
    out = np.zeros_like(value)
    for i in np.ndindex(value.shape):
        f = []
        for sign in (1.0, -1.0):
            v = value.copy()
            v[i] += sign * eps
            p, x, over = dict(params), dict(inputs), {}
            if w.op is Op.PARAM:
                p[w.name] = v
            elif w.op is Op.INPUT:
                x[w.name] = v
            else:
                over[w] = v
            f.append(_objective(graph, loss, p, x, over))
        out[i] = (f[0] - f[1]) / (2 * eps)
    return out


def fd_check(graph, loss, wrt, params, inputs=None, *, eps=1e-6, rtol=1e-5, atol=1e-6):
    """Assert that grad(graph) matches central differences for every node of ``wrt``.

    Returns the gradient graph and nodes; raises AssertionError naming the node on a mismatch.
    """
    inputs = inputs or {}
    loss = loss.node if hasattr(loss, "node") else loss
    wrt = [w.node if hasattr(w, "node") else w for w in wrt]
    n_before = len(graph.nodes)
    gg, grads = grad(graph, loss, wrt)
    assert len(graph.nodes) == n_before, "grad mutated its input graph"
    verify(gg)
    values = evaluate(gg, params, inputs)
    for w, gnode in zip(wrt, grads, strict=True):
        assert (gnode.dtype, gnode.shape, gnode.batched) == ("f64", w.shape, w.batched)
        np.testing.assert_allclose(values[gnode.uid], _numeric(graph, loss, w, params, inputs, eps),
                                   rtol=rtol, atol=atol, err_msg=f"gradient w.r.t. {w.label()}")
    return gg, grads


def _vals(rng, shape, lo=-2.0, hi=2.0, positive=False, away=0.0):
    """Random values in [lo, hi] (or [away, hi] when positive), with |v| >= away otherwise."""
    if positive:
        return rng.uniform(max(lo, away, 0.3), hi, size=shape)
    v = rng.uniform(lo, hi, size=shape)
    return np.where(np.abs(v) < away, np.sign(v + 1e-12) * away + v, v)


# -- elementwise ops -----------------------------------------------------------------------------
UNARY = {
    "neg": (lambda x: -x, {}), "exp": (scg.exp, {}), "log": (scg.log, {"positive": True}),
    "sigmoid": (scg.sigmoid, {}), "tanh": (scg.tanh, {}), "relu": (scg.relu, {"away": 0.3}),
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
    fd_check(g, loss, [p, x], params, {"x": _vals(rng, (batch, *shape), **domain)})


def _broadcast_pair(data, full):
    """Two per-row shapes that broadcast to ``full`` (dropped leading axes, some 1s)."""
    def sub():
        keep = data.draw(st.integers(0, len(full)))
        tail = full[len(full) - keep:]
        return tuple(d if data.draw(st.booleans()) else 1 for d in tail)
    return sub(), sub()


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
@SETTINGS
@given(data=st.data(), full=shapes, batch=batches, seed=seeds, swap=st.booleans())
def test_binary_broadcasting(op, data, full, batch, seed, swap):
    rng = np.random.default_rng(seed)
    sx, sp = _broadcast_pair(data, full)
    g = scg.Graph("binary")
    with g:
        x = scg.input("x", shape=sx)
        p = scg.param("p", shape=sp)
        a, b = (p, x) if swap else (x, p)
        y = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
        loss = scg.cost("loss", (y * rng.normal(size=y.shape)).sum())
    positive = op == "div"
    params = {"p": _vals(rng, sp, positive=positive)}
    fd_check(g, loss, [p, x], params, {"x": _vals(rng, (batch, *sx), positive=positive)})


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
    sa, sb = _broadcast_pair(data, full)
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
    inputs = {"x": _vals(rng, (2, 3), away=0.2), "k": rng.integers(0, 3, size=(2, 3))}
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
def _operand(rng, name, shape, batched, batch):
    if batched:
        return scg.input(name, shape=shape), {}, {name: rng.normal(size=(batch, *shape))}
    return scg.param(name, shape=shape), {name: rng.normal(size=shape)}, {}


@pytest.mark.parametrize("batched", [(True, False), (False, True), (True, True), (False, False)],
                         ids=["Bxp", "pxB", "BxB", "pxp"])
@pytest.mark.parametrize("ranks", [(1, 1), (1, 2), (2, 1), (2, 2)], ids=["vv", "vm", "mv", "mm"])
@settings(max_examples=40, deadline=None)
@given(n=dims, k=dims, m=dims, batch=batches, seed=seeds)
def test_matmul_rank_and_batch_combinations(batched, ranks, n, k, m, batch, seed):
    rng = np.random.default_rng(seed)
    sa = (k,) if ranks[0] == 1 else (n, k)
    sb = (k,) if ranks[1] == 1 else (k, m)
    g = scg.Graph("matmul")
    with g:
        a, pa, ia = _operand(rng, "a", sa, batched[0], batch)
        b, pb, ib = _operand(rng, "b", sb, batched[1], batch)
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
    src, _ = _broadcast_pair(data, full)
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
        x, px, ix = _operand(rng, "x", lead + (k,), x_batched, batch)
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


# -- composition, zero gradients and samples -----------------------------------------------------------
@SETTINGS
@given(n=dims, h=dims, k=st.integers(2, 4), batch=batches, seed=seeds)
def test_chain_through_several_ops(n, h, k, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("mlp")
    with g:
        x = scg.input("x", shape=(n,))
        y = scg.input("y", dtype="int64")
        W1 = scg.param("W1", shape=(n, h))
        b1 = scg.param("b1", shape=(h,))
        W2 = scg.param("W2", shape=(h, k))
        hidden = scg.softplus(x @ W1 + b1)
        logits = scg.tanh(hidden) @ W2 - scg.mean(hidden)
        nll = scg.logsumexp(logits) - scg.take(logits, y)
        reg = (W1 * W1).sum() * 0.01 + scg.sqrt(scg.exp(b1)).sum()
        loss = scg.cost("loss", nll + scg.sigmoid(hidden).sum() / 3.0 + reg)
    params = {"W1": rng.normal(size=(n, h)), "b1": rng.normal(size=h), "W2": rng.normal(size=(h, k))}
    inputs = {"x": rng.normal(size=(batch, n)), "y": rng.integers(0, k, size=batch)}
    fd_check(g, loss, [W1, b1, W2, x, hidden], params, inputs)


def test_stop_gradient_gives_zero():
    rng = np.random.default_rng(1)
    g = scg.Graph("sg")
    with g:
        x = scg.input("x", shape=(3,))
        p = scg.param("p", shape=(3,))
        q = scg.param("q", shape=(3,))
        loss = scg.cost("loss", (scg.stop_gradient(p * x) * x + q * scg.stop_gradient(scg.exp(q))).sum())
    params = {"p": rng.normal(size=3), "q": rng.normal(size=3)}
    x_val = rng.normal(size=(2, 3))
    gg, (dp, dq) = grad(g, loss.node, [p.node, q.node])
    values = evaluate(gg, params, {"x": x_val})
    np.testing.assert_array_equal(values[dp.uid], np.zeros(3))
    np.testing.assert_allclose(values[dq.uid], 2 * np.exp(params["q"]))  # q itself still gets gradient


def test_unused_wrt_gets_zeros_of_its_type():
    g = scg.Graph("unused")
    with g:
        x = scg.input("x", shape=(2,))
        z = scg.input("z", shape=(3, 2))
        p = scg.param("p", shape=(4, 1))
        k = scg.input("k", dtype="int64")
        loss = scg.cost("loss", (x * 2.0).sum())
    gg, (dz, dp, dk) = grad(g, loss.node, [z.node, p.node, k.node])
    values = evaluate(gg, {"p": np.ones((4, 1))}, {"x": np.ones((5, 2)), "z": np.ones((5, 3, 2)),
                                                   "k": np.zeros(5, dtype=np.int64)})
    assert [(t.type.shape, t.batched, t.dtype) for t in (dz, dp, dk)] == [
        ((3, 2), True, "f64"), ((4, 1), False, "f64"), ((), True, "f64")]
    for node, shape in ((dz, (5, 3, 2)), (dp, (4, 1)), (dk, (5,))):
        np.testing.assert_array_equal(values[node.uid], np.zeros(shape))


def test_gradient_wrt_sample_values_and_none_through_samples():
    rng = np.random.default_rng(2)
    g = scg.Graph("samples")
    with g:
        theta = scg.param("theta", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=theta))
        a = scg.sample("a", scg.Categorical(logits=theta))
        w = scg.param("w", shape=(3,))
        loss = scg.cost("loss", scg.tanh(h * w + scg.to_float(a)).sum())
    params = {"theta": rng.normal(size=3), "w": rng.normal(size=3)}
    fd_check(g, loss, [h, w], params)  # h's gradient is per row, w's summed over rows
    gg, (dh, da, dtheta) = grad(g, loss.node, [h.node, a.node, theta.node])
    assert dh.batched and dh.shape == (3,) and da.shape == () and da.dtype == "f64"
    values = evaluate(gg, params, {})
    np.testing.assert_array_equal(values[dtheta.uid], np.zeros(3))  # sample values are not differentiable


def test_loss_may_be_a_wrt_node_and_an_unbatched_scalar():
    g = scg.Graph("self")
    with g:
        p = scg.param("p", shape=(2,))
        loss = scg.square(p).sum()
    gg, (dl, dp) = grad(g, loss.node, [loss.node, p.node])
    values = evaluate(gg, {"p": np.array([1.0, -3.0])}, {})
    assert values[dl.uid] == 1.0
    np.testing.assert_allclose(values[dp.uid], [2.0, -6.0])


# -- the traversal itself ----------------------------------------------------------------------------
def test_broken_rule_is_caught_by_the_fd_check(monkeypatch):
    # d sigmoid(x) = s (1 - s), not s
    monkeypatch.setitem(vjp_rules, Op.SIGMOID, lambda b, n, g: (b.mul(g, n),))
    g = scg.Graph("broken")
    with g:
        x = scg.input("x", shape=(2,))
        p = scg.param("p", shape=(2,))
        loss = scg.cost("loss", scg.sigmoid(x * p).sum())
    with pytest.raises(AssertionError, match="gradient w.r.t. 'p'"):
        fd_check(g, loss, [p], {"p": np.array([0.5, -1.0])}, {"x": np.array([[1.0, 2.0]])})


def test_missing_rule_names_op_and_node(monkeypatch):
    monkeypatch.delitem(vjp_rules, Op.TANH)
    g = scg.Graph("missing")
    with g:
        p = scg.param("p", shape=(2,))
        loss = scg.tanh(p).sum()
    with pytest.raises(GraphError, match=r"no vjp rule for op 'tanh' \(node <tanh #\d+>\)"):
        grad(g, loss.node, [p.node])


def test_rejects_non_scalar_loss_and_foreign_nodes():
    g, other = scg.Graph("a"), scg.Graph("b")
    with g:
        p = scg.param("p", shape=(2,))
        y = scg.exp(p)
    with other:
        q = scg.param("q", shape=())
    with pytest.raises(GraphError, match="must be a float64 per-row scalar"):
        grad(g, y.node, [p.node])
    with pytest.raises(GraphError, match="not a node of graph 'a'"):
        grad(g, y.sum().node, [q.node])


def test_only_the_path_is_walked_and_nodes_get_the_note():
    g = scg.Graph("path")
    with g:
        x = scg.input("x", shape=(4,))
        p = scg.param("p", shape=(4,))
        side = scg.exp(scg.tanh(x) * 3.0)  # upstream of the loss but independent of p
        loss = scg.cost("loss", (side * p).sum())
        scg.cost("other", scg.softplus(x * p).sum())  # downstream of p but not of the loss
    gg, (dp,) = grad(g, loss.node, [p.node], note="grad for p")
    added = gg.nodes[len(g.nodes):]
    assert {n.note for n in added} == {"grad for p"}
    assert {n.op for n in added} <= {Op.CONST, Op.BROADCAST_TO, Op.RESHAPE, Op.MUL, Op.UNBROADCAST}
    assert gg.outputs == g.outputs and dp in added


def test_deep_chain_does_not_recurse():
    g = scg.Graph("deep")
    with g:
        p = scg.param("p", shape=())
        y = p
        for _ in range(3000):
            y = y * 1.0001 + 0.0
        loss = y.sum()
    gg, (dp,) = grad(g, loss.node, [p.node])
    assert np.isclose(evaluate(gg, {"p": np.array(1.0)}, {})[dp.uid], 1.0001 ** 3000)
