"""Issue 7.1: the bad-input catalogue. Every case runs on every backend and asserts the error type
and message (naming the node or input and what was expected); the last tests check that awkward but
valid inputs (batch of one, non-contiguous, read-only) work and agree across backends.

Compiled estimators are cached per (graph, estimator, backend, ...) so the numba backend compiles
each small graph once.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

import scg
from scg.errors import BackendError, EstimatorError, ExactError, GraphError, InputError, ScgError

BACKENDS = ["numpy", "numba"]
B = 4
GEN = np.random.default_rng(7)


# -- graphs -----------------------------------------------------------------------------------------
def bandit():
    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(3,))
        y = scg.input("y", dtype="int64")
        W1 = scg.param("W1", shape=(3, 3))
        h = scg.sample("h", scg.Bernoulli(logits=x @ W1))
        W2 = scg.param("W2", shape=(3, 4))
        a = scg.sample("a", scg.Categorical(logits=h @ W2))
        scg.cost("neg_reward", -scg.equal(a, y))
        scg.cost("sparsity", 0.1 * h.sum())
    return g


def probs():
    """Bernoulli(probs=p) with p an input, and a Categorical over log(q): domain errors."""
    g = scg.Graph("probs")
    with g:
        p = scg.input("p", shape=(3,))
        q = scg.input("q", shape=(3,))
        w = scg.param("w", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(probs=p))
        a = scg.sample("a", scg.Categorical(logits=scg.log(q) + w))
        scg.cost("c", (h * w).sum() + scg.to_float(a))
    return g


def logits_of_log():
    g = scg.Graph("lg")
    with g:
        x = scg.input("x", shape=(2,))
        w = scg.param("w", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=scg.log(x) * w))
        scg.cost("c", h.sum())
    return g


def gauss():
    g = scg.Graph("gauss")
    with g:
        x = scg.input("x", shape=(2,))
        s = scg.input("s", shape=(2,))
        w = scg.param("w", shape=(2,))
        z = scg.sample("z", scg.Normal(x * w, s))
        scg.cost("c", scg.square(z).sum())
    return g


def onehot():
    g = scg.Graph("oh")
    with g:
        y = scg.input("y", dtype="int64")
        w = scg.param("w", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=scg.one_hot(y, 3) * w))
        scg.cost("c", h.sum())
    return g


def external():
    g = scg.Graph("env")
    with g:
        x = scg.input("x", shape=(2,))
        w = scg.param("w", shape=(2, 3))
        a = scg.sample("a", scg.Categorical(logits=x @ w))
        scg.external_cost("reward", depends_on=[a])
    return g


GRAPHS = {f.__name__: f() for f in (bandit, probs, logits_of_log, gauss, onehot, external)}
PARAMS = {name: g.init_params(seed=0) for name, g in GRAPHS.items()}
INPUTS = {
    "bandit": {"x": GEN.normal(size=(B, 3)), "y": np.array([0, 1, 2, 3])},
    "probs": {"p": np.full((B, 3), 0.5), "q": np.full((B, 3), 0.5)},
    "logits_of_log": {"x": np.full((B, 2), 2.0)},
    "gauss": {"x": GEN.normal(size=(B, 2)), "s": np.ones((B, 2))},
    "onehot": {"y": np.array([0, 1, 2, 0])},
    "external": {"x": GEN.normal(size=(B, 2))},
}


@functools.cache
def est(graph: str, backend: str, estimator: str = "reinforce", baseline: str | None = None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        return scg.compile(GRAPHS[graph], estimator, backend=backend, baseline=baseline)


def call(graph, backend, params=None, inputs=None, estimator="reinforce", baseline=None, **kw):
    p = {**PARAMS[graph], **(params or {})}
    i = {**INPUTS[graph], **(inputs or {})}
    return est(graph, backend, estimator, baseline)(p, i, **kw)


def with_nan(a, where=(0, 1), value=np.nan):
    a = np.array(a, dtype=float)
    a[where] = value
    return a


def drop(d, key):
    return {k: v for k, v in d.items() if k != key}


def raw(graph, backend, params, inputs, estimator="reinforce", **kw):
    return est(graph, backend, estimator)(params, inputs, **kw)


def compile_fresh(build, backend, estimator="reinforce", **kw):
    return scg.compile(build(), estimator, backend=backend, **kw)


def _too_big():
    g = scg.Graph("big")
    with g:
        w = scg.param("w", shape=(30,))
        h = scg.sample("h", scg.Bernoulli(logits=w))
        scg.cost("c", h.sum())
    return g


def _dead_sample(backend):
    g = scg.Graph("dead")
    with g:
        p, q = scg.param("p", shape=(2,)), scg.param("q", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=p))
        scg.sample("unused", scg.Bernoulli(logits=p))
        scg.cost("c", h.sum() + 0.0 * scg.sum(q))
    scg.compile(g, "hnca", backend=backend)


def _dead_param(backend):
    g = scg.Graph("deadp")
    with g:
        scg.param("orphan", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=scg.param("p", shape=(2,))))
        scg.cost("c", h.sum())
    scg.compile(g, "hnca", backend=backend)


def _build(fn):
    def run(_backend):
        with scg.Graph("b"):
            fn()
    return run


def _two_phase_missing(backend):
    run = est("external", backend, "reinforce").sample(PARAMS["external"], INPUTS["external"], seed=1)
    run.grads(external={})


def _two_phase_shape(backend):
    run = est("external", backend, "reinforce").sample(PARAMS["external"], INPUTS["external"], seed=1, n_samples=2)
    run.grads(external={"reward": np.zeros(3)})


BX, BY = INPUTS["bandit"]["x"], INPUTS["bandit"]["y"]
BP = PARAMS["bandit"]

# (id, action(backend), error type, message regex)
CASES = [
    # -- call time: shapes, dtypes, names -------------------------------------------------------------
    ("input-wrong-row-shape", lambda b: call("bandit", b, inputs={"x": BX[:, :2]}),
     InputError, r"input 'x' has shape \(4, 2\), expected \(B, 3\)"),
    ("input-no-batch-axis", lambda b: call("bandit", b, inputs={"x": BX[0]}),
     InputError, r"input 'x' has shape \(3,\), expected \(B, 3\).*leading axis of B rows"),
    ("label-float-dtype", lambda b: call("bandit", b, inputs={"y": BY.astype(float)}),
     InputError, r"input 'y' must be an integer array \(declared int64\), got dtype float64"),
    ("input-string-dtype", lambda b: call("bandit", b, inputs={"x": np.full((B, 3), "a")}),
     InputError, r"input 'x' must be a real numeric array, got dtype <U1"),
    ("input-ragged", lambda b: call("bandit", b, inputs={"x": [[1.0, 2.0, 3.0], [1.0]]}),
     InputError, r"input 'x' is not convertible to an array"),
    ("missing-input", lambda b: raw("bandit", b, BP, {"x": BX}),
     InputError, r"missing input 'y': expected a int64 array of shape \(B,\)"),
    ("extra-input", lambda b: call("bandit", b, inputs={"z": BX}),
     InputError, r"unknown input name\(s\) 'z'; the graph expects: x\(B, 3\), y\(B,\)"),
    ("missing-param", lambda b: raw("bandit", b, drop(BP, "W2"), INPUTS["bandit"]),
     InputError, r"missing param 'W2': expected a float array of shape \(3, 4\)"),
    ("extra-param", lambda b: call("bandit", b, params={"W9": np.zeros(2)}),
     InputError, r"unknown param name\(s\) 'W9'"),
    ("param-wrong-shape", lambda b: call("bandit", b, params={"W1": np.zeros((2, 3))}),
     InputError, r"param 'W1' has shape \(2, 3\), expected \(3, 3\)"),
    ("rows-disagree", lambda b: call("bandit", b, inputs={"y": np.zeros(B + 1, int)}),
     InputError, r"inputs disagree on the number of rows B: 'x' has 4, 'y' has 5"),
    ("params-not-a-dict", lambda b: raw("bandit", b, [BP["W1"]], INPUTS["bandit"]),
     InputError, r"params must be a dict of name -> array, got list"),
    # -- non-finite values (error by default; check_finite=False allows them) -----------------------
    ("nan-param", lambda b: call("bandit", b, params={"W1": with_nan(BP["W1"])}),
     InputError, r"param 'W1' has 1 non-finite value\(s\).*check_finite=False"),
    ("inf-input", lambda b: call("bandit", b, inputs={"x": with_nan(BX, (2, 0), np.inf)}),
     InputError, r"input 'x' has 1 non-finite value\(s\)"),
    # -- integer labels out of range --------------------------------------------------------------------
    ("equal-label-too-big", lambda b: call("bandit", b, inputs={"y": np.array([0, 1, 9, 2])}),
     InputError, r"equal\(a, y\): input 'y' has label 9 at row 2.*'a' takes values in \[0, 4\)"),
    ("equal-label-negative", lambda b: call("bandit", b, inputs={"y": np.array([0, -1, 2, 2])}),
     InputError, r"input 'y' has label -1 at row 1.*expected labels in \[0, 4\)"),
    ("one-hot-index-too-big", lambda b: call("onehot", b, inputs={"y": np.array([0, 3, 1, 1])}),
     InputError, r"one_hot of 'y' has index 3 outside \[0, 3\)"),
    ("one-hot-index-negative", lambda b: call("onehot", b, inputs={"y": np.array([0, 1, -2, 1])}),
     InputError, r"one_hot of 'y' has index -2 outside \[0, 3\)"),
    # -- distribution arguments --------------------------------------------------------------------------
    ("probs-above-one", lambda b: call("probs", b, inputs={"p": with_nan(np.full((B, 3), 0.5), (1, 2), 1.5)}),
     InputError, r"Bernoulli sample 'h': probs outside \[0, 1\] \(or NaN\) at row 1, element \(2,\)"),
    ("probs-negative", lambda b: call("probs", b, inputs={"p": with_nan(np.full((B, 3), 0.5), (0, 0), -0.1)}),
     InputError, r"Bernoulli sample 'h': probs outside \[0, 1\].*expected probabilities in \[0, 1\]"),
    ("nan-logits-from-log", lambda b: call("logits_of_log", b, inputs={"x": with_nan(np.ones((B, 2)), (3, 1), -1.0)}),
     InputError, r"Bernoulli sample 'h': logits are NaN at row 3, element \(1,\)"),
    ("categorical-nan-logits", lambda b: call("probs", b, inputs={"q": with_nan(np.full((B, 3), 0.5), (2, 1), -1.0)}),
     InputError, r"Categorical sample 'a': logits are NaN at row 2"),
    ("categorical-all-minus-inf", lambda b: call("probs", b, inputs={"q": np.zeros((B, 3))}),
     InputError, r"Categorical sample 'a': every logit is -inf at row 0: no category has positive probability"),
    ("normal-negative-scale", lambda b: call("gauss", b, inputs={"s": with_nan(np.ones((B, 2)), (1, 0), -2.0)}),
     InputError, r"Normal sample 'z': scale must be positive, got -2.0 at row 1, element \(0,\)"),
    ("normal-zero-scale", lambda b: call("gauss", b, inputs={"s": np.zeros((B, 2))}),
     InputError, r"Normal sample 'z': scale must be positive, got 0.0"),
    # -- graph construction ----------------------------------------------------------------------------
    ("cost-not-per-row-scalar", _build(lambda: scg.cost("c", scg.input("x", shape=(3,)))),
     GraphError, r"node 'c'.*a cost must be a per-row scalar, got per-row shape \[3\]; reduce it with .sum"),
    ("duplicate-name", _build(lambda: (scg.input("x"), scg.param("x", shape=()))),
     GraphError, r"the name 'x' is used twice in graph 'b'"),
    ("one-hot-of-float", _build(lambda: scg.one_hot(scg.input("x", shape=(2,)), 3)),
     GraphError, r"one_hot expects int64 class indices, got f64"),
    ("matmul-shape-mismatch", _build(lambda: scg.input("x", shape=(3,)) @ scg.param("W", shape=(4, 2))),
     GraphError, r"matmul: inner dimensions differ: \[3\] @ \[4, 2\]"),
    ("misspelt-distribution-argument", _build(lambda: scg.Bernoulli(logit=scg.input("x"))),
     GraphError, r"Bernoulli got an unknown argument 'logit'; it takes logits, probs"),
    # -- compile time -------------------------------------------------------------------------------------
    ("unknown-estimator", lambda b: compile_fresh(bandit, b, "hcna"),
     EstimatorError, r"unknown estimator 'hcna' for the graph; expected one of reinforce, scg, muprop, hnca"),
    ("estimator-for-unknown-node", lambda b: compile_fresh(bandit, b, {"default": "hnca", "q": "reinforce"}),
     EstimatorError, r"estimator given for 'q', which is not a stochastic node \(stochastic nodes: h, a\)"),
    ("hnca-on-normal", lambda b: compile_fresh(gauss, b, {"z": "hnca"}),
     EstimatorError, r"hnca cannot apply to the Normal node 'z': it is defined for discrete units"),
    ("unknown-baseline-backend", lambda b: scg.compile(GRAPHS["bandit"], "hnca", backend=b + "x"),
     BackendError, r"unknown backend '(numpy|numba)x'; expected one of numpy, numba, cuda"),
    ("bad-precision", lambda b: scg.compile(GRAPHS["bandit"], "reinforce", backend=b, precision="float16")(
        BP, INPUTS["bandit"]),
     InputError, r"precision must be one of 'float64', 'float32', got 'float16'"),
    ("ema-decay-out-of-range", lambda b: scg.compile(GRAPHS["bandit"], "reinforce", backend=b, ema_decay=1.5),
     ScgError, r"ema_decay must be in \[0, 1\), got 1.5"),
    # -- call arguments -------------------------------------------------------------------------------------
    ("loo-with-one-sample", lambda b: call("bandit", b, baseline="loo", n_samples=1),
     BackendError, r"leave-one-out baseline needs n_samples >= 2 draws per row, got n_samples=1"),
    ("zero-samples", lambda b: call("bandit", b, n_samples=0),
     InputError, r"n_samples must be a positive int, got 0"),
    ("negative-seed", lambda b: call("bandit", b, seed=-3),
     InputError, r"seed must be an int in \[0, 2\*\*64\), got -3"),
    ("empty-batch", lambda b: call("bandit", b, inputs={"x": np.zeros((0, 3)), "y": np.zeros(0, int)}),
     InputError, r"input 'x' has 0 rows: the objective is a mean over rows"),
    # -- external costs -----------------------------------------------------------------------------------
    ("external-cost-one-phase", lambda b: call("external", b),
     InputError, r"graph 'env' has external costs \(reward\); call run = est.sample"),
    ("external-cost-missing", _two_phase_missing,
     InputError, r"missing external cost 'reward': expected a float array of shape \(B,\)"),
    ("external-cost-wrong-shape", _two_phase_shape,
     InputError, r"external cost 'reward' has shape \(3,\), expected \(K\*B,\) = \(8,\) or \(K, B\) = \(2, 4\)"),
    # -- scg.exact --------------------------------------------------------------------------------------
    ("exact-too-large", lambda b: scg.exact(_too_big(), {"w": np.zeros(30)}, {}),
     ExactError, r"would enumerate 1073741824 joint configurations per row \(h: 1073741824\); the limit is"),
    ("exact-normal-scale", lambda b: scg.exact(GRAPHS["gauss"], PARAMS["gauss"],
                                               {**INPUTS["gauss"], "s": -np.ones((B, 2))}),
     ExactError, r"Normal sample 'z': scale must be positive and finite, got -1.0 at row 0"),
    ("exact-external", lambda b: scg.exact(GRAPHS["external"], PARAMS["external"], INPUTS["external"]),
     ExactError, r"cannot evaluate external costs \(reward\)"),
]

WARNINGS = [
    ("sample-without-cost", _dead_sample, r"stochastic node 'unused' has no path to any cost"),
    ("param-without-cost", _dead_param, r"param 'orphan' influences no cost: its gradient is always zero"),
]


def test_catalogue_is_large_and_distinct():
    ids = [c[0] for c in CASES] + [w[0] for w in WARNINGS]
    assert len(ids) == len(set(ids)) >= 30


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, backend):
    _, action, error, match = case
    assert issubclass(error, ScgError)
    with pytest.raises(error, match=match) as info:
        action(backend)
    assert "Traceback" not in str(info.value) and "numba" not in type(info.value).__module__


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", WARNINGS, ids=[w[0] for w in WARNINGS])
def test_compile_time_warning(case, backend):
    _, action, match = case
    with pytest.warns(scg.ScgWarning, match=match):
        action(backend)


# -- the switch that allows non-finite values, and valid-but-awkward inputs ---------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_check_finite_false_lets_nan_through(backend):
    lenient = scg.compile(GRAPHS["bandit"], "reinforce", backend=backend, check_finite=False)
    out = lenient({**BP, "W1": with_nan(BP["W1"])}, INPUTS["bandit"], seed=1)
    assert np.isnan(out.grads["W1"]).any()
    lenient = scg.compile(GRAPHS["probs"], "reinforce", backend=backend, check_finite=False)
    out = lenient(PARAMS["probs"], {**INPUTS["probs"], "p": with_nan(np.full((B, 3), 0.5), (1, 2), 1.5)}, seed=1)
    assert np.isnan(out.samples["h"][1, 2]) and np.isfinite(np.delete(out.samples["h"].ravel(), 5)).all()
    # the strict estimator of the same graph still refuses (leniency belongs to one compiled estimator)
    with pytest.raises(InputError, match="probs outside"):
        call("probs", backend, inputs={"p": with_nan(np.full((B, 3), 0.5), (1, 2), 1.5)})


def _outputs(out):
    return out.grads, out.samples, out.cost


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_of_one(backend):
    out = call("bandit", backend, inputs={"x": BX[:1], "y": BY[:1]}, estimator="hnca", seed=3)
    ref = call("bandit", "numpy", inputs={"x": BX[:1], "y": BY[:1]}, estimator="hnca", seed=3)
    assert out.n_rows == 1 and out.samples["h"].shape == (1, 3)
    assert np.array_equal(out.samples["a"], ref.samples["a"])
    for k, v in ref.grads.items():
        np.testing.assert_allclose(out.grads[k], v, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_contiguous_and_read_only_inputs_work(backend):
    big = np.asfortranarray(np.repeat(BX, 2, axis=1))
    x = big[:, ::2]  # Fortran-ordered, strided view
    y = np.repeat(BY, 3)[::3]
    w1 = np.array(BP["W1"]).T.copy().T  # Fortran order
    for a in (x, y, w1):
        a.flags.writeable = False
    assert not x.flags.c_contiguous and not w1.flags.c_contiguous and not y.flags.c_contiguous
    out = est("bandit", backend, "hnca")({**BP, "W1": w1}, {"x": x, "y": y}, seed=5, n_samples=2)
    ref = est("bandit", "numpy", "hnca")(BP, INPUTS["bandit"], seed=5, n_samples=2)
    assert np.array_equal(out.samples["h"], ref.samples["h"]) and np.array_equal(out.samples["a"], ref.samples["a"])
    for k, v in ref.grads.items():
        np.testing.assert_allclose(out.grads[k], v, rtol=1e-10, atol=1e-12)
    assert not x.flags.writeable and np.array_equal(x, BX)  # inputs are not modified


@pytest.mark.parametrize("backend", BACKENDS)
def test_python_lists_and_int32_labels_work(backend):
    out = est("bandit", backend, "reinforce")({k: v.tolist() for k, v in BP.items()},
                                              {"x": BX.tolist(), "y": BY.astype(np.int32)}, seed=2)
    ref = call("bandit", "numpy", seed=2)
    assert np.array_equal(out.samples["a"], ref.samples["a"])
