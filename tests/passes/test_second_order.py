"""Second-order autodiff of IR: the gradient graph differentiated again, against finite differences.

For each case, ``hvp`` (reverse over reverse) must match the central difference of
the IR gradient along a random direction ``v``: ``(g(x + eps v) - g(x - eps v)) / 2 eps = H v``.
That exercises the VJP rule of every op that appears *in a derived gradient*
(outer_sum from matmul, unbroadcast, broadcast_to, sigmoid/softmax links, ...).
The estimator composites (HNCA, leave-one-out) also get first-order FD checks
here, since first-order estimators never reach their rules (they stop-gradient them).
"""

from __future__ import annotations

import numpy as np
import pytest
from fdcheck import fd_check

import scg
from scg.backends.numpy_ref import evaluate
from scg.dsl.value import apply
from scg.errors import GraphError
from scg.ir import Op
from scg.ir.types import F64
from scg.passes import grad, vjp_rules
from scg.passes.higher import hessian, hvp

EPS = 1e-5


def _vector_leaf(graph, w, i):
    kind = Op.INPUT if w.batched else Op.PARAM
    return graph.add(kind, (), {"shape": w.shape, "dtype": F64, "batched": w.batched}, name=f"_v{i}")


def _perturbed(wrt, params, inputs, direction, eps):
    p, x = dict(params), dict(inputs)
    for w, v in zip(wrt, direction, strict=True):
        store = x if w.op is Op.INPUT else p
        store[w.name] = np.asarray(store[w.name], dtype=np.float64) + eps * v
    return p, x


def hvp_check(graph, loss, wrt, params, inputs=None, *, n_samples=1, seed=0, rtol=1e-5, atol=1e-6):
    """Assert H v (second-order IR autodiff) = directional FD of the IR gradient, and g.v = FD of the loss.

    Not for losses with stop_gradient: their values hide their derivatives (see the magic test).
    """
    inputs = inputs or {}
    loss = getattr(loss, "node", loss)
    wrt = [getattr(w, "node", w) for w in wrt]
    rng = np.random.default_rng(seed)
    gg, grads = grad(graph, loss, wrt)
    vec_graph = gg.derive()
    vec_graph.outputs = dict(gg.outputs)
    leaves = [_vector_leaf(vec_graph, w, i) for i, w in enumerate(wrt)]
    hg, products = hvp(vec_graph, grads, wrt, leaves)
    scg.ir.verify(hg)
    rows = next((np.shape(v)[0] for v in inputs.values() if np.ndim(v)), 1)
    direction = [rng.normal(size=((rows,) if w.batched else ()) + w.shape) for w in wrt]
    p_vec, x_vec = dict(params), dict(inputs)
    for leaf, v in zip(leaves, direction, strict=True):
        (x_vec if leaf.op is Op.INPUT else p_vec)[leaf.name] = v
    got = evaluate(hg, p_vec, x_vec, n_samples=n_samples)
    run = {}
    for sign in (1.0, -1.0):
        p, x = _perturbed(wrt, params, inputs, direction, sign * EPS)
        run[sign] = evaluate(gg, p, x, n_samples=n_samples)
    # first order: <g, v> against the loss's directional difference
    dot = sum(float(np.sum(got[g.uid] * _tiled(v, w, n_samples))) for g, v, w in zip(grads, direction, wrt, strict=True))
    fd_loss = (np.sum(run[1.0][loss.uid]) - np.sum(run[-1.0][loss.uid])) / (2 * EPS)
    np.testing.assert_allclose(dot, fd_loss, rtol=rtol, atol=atol, err_msg="first order")
    for w, g, h in zip(wrt, grads, products, strict=True):
        fd = (run[1.0][g.uid] - run[-1.0][g.uid]) / (2 * EPS)
        np.testing.assert_allclose(got[h.uid], fd, rtol=rtol, atol=atol, err_msg=f"H v w.r.t. {w.label()}")
    return hg


def _tiled(v, w, k):
    return np.tile(v, (k,) + (1,) * len(w.shape)) if w.batched else v


