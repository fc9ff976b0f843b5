"""Reverse-mode autodiff on the IR: compositions, zero gradients, samples and the traversal."""

from __future__ import annotations

import numpy as np
import pytest
from fdcheck import SETTINGS, batches, dims, fd_check, seeds, shapes
from hypothesis import given
from hypothesis import strategies as st

import scg
from scg.backends.numpy_ref import evaluate
from scg.dsl.value import Value
from scg.errors import GraphError
from scg.ir import Op
from scg.passes import grad, vjp_rules


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


@SETTINGS
@given(shape=shapes, batch=batches, seed=seeds)
def test_pathwise_form_through_normal_noise(shape, batch, seed):
    rng = np.random.default_rng(seed)
    g = scg.Graph("pathwise")
    with g:
        x = scg.input("x", shape=shape)
        loc = scg.param("loc", shape=shape)
        log_scale = scg.param("log_scale", shape=shape)
        eps = g.add(Op.NOISE_NORMAL, (), {"shape": shape, "dtype": "f64", "batched": True, "site": 0})
        z = loc + scg.exp(log_scale) * Value(eps, g)
        loss = scg.cost("loss", scg.softplus(z * x).sum())
    params = {"loc": rng.normal(size=shape), "log_scale": rng.uniform(-0.5, 0.5, size=shape)}
    fd_check(g, loss, [loc, log_scale, z], params, {"x": rng.normal(size=(batch, *shape))})


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
    with pytest.raises(GraphError, match=r"no vjp rule for op 'tanh' \(node `tanh\(p\)`\)"):
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
