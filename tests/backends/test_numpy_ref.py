"""Tests of the NumPy reference interpreter against independent, straightforward NumPy/SciPy code."""

import itertools

import numpy as np
import pytest
from scipy import special, stats

import scg
from scg.backends import rng
from scg.backends.numpy_ref import evaluate, numpy_impls
from scg.dsl.value import apply
from scg.errors import InputError
from scg.ir.ops import Op

B = 4
GEN = np.random.default_rng(0)
X3 = GEN.normal(size=(B, 3)) * 2
X23 = GEN.normal(size=(B, 2, 3))
S = GEN.normal(size=(B,))
W3 = GEN.normal(size=(3,))


def run(g, inputs, params=None, **kw):
    """Evaluate and return a lookup from DSL values to arrays."""
    vals = evaluate(g, params or {}, inputs, **kw)
    return lambda v: vals[v.node.uid]


def close(a, b, **kw):
    np.testing.assert_allclose(a, b, rtol=kw.get("rtol", 1e-12), atol=kw.get("atol", 1e-12))


# --- elementwise -----------------------------------------------------------------------
UNARY = {
    "exp": (scg.exp, np.exp), "log": (scg.log, lambda x: np.log(np.abs(x))),
    "sigmoid": (scg.sigmoid, special.expit), "tanh": (scg.tanh, np.tanh),
    "relu": (scg.relu, lambda x: np.where(x > 0, x, 0.0)),
    "leaky_relu": (scg.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x)), "softplus": (scg.softplus, lambda x: np.log1p(np.exp(x))),
    "log_sigmoid": (scg.log_sigmoid, special.log_expit), "square": (scg.square, lambda x: x * x),
    "sqrt": (scg.sqrt, lambda x: np.sqrt(np.abs(x))), "neg": (lambda v: -v, np.negative),
    "step": (lambda v: apply(Op.STEP, v), lambda x: (x > 0).astype(float)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops(name):
    fn, ref = UNARY[name]
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(3,))
        arg = scg.sqrt(x * x) if name in ("log", "sqrt") else x  # |x| keeps log/sqrt real
        y = fn(arg)
    close(run(g, {"x": X3})(y), ref(X3))


def test_int_arithmetic_stays_int_and_division_is_float():
    g = scg.Graph("t")
    with g:
        i = scg.input("i", shape=(3,), dtype="int64")
        a, s, m, d, n = i + 2, i - i, i * 3, i / 2, -i
        f = scg.to_float(i)
    iv = np.arange(B * 3).reshape(B, 3)
    v = run(g, {"i": iv})
    for val, ref in ((a, iv + 2), (s, 0 * iv), (m, 3 * iv), (n, -iv)):
        assert v(val).dtype == np.int64 and np.array_equal(v(val), ref)
    assert v(d).dtype == np.float64 and np.array_equal(v(d), iv / 2)
    assert v(f).dtype == np.float64 and np.array_equal(v(f), iv.astype(float))


def test_broadcasting_batched_scalar_against_unbatched_vector_and_ranks():
    g = scg.Graph("t")
    with g:
        s, x, x23 = scg.input("s"), scg.input("x", shape=(3,)), scg.input("x23", shape=(2, 3))
        w = scg.param("w", shape=(3,))
        sw, sx, xx, sc = s * w, x - s, x23 + x, 2.0 / (s * s + 1.0)
        eq, gt = scg.equal(x, w), scg.greater(x, 0.0)
        wh = scg.where(gt, x, s)
    xs = X3.copy()
    xs[0] = W3
    v = run(g, {"s": S, "x": xs, "x23": X23}, {"w": W3})
    close(v(sw), S[:, None] * W3)
    close(v(sx), xs - S[:, None])
    close(v(xx), X23 + xs[:, None, :])
    close(v(sc), 2.0 / (S * S + 1))
    assert np.array_equal(v(eq), (xs == W3).astype(float)) and v(eq)[0].sum() == 3
    assert np.array_equal(v(gt), (xs > 0).astype(float))
    close(v(wh), np.where(xs > 0, xs, S[:, None]))


# --- reductions ---------------------------------------------------------------------------
@pytest.mark.parametrize("axis,keepdims", [(None, False), (0, False), (1, True), ((0, 1), True), (-1, False)])
def test_sum_mean(axis, keepdims):
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(2, 3))
        s, m = x.sum(axis, keepdims), x.mean(axis, keepdims)
    np_axis = tuple(a % 2 + 1 for a in ((0, 1) if axis is None else np.atleast_1d(axis)))
    v = run(g, {"x": X23})
    close(v(s), X23.sum(axis=np_axis, keepdims=keepdims))
    close(v(m), X23.mean(axis=np_axis, keepdims=keepdims))