# -- every op of the forward vocabulary, differentiated twice ---------------------------------------------------
UNARY = {"neg": lambda x: -x, "exp": scg.exp, "log": lambda x: scg.log(x * x + 0.5), "sigmoid": scg.sigmoid,
         "tanh": scg.tanh, "relu": lambda x: scg.relu(x) * x,
         "leaky_relu": lambda x: scg.leaky_relu(x, 0.2) * x, "softplus": scg.softplus,
         "log_sigmoid": scg.log_sigmoid, "square": scg.square, "sqrt": lambda x: scg.sqrt(x * x + 0.5)}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_second_order(name):
    rng = np.random.default_rng(1)
    g = scg.Graph("unary2")
    with g:
        x = scg.input("x", shape=(3,))
        p = scg.param("p", shape=(3,))
        loss = scg.cost("loss", (UNARY[name](x * p + 0.1) * rng.normal(size=3)).sum())
    hvp_check(g, loss, [p, x], {"p": rng.uniform(0.5, 1.5, 3)}, {"x": rng.normal(size=(2, 3))})


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_broadcasting_second_order(op):
    rng = np.random.default_rng(2)
    g = scg.Graph("binary2")
    with g:
        x = scg.input("x", shape=(2, 3))
        p = scg.param("p", shape=(3,))
        a, b = scg.tanh(x) + 2.0, scg.sigmoid(p) + 0.5
        y = {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b}[op]
        loss = scg.cost("loss", (y * y * rng.normal(size=(2, 3))).sum())
    hvp_check(g, loss, [p, x], {"p": rng.normal(size=3)}, {"x": rng.normal(size=(2, 2, 3))})


def test_where_reductions_and_normalisations_second_order():
    rng = np.random.default_rng(3)
    g = scg.Graph("reduce2")
    with g:
        x = scg.input("x", shape=(2, 3))
        cond = scg.input("cond", shape=(2, 3))
        p = scg.param("p", shape=(3,))
        y = scg.where(cond, scg.tanh(x * p), x * p * p)
        parts = [scg.sum(y * y, axis=(0,)), scg.mean(scg.exp(y), axis=(1,), keepdims=True).sum(),
                 scg.logsumexp(y * p).sum(), (scg.softmax(y) * rng.normal(size=(2, 3))).sum(),
                 (scg.log_softmax(y) * rng.normal(size=(2, 3))).sum()]
        loss = scg.cost("loss", parts[0].sum() + parts[1] + parts[2] + parts[3] + parts[4])
    inputs = {"x": rng.normal(size=(2, 2, 3)), "cond": rng.integers(0, 2, size=(2, 2, 3)).astype(float)}
    hvp_check(g, loss, [p, x], {"p": rng.normal(size=3)}, inputs)


@pytest.mark.parametrize("batched", [(True, False), (False, True), (True, True), (False, False)],
                         ids=["Bxp", "pxB", "BxB", "pxp"])
@pytest.mark.parametrize("ranks", [(1, 1), (1, 2), (2, 1), (2, 2)], ids=["vv", "vm", "mv", "mm"])
def test_matmul_second_order_through_outer_sum(batched, ranks):
    rng = np.random.default_rng(4)
    n, k, m = 2, 3, 4
    sa = (k,) if ranks[0] == 1 else (n, k)
    sb = (k,) if ranks[1] == 1 else (k, m)

    def operand(name, shape, is_batched):
        if is_batched:
            return scg.input(name, shape=shape), {}, {name: rng.normal(size=(2, *shape))}
        return scg.param(name, shape=shape), {name: rng.normal(size=shape)}, {}

    g = scg.Graph("matmul2")
    with g:
        a, pa, ia = operand("a", sa, batched[0])
        b, pb, ib = operand("b", sb, batched[1])
        y = scg.tanh(a) @ scg.sigmoid(b)
        loss = scg.cost("loss", (y * y * rng.normal(size=y.shape)).sum() if y.shape else y * y)
    gg, _ = grad(g, loss.node, [a.node, b.node])
    hvp_check(g, loss, [a, b], {**pa, **pb}, {**ia, **ib})
    if batched in ((True, False), (False, True)) and ranks == (2, 2):
        assert any(n.op is Op.OUTER_SUM for n in gg.nodes)


