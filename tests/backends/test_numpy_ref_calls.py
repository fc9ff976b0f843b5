"""Tests of the NumPy reference interpreter: sampling, leaves, two-phase calls, validation, precision."""

import numpy as np
import pytest
from scipy import special

import scg
from scg.backends import rng
from scg.backends.numpy_ref import evaluate, numpy_impls
from scg.dsl.value import apply
from scg.errors import BackendError, InputError
from scg.ir.ops import Op

B = 4
GEN = np.random.default_rng(0)
X3 = GEN.normal(size=(B, 3)) * 2
W3 = GEN.normal(size=(3,))


def run(g, inputs, params=None, **kw):
    """Evaluate and return a lookup from DSL values to arrays."""
    vals = evaluate(g, params or {}, inputs, **kw)
    return lambda v: vals[v.node.uid]


def close(a, b, **kw):
    np.testing.assert_allclose(a, b, rtol=kw.get("rtol", 1e-12), atol=kw.get("atol", 1e-12))


# --- sampling ------------------------------------------------------------------------------------
def _coin_graph():
    g = scg.Graph("t")
    with g:
        lg = scg.input("l", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=lg))
        c = scg.sample("c", scg.Categorical(logits=lg))
        h2 = scg.sample("h2", scg.Bernoulli(logits=lg))
    return g, h, c, h2


def test_samples_reproduce_and_differ_by_seed_and_site():
    g, h, c, h2 = _coin_graph()
    lv = np.zeros((64, 3))
    v1, v2, v3 = (run(g, {"l": lv}, seed=s) for s in (5, 5, 6))
    assert np.array_equal(v1(h), v2(h)) and np.array_equal(v1(c), v2(c))
    assert not np.array_equal(v1(h), v3(h))
    assert not np.array_equal(v1(h), v1(h2))
    assert v1(c).dtype == np.int64 and set(np.unique(v1(c))) <= {0, 1, 2}


def test_draw_major_layout_matches_rng():
    g, h, c, _ = _coin_graph()
    lv = GEN.normal(size=(B, 3))
    k = 3
    v = run(g, {"l": lv}, seed=9, n_samples=k)
    assert v(h).shape == (k * B, 3)
    site_h, site_c = h.node.attrs["site"], c.node.attrs["site"]
    for d in range(k):
        rows = slice(d * B, (d + 1) * B)
        assert np.array_equal(v(h)[rows], rng.bernoulli(lv, 9, site_h, d))
        assert np.array_equal(v(c)[rows], rng.categorical(lv, 9, site_c, d))
    vals = evaluate(g, {}, {"l": lv}, n_samples=k)
    assert np.array_equal(vals[g["l"].uid], np.tile(lv, (k, 1)))


def test_bernoulli_frequency_and_param_logits_are_broadcast():
    g = scg.Graph("t")
    with g:
        x = scg.input("x")
        lg = scg.param("lg", shape=(4,))
        h = scg.sample("h", scg.Bernoulli(logits=lg + 0.0 * x))
        hp = scg.sample("hp", scg.Bernoulli(logits=lg))
    lv = np.array([-2.0, -0.5, 0.5, 2.0])
    n = 5000
    v = run(g, {"x": np.zeros(n)}, {"lg": lv}, seed=2)
    p = special.expit(lv)
    assert np.all(np.abs(v(h).mean(0) - p) < 5 * np.sqrt(p * (1 - p) / n))
    assert v(hp).shape == (n, 4) and hp.node.batched
    assert np.array_equal(v(hp), rng.bernoulli(np.broadcast_to(lv, (n, 4)), 2, hp.node.attrs["site"], 0))


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_normal_is_loc_plus_scale_noise_bit_for_bit(precision):
    g = scg.Graph("t")
    with g:
        loc = scg.input("loc", shape=(3,))
        scale = scg.param("scale", shape=(3,))
        z = scg.sample("z", scg.Normal(loc, scale))
        site = z.node.attrs["site"]
        eps = g.add(Op.NOISE_NORMAL, (), {"shape": (3,), "dtype": "f64", "batched": True, "site": site})
        rewrite = loc + scale * scg.Value(eps, g)
    sv = np.array([0.5, 1.0, 2.0])
    v = run(g, {"loc": X3}, {"scale": sv}, seed=4, n_samples=2, precision=precision)
    assert np.array_equal(v(z), v(rewrite))
    noise = np.concatenate([rng.normal((B, 3), 4, site, d) for d in range(2)])
    dt = np.float32 if precision == "float32" else np.float64
    assert v(z).dtype == dt
    close(v(z), np.tile(X3, (2, 1)) + sv * noise, rtol=1e-6 if precision == "float32" else 1e-12, atol=1e-5)


