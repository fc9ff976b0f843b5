"""The HNCA counterfactual loop nests of the Numba runtime against the NumPy spec (numpy_credit).

float32 uses polynomial ``exp_fast``/``softplus_fast`` (vectorisable, no libm call) in the
loop nests; float64 keeps libm and must agree with the spec to 1e-10. Also checks that the
float32 Bernoulli-child nest really vectorises (``<16 x float>``/``<8 x float>`` ops in the IR).
"""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

numba = pytest.importorskip("numba")

from scg.backends import numba_runtime, numpy_credit
from scg.backends.numba_cpu import runtime_module


@pytest.fixture(scope="module")
def rt32():
    return runtime_module("float32")


@pytest.fixture(scope="module")
def rt64():
    return runtime_module("float64")


@pytest.fixture(scope="module")
def vec32(rt32):
    """Elementwise drivers of the float32 scalar helpers."""
    sp, ex = rt32.softplus_fast, rt32.exp_fast

    @numba.njit
    def softplus_all(x, out):
        for k in range(x.shape[0]):
            out[k] = sp(x[k])

    @numba.njit
    def exp_all(x, out):
        for k in range(x.shape[0]):
            out[k] = ex(x[k])

    return softplus_all, exp_all


def _softplus64(x):
    x = x.astype(np.float64)
    return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def test_softplus_fast_accuracy(vec32):
    softplus_all, _ = vec32
    x = np.concatenate([np.linspace(-40.0, 40.0, 800_001, dtype=np.float32),
                        np.float32([-1e4, 1e4, -1e3, 1e3, -88.0, 88.0, -20.0, 20.0, 0.0, -0.0, 1e-8, -1e-8]),
                        np.random.default_rng(0).normal(0.0, 5.0, 100_000).astype(np.float32)])
    out = np.empty_like(x)
    softplus_all(x, out)
    ref = _softplus64(x)
    err = np.abs(out.astype(np.float64) - ref)
    near = np.abs(x) <= 8.0
    assert err[near].max() <= 3.5e-7            # measured 2.97e-7
    assert err[x < 0].max() <= 3.5e-7           # tiny results: abs error only (clamp at e**-20 ~ 2e-9)
    # above: the rounding of x + log1p(e**-x) to float32 (half an ulp of the result) plus ~3e-7
    assert np.all(err <= np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64) / 2 + 3.5e-7)
    assert abs(np.mean(out[near] - ref[near])) < 1e-8  # no systematic bias that would add up over children
    assert out[x == np.float32(1e4)][0] == np.float32(1e4) and out[x == np.float32(-1e4)][0] < 1e-8


def test_softplus_fast_nonfinite(vec32):
    softplus_all, _ = vec32
    x = np.float32([np.nan, np.inf, -np.inf])
    out = np.empty_like(x)
    softplus_all(x, out)
    assert np.isnan(out[0]) and out[1] == np.inf and 0.0 <= out[2] < 1e-8


def test_exp_fast_accuracy(vec32):
    _, exp_all = vec32
    x = np.linspace(-20.0, 20.0, 400_001, dtype=np.float32)
    out = np.empty_like(x)
    exp_all(x, out)
    ref = np.exp(x.astype(np.float64))
    assert (np.abs(out - ref) / ref).max() <= 3.5e-7   # measured 2.75e-7
    big = np.float32([30.0, -30.0, np.nan])
    ob = np.empty_like(big)
    exp_all(big, ob)
    assert ob[0] == pytest.approx(np.exp(20.0), rel=1e-6) and ob[1] == pytest.approx(np.exp(-20.0), rel=1e-6)
    assert np.isnan(ob[2])