@pytest.mark.parametrize("lead", [(), (2,)])
def test_outer_sum_transpose_reshape_broadcast_second_order(lead):
    rng = np.random.default_rng(5)
    g = scg.Graph("struct2")
    with g:
        a = scg.input("a", shape=lead + (3,))
        b = scg.input("b", shape=lead + (2,))
        p = scg.param("p", shape=(2,))
        y = apply(Op.OUTER_SUM, scg.tanh(a), scg.tanh(b * p))              # (3, 2), unbatched
        up = apply(Op.BROADCAST_TO, scg.sigmoid(p), shape=(3, 2), batched=True)
        down = apply(Op.UNBROADCAST, up * up * y, shape=(2,), batched=False)
        z = (y.T * y.T).reshape(6)
        loss = (down * down).sum() + (z * rng.normal(size=6)).sum()
    hvp_check(g, loss, [a, b, p], {"p": rng.normal(size=2)},
              {"a": rng.normal(size=(2, *lead, 3)), "b": rng.normal(size=(2, *lead, 2))})


def test_take_and_densities_second_order():
    rng = np.random.default_rng(6)
    g = scg.Graph("dens2")
    with g:
        w = scg.param("w", shape=(3,))
        loc = scg.param("loc", shape=(2,))
        idx = scg.input("idx", dtype="int64")
        v = scg.input("v", shape=(3,))
        z = scg.input("z", shape=(2,))
        lp = (scg.Bernoulli(logits=w * w).log_prob(v).sum() + scg.Categorical(logits=w * v).log_prob(idx)
              + scg.Normal(loc * loc, scg.exp(loc)).log_prob(z).sum() + scg.take(scg.softmax(w * v), idx))
        loss = scg.cost("loss", lp * lp)
    inputs = {"idx": np.array([0, 2]), "v": rng.uniform(0, 1, (2, 3)), "z": rng.normal(size=(2, 2))}
    hvp_check(g, loss, [w, loc, v, z], {"w": rng.normal(size=3), "loc": rng.normal(size=2) * 0.5}, inputs)


def test_stop_gradient_is_zero_at_every_order_magic():
    """magic(x) = exp(x - sg(x)): value 1, d magic = dx, d2 magic = dx dx^T + d2x (Foerster et al. 2018)."""
    rng = np.random.default_rng(7)
    g = scg.Graph("magic")
    with g:
        p = scg.param("p", shape=(2,))
        x = scg.input("x", shape=(2,))
        s = (scg.log_sigmoid(p * x)).sum()
        loss = scg.cost("loss", scg.exp(s - scg.stop_gradient(s)) * (p * p).sum())
    params, inputs = {"p": rng.normal(size=2)}, {"x": rng.normal(size=(3, 2))}
    # no FD oracle here: magic's value is 1 whatever p, so differences of values miss its derivatives;
    # the oracle is the closed form
    gg, (gp,) = grad(g, loss.node, [p.node])
    hg, blocks = hessian(gg, [gp], [p.node])
    vals = evaluate(hg, params, inputs)
    # closed form per row: H = dS dS^T q + d2S q + dS (2p)^T + 2p dS^T + 2 I, q = |p|^2
    xs, pv = inputs["x"], params["p"]
    want = np.zeros((2, 2))
    for row in xs:
        ds = row * (1 - 1 / (1 + np.exp(-pv * row)))
        d2s = np.diag(-(row**2) * (1 / (1 + np.exp(-pv * row))) * (1 - 1 / (1 + np.exp(-pv * row))))
        q = pv @ pv
        want += np.outer(ds, ds) * q + d2s * q + np.outer(ds, 2 * pv) + np.outer(2 * pv, ds) + 2 * np.eye(2)
    np.testing.assert_allclose(vals[blocks[(0, 0)].uid], want, rtol=1e-10)


# -- estimator composites: first order (FD) and second order ---------------------------------------------------
def _hnca_graph(op, child, rng):
    g = scg.Graph(f"{op.pretty}_{child}")
    n, m = (3, 2) if child == "bernoulli" else (3, 4)
    k_u = 3
    with g:
        l = scg.input("l", shape=(m,))
        w = scg.param("w", shape=(n if op is Op.HNCA_AFFINE_DELTA else k_u, m))
        if op is Op.HNCA_AFFINE_DELTA:
            u = scg.input("u", shape=(n,))  # the formula is smooth in a real-valued u
        else:
            u = scg.input("u", dtype="int64")
        c = scg.input("c", shape=(m,)) if child == "bernoulli" else scg.input("c", dtype="int64")
        out = apply(op, u, w * 1.0, scg.tanh(l), c, child=child)
        loss = scg.cost("loss", (out * out * rng.normal(size=out.shape) + out).sum())
    inputs = {"l": rng.normal(size=(2, m)),
              "u": rng.uniform(0, 1, (2, n)) if op is Op.HNCA_AFFINE_DELTA else rng.integers(0, k_u, 2),
              "c": rng.uniform(0, 1, (2, m)) if child == "bernoulli" else rng.integers(0, m, 2)}
    wrt = [x for x in (u, w, l, c) if x.node.dtype == F64]
    return g, loss, wrt, {"w": rng.normal(size=w.shape)}, inputs