def test_unbatched_reduction_and_logsumexp_keepdims():
    g = scg.Graph("t")
    with g:
        w = scg.param("w", shape=(2, 3))
        x = scg.input("x", shape=(2, 3))
        ws, lk, lse = w.sum(1), scg.logsumexp(x, keepdims=True), scg.logsumexp(x)
    wv = GEN.normal(size=(2, 3))
    v = run(g, {"x": X23}, {"w": wv})
    close(v(ws), wv.sum(1))
    close(v(lk), special.logsumexp(X23, axis=-1, keepdims=True))
    close(v(lse), special.logsumexp(X23, axis=-1))


def test_logsumexp_softmax_stable_at_extremes():
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(3,))
        lse, lsm, sm = scg.logsumexp(x), scg.log_softmax(x), scg.softmax(x)
    xv = np.array([[1e4, 1e4, 0.0], [-1e4, -1e4 - 1, -1e4], [-np.inf, -np.inf, -np.inf], [-np.inf, 0.0, 1.0]])
    v = run(g, {"x": xv})
    close(v(lse)[:2], special.logsumexp(xv[:2], axis=-1))
    assert v(lse)[2] == -np.inf and np.isfinite(v(lse)[3])
    close(v(lsm)[[0, 1, 3]], special.log_softmax(xv[[0, 1, 3]], axis=-1))
    close(v(sm)[[0, 1, 3]], special.softmax(xv[[0, 1, 3]], axis=-1))


def test_softmax_log_softmax_moderate():
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(2, 3))
        sm, lsm = scg.softmax(x), scg.log_softmax(x)
    v = run(g, {"x": X23})
    close(v(sm), special.softmax(X23, axis=-1))
    close(v(lsm), special.log_softmax(X23, axis=-1))


# --- structural ------------------------------------------------------------------------------
@pytest.mark.parametrize("ra,rb,ba,bb", list(itertools.product((1, 2), (1, 2), (True, False), (True, False))))
def test_matmul_rank_and_batch_combinations(ra, rb, ba, bb):
    sa, sb = (2, 3)[2 - ra:], (3, 4)[:rb]
    av = GEN.normal(size=((B,) if ba else ()) + sa)
    bv = GEN.normal(size=((B,) if bb else ()) + sb)
    g = scg.Graph("t")
    with g:
        a = scg.input("a", shape=sa) if ba else scg.param("a", shape=sa)
        b = scg.input("b", shape=sb) if bb else scg.param("b", shape=sb)
        y = a @ b
    ins = {k: val for k, val, bat in (("a", av, ba), ("b", bv, bb)) if bat}
    pars = {k: val for k, val, bat in (("a", av, ba), ("b", bv, bb)) if not bat}
    got = run(g, ins, pars)(y)
    if not (ba or bb):
        close(got, np.matmul(av, bv))
    else:
        rows = [np.dot(av[r] if ba else av, bv[r] if bb else bv) for r in range(B)]
        close(got, np.stack(rows))


def test_transpose_and_reshape():
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(2, 3))
        v3 = scg.input("v", shape=(3,))
        t, r, tv = x.T, x.reshape(3, 2), v3.T
    v = run(g, {"x": X23, "v": X3})
    assert np.array_equal(v(t), X23.transpose(0, 2, 1))
    assert np.array_equal(v(r), X23.reshape(B, 3, 2))
    assert np.array_equal(v(tv), X3)


@pytest.mark.parametrize("ba,bb", [(True, True), (True, False), (False, True), (False, False)])
def test_outer_sum_matches_einsum(ba, bb):
    av = GEN.normal(size=((B,) if ba else ()) + (2, 3))
    bv = GEN.normal(size=((B,) if bb else ()) + (2, 4))
    g = scg.Graph("t")
    with g:
        a = scg.input("a", shape=(2, 3)) if ba else scg.param("a", shape=(2, 3))
        b = scg.input("b", shape=(2, 4)) if bb else scg.param("b", shape=(2, 4))
        y = apply(Op.OUTER_SUM, a, b)
    ins = {k: val for k, val, bat in (("a", av, ba), ("b", bv, bb)) if bat}
    pars = {k: val for k, val, bat in (("a", av, ba), ("b", bv, bb)) if not bat}
    A = av if ba else np.broadcast_to(av, (B, 2, 3)) if bb else av[None]
    Bm = bv if bb else np.broadcast_to(bv, (B, 2, 4)) if ba else bv[None]
    close(run(g, ins, pars)(y), np.einsum("zli,zlj->ij", A, Bm))