# --- markers, baselines, leaves ----------------------------------------------------------------------
def test_cost_stop_gradient_and_loo_baseline():
    g = scg.Graph("t")
    with g:
        s = scg.input("s")
        c = scg.cost("c", s * 2.0)
        sg = scg.stop_gradient(s)
        loo = apply(Op.LOO_BASELINE, s)
    k = 3
    sv = np.array([1.0, 2.0, 3.0, 1e16])
    vals = run(g, {"s": sv}, n_samples=k)
    assert np.array_equal(vals(c), np.tile(2 * sv, k)) and np.array_equal(vals(sg), np.tile(sv, k))
    xs = np.tile(sv, k) + np.repeat(np.arange(k), B)  # different values per draw via override
    vals = evaluate(g, {}, {"s": sv}, n_samples=k, overrides={s.node: xs})
    x2 = xs.reshape(k, B)
    ref = np.stack([(x2.sum(0) - x2[d]) / (k - 1) for d in range(k)]).reshape(-1)
    close(vals[loo.node.uid][:3 * B], ref, rtol=1e-15)
    with pytest.raises(BackendError, match="n_samples >= 2"):
        evaluate(g, {}, {"s": sv})


def test_external_cost_state_const_and_two_phase():
    g = scg.Graph("t")
    with g:
        x = scg.input("x")
        h = scg.sample("h", scg.Bernoulli(logits=x))
        r = scg.external_cost("r", depends_on=[h])
        st = g.add(Op.STATE, (), {"shape": (2,), "dtype": "f64", "batched": False, "name": "ema"})
        tot = r * h + scg.Value(st, g).sum()
    xv, k = np.zeros(B), 2
    state = {"ema": np.array([1.0, 2.0])}
    ph1 = evaluate(g, {}, {"x": xv}, n_samples=k, state=state, stop_at_external=True)
    assert h.node.uid in ph1 and r.node.uid not in ph1 and tot.node.uid not in ph1
    rv = np.arange(k * B, dtype=float)
    for ext in (rv, rv.reshape(k, B)):
        v = run(g, {"x": xv}, n_samples=k, state=state, external={"r": ext})
        assert np.array_equal(v(h), ph1[h.node.uid])
        close(v(tot), rv * ph1[h.node.uid] + 3.0)
    with pytest.raises(InputError, match="'r'"):
        evaluate(g, {}, {"x": xv}, state=state)
    with pytest.raises(InputError, match="'r'"):
        evaluate(g, {}, {"x": xv}, n_samples=k, state=state, external={"r": rv[:B]})
    with pytest.raises(InputError, match="'ema'"):
        evaluate(g, {}, {"x": xv}, external={"r": rv[:B]})


def test_overridden_sample_is_not_computed(monkeypatch):
    g, h, _c, h2 = _coin_graph()
    pinned = np.ones((B, 3))
    monkeypatch.delitem(numpy_impls, Op.BERNOULLI)
    with pytest.raises(BackendError, match="bernoulli"):
        evaluate(g, {}, {"l": X3})
    vals = evaluate(g, {}, {"l": X3}, overrides={h.node: pinned, h2.node: pinned})
    assert np.array_equal(vals[h.node.uid], pinned)
    with pytest.raises(InputError, match="'h'"):
        evaluate(g, {}, {"l": X3}, overrides={h.node: np.ones((B, 2)), h2.node: pinned})


def test_missing_implementation_is_a_clean_backend_error(monkeypatch):
    g = scg.Graph("t")
    with g:
        hv, lg, cv = scg.input("h", shape=(2,)), scg.input("l", shape=(3,)), scg.input("c", shape=(3,))
        w = scg.param("W", shape=(2, 3))
        apply(Op.HNCA_AFFINE_DELTA, hv, w, lg, cv, name="delta", child="bernoulli")
    monkeypatch.delitem(numpy_impls, Op.HNCA_AFFINE_DELTA)
    with pytest.raises(BackendError, match=r"no implementation of op 'hnca_affine_delta'.*'delta'"):
        evaluate(g, {"W": np.zeros((2, 3))}, {"h": np.zeros((B, 2)), "l": X3, "c": X3})


# --- validation, precision, memory layouts ---------------------------------------------------------
def _io_graph():
    g = scg.Graph("t")
    with g:
        x, y = scg.input("x", shape=(3,)), scg.input("y", dtype="int64")
        w = scg.param("w", shape=(3,))
        out = scg.cost("c", (x * w).sum() + scg.to_float(y))
    return g, out


@pytest.mark.parametrize("params,inputs,match", [
    ({"w": W3}, {"y": np.zeros(B, int)}, r"missing input 'x'.*\(B, 3\)"),
    ({"w": W3}, {"x": X3[:, :2], "y": np.zeros(B, int)}, r"'x' has shape \(4, 2\)"),
    ({"w": W3}, {"x": X3[0], "y": np.zeros(B, int)}, r"'x' has shape \(3,\)"),
    ({"w": W3}, {"x": X3, "y": np.zeros(B)}, r"'y' must be an integer array"),
    ({"w": W3}, {"x": X3, "y": np.zeros(B, int), "z": X3}, r"unknown input.*'z'.*x\(B, 3\)"),
    ({}, {"x": X3, "y": np.zeros(B, int)}, r"missing param 'w'"),
    ({"w": W3, "v": W3}, {"x": X3, "y": np.zeros(B, int)}, r"unknown param.*'v'"),
    ({"w": W3[:2]}, {"x": X3, "y": np.zeros(B, int)}, r"param 'w' has shape"),
    ({"w": W3}, {"x": X3, "y": np.zeros(B + 1, int)}, r"disagree.*'x' has 4.*'y' has 5"),
    ({"w": np.array(["a", "b", "c"])}, {"x": X3, "y": np.zeros(B, int)}, r"'w' must be a real numeric"),
])
def test_validation_errors_name_the_input(params, inputs, match):
    g, _ = _io_graph()
    with pytest.raises(InputError, match=match):
        evaluate(g, params, inputs)