@pytest.mark.parametrize("child", ["bernoulli", "categorical"])
@pytest.mark.parametrize("op", [Op.HNCA_AFFINE_DELTA, Op.HNCA_ONEHOT_LOGLIK], ids=lambda o: o.pretty)
def test_hnca_composites_first_and_second_order(op, child):
    rng = np.random.default_rng(8)
    g, loss, wrt, params, inputs = _hnca_graph(op, child, rng)
    fd_check(g, loss, wrt, params, inputs)
    hvp_check(g, loss, wrt, params, inputs)


def test_loo_baseline_first_and_second_order():
    rng = np.random.default_rng(9)
    g = scg.Graph("loo2")
    with g:
        p = scg.param("p", shape=(3,))
        x = scg.input("x", shape=(3,))
    eps = g.add(Op.NOISE_NORMAL, (), {"shape": (3,), "dtype": F64, "batched": True, "site": 0, "sample": "e"})
    with g:
        from scg.dsl.value import Value
        varied = scg.tanh(x * p + Value(eps, g))          # differs between the draws of a row
        base = apply(Op.LOO_BASELINE, varied * p)
        loss = scg.cost("loss", (base * varied * rng.normal(size=3)).sum())
    params, inputs = {"p": rng.normal(size=3)}, {"x": rng.normal(size=(2, 3))}
    hvp_check(g, loss, [p], params, inputs, n_samples=3)


# -- the checks can fail ----------------------------------------------------------------------------------------
def test_a_wrong_second_order_is_caught(monkeypatch):
    """sigmoid's VJP written with sigmoid(x)(1 - sigmoid(x)) recomputed from a stop-gradient of the output:
    right at first order, wrong at second."""
    def first_order_only(b, n, g):
        s = b.add(Op.STOP_GRADIENT, (n,))
        return (b.mul(g, b.mul(s, b.sub(1.0, s))),)

    monkeypatch.setitem(vjp_rules, Op.SIGMOID, first_order_only)
    rng = np.random.default_rng(10)
    g = scg.Graph("broken2")
    with g:
        p = scg.param("p", shape=(2,))
        loss = scg.cost("loss", scg.sigmoid(p * 1.3).sum())
    with pytest.raises(AssertionError, match="H v"):
        hvp_check(g, loss, [p], {"p": rng.normal(size=2)}, {})


def test_a_wrong_composite_rule_is_caught(monkeypatch):
    from scg.passes import vjp_credit
    original = vjp_credit._hnca_affine_delta

    def swapped(b, n, g):
        du, dw, dl, dc = original(b, n, g)
        return (du, dw, b.neg(dl), dc)

    monkeypatch.setitem(vjp_rules, Op.HNCA_AFFINE_DELTA, swapped)
    rng = np.random.default_rng(11)
    g, loss, wrt, params, inputs = _hnca_graph(Op.HNCA_AFFINE_DELTA, "bernoulli", rng)
    with pytest.raises(AssertionError):
        fd_check(g, loss, wrt, params, inputs)


def test_a_composite_without_a_rule_is_an_error_naming_it(monkeypatch):
    monkeypatch.delitem(vjp_rules, Op.HNCA_ONEHOT_LOGLIK)
    g, loss, wrt, _, _ = _hnca_graph(Op.HNCA_ONEHOT_LOGLIK, "categorical", np.random.default_rng(0))
    with pytest.raises(GraphError, match="no vjp rule for op 'hnca_onehot_loglik'"):
        grad(g, loss.node, [w.node for w in wrt])


def test_every_credit_op_has_a_rule():
    from scg.ir.ops import Kind
    missing = [op.pretty for op in Op if op.kind is Kind.CREDIT and op not in vjp_rules]
    assert not missing, f"estimator composites without a VJP rule: {missing}"