def test_one_hot_and_take():
    g = scg.Graph("t")
    with g:
        i = scg.input("i", dtype="int64")
        x = scg.input("x", shape=(3,))
        w = scg.param("w", shape=(2, 3))
        oh, tk, tw = scg.one_hot(i, 3), scg.take(x, i), scg.take(w, i)
    iv = np.array([0, 2, 1, 2])
    wv = GEN.normal(size=(2, 3))
    v = run(g, {"i": iv, "x": X3}, {"w": wv})
    assert np.array_equal(v(oh), np.eye(3)[iv])
    assert np.array_equal(v(tk), X3[np.arange(B), iv])
    assert np.array_equal(v(tw), wv[:, iv].T)  # per row r: [w[0, i_r], w[1, i_r]]
    for bad in (np.array([0, 3, 1, 2]), np.array([0, -1, 1, 2])):
        with pytest.raises(InputError, match="'i'.*outside"):
            evaluate(g, {"w": wv}, {"i": bad, "x": X3})


def test_broadcast_to_and_unbroadcast():
    g = scg.Graph("t")
    with g:
        w = scg.param("w", shape=(3,))
        x = scg.input("x", shape=(2, 3))
        bw = apply(Op.BROADCAST_TO, w, shape=(2, 3), batched=True)
        u_un = apply(Op.UNBROADCAST, x, shape=(3,), batched=False)
        u_keep = apply(Op.UNBROADCAST, x, shape=(1, 3), batched=False)
        u_b = apply(Op.UNBROADCAST, x, shape=(1, 3), batched=True)
        u_one = apply(Op.UNBROADCAST, x, shape=(2, 1), batched=True)
    v = run(g, {"x": X23}, {"w": W3})
    assert np.array_equal(v(bw), np.broadcast_to(W3, (B, 2, 3)))
    close(v(u_un), X23.sum(axis=(0, 1)))
    close(v(u_keep), X23.sum(axis=(0, 1))[None, :])
    close(v(u_b), X23.sum(axis=1, keepdims=True))
    close(v(u_one), X23.sum(axis=2, keepdims=True))


# --- stability, with a deliberately broken rule to show the check bites -------------------------
EXTREME = np.array([[1e4, -1e4, 0.0, 30.0]])


def stable_checks(g, vals, x):
    """{name: True if finite and right at +-1e4}; references are closed forms valid there."""
    sp = np.array([1e4, 0.0, np.log(2), 30.0 + np.log1p(np.exp(-30.0))])
    expected = {"softplus": sp, "log_sigmoid": np.array([0.0, -1e4, -np.log(2), -np.log1p(np.exp(-30.0))]),
                "sigmoid": np.array([1.0, 0.0, 0.5, special.expit(30.0)]),
                "bernoulli_logp": np.array([0.0, -1e4, -np.log(2), 30.0 - sp[3]])}
    return {k: bool(np.all(np.isfinite(vals[k])) and np.allclose(vals[k], expected[k], rtol=1e-12, atol=1e-300))
            for k in expected}


def _stability_values():
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(4,))
        outs = {"softplus": scg.softplus(x), "log_sigmoid": scg.log_sigmoid(x), "sigmoid": scg.sigmoid(x),
                "bernoulli_logp": scg.Bernoulli(logits=x).log_prob(np.array([1.0, 1.0, 0.0, 1.0]))}
    v = run(g, {"x": EXTREME})
    return stable_checks(g, {k: v(o)[0] for k, o in outs.items()}, EXTREME)


def test_stable_at_plus_minus_1e4():
    assert all(_stability_values().values()), _stability_values()


def test_stability_check_catches_a_naive_softplus(monkeypatch):
    monkeypatch.setitem(numpy_impls, Op.SOFTPLUS, lambda n, args, env: np.log(1.0 + np.exp(args[0])))
    checks = _stability_values()
    assert not checks["softplus"] and checks["sigmoid"]


# --- densities ---------------------------------------------------------------------------------
def test_densities_match_scipy():
    g = scg.Graph("t")
    with g:
        lg, val = scg.input("l", shape=(3,)), scg.input("v", shape=(3,))
        ci, loc = scg.input("ci", dtype="int64"), scg.param("loc", shape=(3,))
        bl = scg.Bernoulli(logits=lg).log_prob(val)
        cl = scg.Categorical(logits=lg).log_prob(ci)
        nl = scg.Normal(loc, scg.exp(lg)).log_prob(val)
        cp = scg.Categorical(logits=loc).log_prob(ci)  # unbatched logits, batched values
        cs = scg.sample("cs", scg.Categorical(logits=loc))
    vv = (GEN.random((B, 3)) < 0.5).astype(float)
    civ = np.array([0, 1, 2, 1])
    v = run(g, {"l": X3, "v": vv, "ci": civ}, {"loc": W3})
    close(v(bl), stats.bernoulli.logpmf(vv, special.expit(X3)), rtol=1e-10)
    close(v(cl), special.log_softmax(X3, axis=-1)[np.arange(B), civ])
    close(v(nl), stats.norm.logpdf(vv, W3, np.exp(X3)), rtol=1e-10)
    close(v(cp), special.log_softmax(W3)[civ])
    assert v(cs).shape == (B,) and np.array_equal(v(cs), rng.categorical(np.tile(W3, (B, 1)), 0, cs.node.attrs["site"], 0))