def test_bad_call_arguments():
    g, _ = _io_graph()
    ok = ({"w": W3}, {"x": X3, "y": np.zeros(B, int)})
    for kw in ({"precision": "float16"}, {"n_samples": 0}, {"seed": -1}):
        with pytest.raises(InputError):
            evaluate(g, *ok, **kw)


def _kitchen_sink():
    """A graph touching most ops, for dtype checks."""
    g = scg.Graph("t")
    with g:
        x, y = scg.input("x", shape=(3,)), scg.input("y", dtype="int64")
        w, wm = scg.param("w", shape=(3,)), scg.param("W", shape=(3, 2))
        h = scg.sample("h", scg.Bernoulli(logits=x @ wm @ wm.T))
        a = scg.sample("a", scg.Categorical(logits=scg.tanh(x) * w))
        z = scg.sample("z", scg.Normal(x.mean(), scg.exp(w)))
        t = (scg.sigmoid(x) + scg.softplus(z) + scg.log_sigmoid(h) + scg.relu(x) / 2.0 + scg.log(scg.exp(x))
             + scg.sqrt(scg.square(x)) + apply(Op.STEP, x) + scg.softmax(x) + scg.log_softmax(x)
             + scg.one_hot(y, 3) + scg.where(scg.greater(x, 0.0), x, w) + scg.equal(a, y))
        u = (apply(Op.OUTER_SUM, t, x).sum() + apply(Op.UNBROADCAST, t, shape=(1,), batched=False).sum()
             + apply(Op.BROADCAST_TO, w, shape=(3,), batched=True).reshape(3, 1).sum())
        lp = (scg.Bernoulli(logits=x).log_prob(h).sum() + scg.Categorical(logits=x).log_prob(a)
              + scg.Normal(0.0, 1.0).log_prob(z).sum() + scg.logsumexp(t) + scg.take(x, y))
        c = scg.cost("c", lp + u + apply(Op.LOO_BASELINE, lp))
    return g, c


def test_float32_precision_end_to_end(monkeypatch):
    g, c = _kitchen_sink()
    native = {}
    for op, impl in list(numpy_impls.items()):  # record what each rule returns before the final cast
        def spy(n, a, e, impl=impl):
            out = impl(n, a, e)
            native[n.op] = np.asarray(out).dtype
            return out
        monkeypatch.setitem(numpy_impls, op, spy)
    ins, pars = {"x": X3, "y": np.arange(B) % 3}, {"w": W3, "W": GEN.normal(size=(3, 2))}
    vals = evaluate(g, pars, ins, precision="float32", n_samples=2)
    assert {v.dtype for v in vals.values()} == {np.dtype(np.float32), np.dtype(np.int64)}
    assert {op for op, dt in native.items() if dt == np.float64} == set()
    assert len(native) >= 30
    ref = evaluate(g, pars, ins, n_samples=2)[c.node.uid]
    close(vals[c.node.uid], ref, rtol=1e-4, atol=1e-4)


def test_read_only_and_non_contiguous_inputs():
    g, c = _io_graph()
    big = np.asfortranarray(GEN.normal(size=(B, 6)))
    x = big[:, ::2]
    x.flags.writeable = False
    y = np.arange(2 * B)[::2]
    w = np.array(W3)
    w.flags.writeable = False
    assert not x.flags.c_contiguous
    v = run(g, {"x": x, "y": y}, {"w": w}, n_samples=2)
    close(v(c), np.tile((x * w).sum(1) + y, 2))


def test_row_scale_is_one_over_rows_times_draws():
    g = scg.Graph("t")
    with g:
        x = scg.input("x")
        inv = g.add(Op.ROW_SCALE, (), {"dtype": "f64", "shape": (), "batched": False})
        y = x * scg.Value(inv, g)
    vals = evaluate(g, {}, {"x": np.ones(B)}, n_samples=3)
    assert vals[inv.uid] == 1.0 / (3 * B) and vals[y.node.uid].shape == (3 * B,)


def test_scalar_param_keeps_its_shape():
    g = scg.Graph("coin")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        c = scg.cost("c", (b - 0.45) ** 2 + scg.tanh(phi))
    for phi_v in (0.3, np.float64(0.3), np.array(0.3)):
        vals = evaluate(g, {"phi": phi_v}, {}, n_samples=5)
        assert vals[phi.node.uid].shape == () and vals[b.node.uid].shape == (5,) and vals[c.node.uid].shape == (5,)