def _case(child, dtype, rows=64, n=37, m=29, seed=0, scale=0.5, binary=True):
    rng = np.random.default_rng(seed)
    u = (rng.random((rows, n)) < 0.5).astype(dtype)
    if not binary:
        u[:, ::3] = rng.random((rows, (n + 2) // 3)).astype(dtype)
    w = rng.normal(0.0, scale, (n, m)).astype(dtype)
    lg = rng.normal(0.0, 3.0, (rows, m)).astype(dtype)
    c = (rng.random((rows, m)) < 0.5).astype(dtype) if child == "bernoulli" else rng.integers(0, m, rows)
    return u, w, lg, c


def _spec(child, args, dtype):
    node = SimpleNamespace(attrs={"child": child})
    return numpy_credit.hnca_affine_delta(node, list(args), SimpleNamespace(dtype=dtype))


def _run(rt, child, args, dtype):
    u, w, lg, c = args
    out = np.full(u.shape, np.nan, dtype)
    fn = rt.hnca_bern_row if child == "bernoulli" else rt.hnca_cat_row
    for r in range(u.shape[0]):
        fn(u[r], w, lg[r], c[r], out[r])
    return out


CASES = [{}, {"binary": False}, {"scale": 4.0}, {"n": 200, "m": 200, "rows": 8, "scale": 0.1}, {"m": 10, "n": 200}]


@pytest.mark.parametrize("child", ["bernoulli", "categorical"])
@pytest.mark.parametrize("kw", CASES)
def test_float64_matches_spec(rt64, child, kw):
    args = _case(child, np.float64, **kw)
    got, want = _run(rt64, child, args, np.float64), _spec(child, args, np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-10)


@pytest.mark.parametrize("child", ["bernoulli", "categorical"])
@pytest.mark.parametrize("kw", CASES + [{"scale": 30.0}, {"m": 10, "n": 50, "scale": 12.0}])
def test_float32_matches_spec(rt32, child, kw):
    args = _case(child, np.float32, **kw)
    got = _run(rt32, child, args, np.float32)
    want = _spec(child, [a.astype(np.float64) if a.dtype == np.float32 else a for a in args], np.float64)
    # the float32 spec itself is this far from float64: accumulated rounding over m children
    spec32 = _spec(child, args, np.float32)
    tol = 1e-4 * max(1.0, np.abs(want).max())
    assert np.abs(got - want).max() <= max(tol, 2.0 * np.abs(spec32 - want).max())


def test_float32_nonfinite_logits_follow_spec(rt32):
    # NaN and +inf logits: NaN as in the spec. (Not checked: a Bernoulli child whose logits are
    # -inf: the spec's c x - softplus(x) is NaN there, the nest's rewritten sum_j c_j w_ij - ... is
    # finite, in float64 as well; unchanged by the float32 polynomials.)
    for child in ("bernoulli", "categorical"):
        u, w, lg, c = _case(child, np.float32, rows=4, n=6, m=5)
        lg[0, 1] = np.nan
        lg[1, 2] = np.inf
        if child == "categorical":
            lg[2, :] = -np.inf
        got = _run(rt32, child, (u, w, lg, c), np.float32)
        with np.errstate(all="ignore"):
            want = _spec(child, (u, w, lg, c), np.float32)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        fin = np.isfinite(want)
        np.testing.assert_allclose(got[fin], want[fin], rtol=1e-4, atol=1e-4)


def _vector_ops(fn, args) -> dict[int, int]:
    # numba cannot show the IR of cache-loaded code: compile an uncached private copy of the runtime
    src = numba_runtime.runtime_source("float32").replace("JIT = dict(cache=True,", "JIT = dict(cache=False,", 1)
    ns: dict = {"__name__": "scg_rt_inspect"}
    exec(compile(src, "<scg rt inspect>", "exec"), ns)  # noqa: S102 -- our generated text
    f = ns[fn]
    f(*args)
    ir = "".join(f.inspect_llvm().values())
    return {k: len(re.findall(rf"<{k} x float>", ir)) for k in (8, 16)} | {0: len(re.findall(r"x double>", ir))}


def test_float32_bernoulli_nest_vectorises():
    u, w, lg, c = _case("bernoulli", np.float32, rows=1, n=16, m=64)
    ops = _vector_ops("hnca_bern_row", (u[0], w, lg[0], c[0], np.empty(16, np.float32)))
    assert ops[8] + ops[16] >= 50, ops   # measured ~400 <16 x float> ops (AVX-512 machine)
    assert ops[0] == 0, ops              # no float64 promotion in the polynomial


def test_float32_categorical_nest_vectorises():
    u, w, lg, c = _case("categorical", np.float32, rows=1, n=16, m=10)
    ops = _vector_ops("hnca_cat_row", (u[0], w, lg[0], c[0], np.empty(16, np.float32)))
    assert ops[8] + ops[16] >= 20, ops
