"""Tests for the counter-based RNG (Philox-4x32-10, Salmon et al. 2011)."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from scg.backends import rng

MASK = 0xFFFFFFFF

# Random123 kat_vectors, philox4x32 with 10 rounds: (counter, key, output words).
KATS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((MASK,) * 4, (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _unit(wa, wb):
    """The spec's word -> (0, 1) conversion, with exact Python integers."""
    return ((wa >> 6) * 67108864 + (wb >> 6) + 0.5) / 4503599627370496.0


def _random_counters(n, seed=1234):
    """n random (c0, c1, c2, c3, k0, k1) rows of Python ints, with edge values mixed in."""
    gen = np.random.default_rng(seed)
    vals = gen.integers(0, 2**32, size=(n, 6), dtype=np.uint64)
    vals[:10] = MASK
    vals[10:20] = 0
    return [tuple(int(v) for v in row) for row in vals]


# --- Philox known answers and scalar/vector agreement -------------------------


@pytest.mark.parametrize(("ctr", "key", "expected"), KATS)
def test_kat_scalar(ctr, key, expected):
    assert rng.philox4x32_10(*ctr, *key) == expected


@pytest.mark.parametrize(("ctr", "key", "expected"), KATS)
def test_kat_numpy(ctr, key, expected):
    out = rng.philox4x32_10_np(*ctr, *key)
    assert all(w.dtype == np.uint32 for w in out)
    assert tuple(int(w) for w in out) == expected


def test_scalar_matches_numpy_on_random_counters():
    rows = _random_counters(300)
    cols = np.array(rows, dtype=np.uint64).T.astype(np.uint32)
    vec = np.stack(rng.philox4x32_10_np(*cols), axis=1)
    scal = np.array([rng.philox4x32_10(*r) for r in rows], dtype=np.uint32)
    np.testing.assert_array_equal(vec, scal)


def test_numpy_broadcasts_counters_and_keys():
    c0 = np.arange(4)[None, :]
    k0 = np.array([[0], [7]])
    w = rng.philox4x32_10_np(c0, 1, 2, 3, k0, 9)
    assert w[0].shape == (2, 4)
    assert int(w[2][1, 3]) == rng.philox4x32_10(3, 1, 2, 3, 7, 9)[2]


def test_uniform_pair_matches_scalar_twin():
    seed = 0xDEADBEEF12345678
    k0, k1 = rng.seed_key(seed)
    rows, elems = np.arange(5, 12), np.arange(0, 40, 3)
    u1, u2 = rng.uniform_pair(seed, 4, 2, rows[:, None], elems[None, :])
    for i, r in enumerate(rows):
        for j, e in enumerate(elems):
            assert (u1[i, j], u2[i, j]) == rng.uniform_pair_scalar(k0, k1, 4, 2, r, e)


def test_unit_conversion_range_and_rounding():
    words = np.array([0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFDF, MASK], dtype=np.uint32)
    got = rng._words_to_unit(words[:, None], words[None, :])
    want = np.array([[_unit(int(a), int(b)) for b in words] for a in words])
    np.testing.assert_array_equal(got, want)
    assert got.min() == 2.0**-53 > 0.0
    # every step is exact: the largest value stays strictly below 1.0.
    assert got.max() == 1.0 - 2.0**-53


# --- Numba: the scalar layer compiles and agrees bit for bit ------------------


@pytest.fixture(scope="module")
def jitted():
    numba = pytest.importorskip("numba")
    return numba, rng.compile_scalars(numba.njit)


def test_compile_scalars_without_jit_is_plain_python():
    plain = rng.compile_scalars(lambda f: f)
    for ctr, key, expected in KATS:
        assert plain.philox4x32_10(*ctr, *key) == expected


def test_njit_philox_kats_and_random(jitted):
    _, jit = jitted
    for ctr, key, expected in KATS:
        assert tuple(jit.philox4x32_10(*ctr, *key)) == expected
    rows = _random_counters(300, seed=99)
    cols = np.array(rows, dtype=np.uint64).T.astype(np.uint32)
    vec = np.stack(rng.philox4x32_10_np(*cols), axis=1)
    got = np.array([jit.philox4x32_10(*r) for r in rows], dtype=np.uint32)
    np.testing.assert_array_equal(got, vec)


def _njit_sampler_kernel(numba, jit):
    """A jitted loop that samples like a generated CPU kernel would."""
    upair, bern = jit.uniform_pair_scalar, jit.bernoulli_scalar
    pick, gauss = jit.categorical_pick, jit.normal_scalar

    @numba.njit
    def kernel(k0, k1, site, draw, row_offset, blogits, clogits):
        batch, n = blogits.shape
        u1s = np.empty((batch, n))
        u2s = np.empty((batch, n))
        b = np.empty((batch, n))
        c = np.empty((batch, n), dtype=np.int64)
        z = np.empty((batch, n))
        for i in range(batch):
            for e in range(n):
                u1, u2 = upair(k0, k1, site, draw, row_offset + i, e)
                u1s[i, e], u2s[i, e] = u1, u2
                b[i, e] = bern(blogits[i, e], u1)
                c[i, e] = pick(clogits[i, e], u1)
                z[i, e] = gauss(u1, u2)
        return u1s, u2s, b, c, z

    return kernel


def test_njit_samplers_match_numpy(jitted):
    numba, jit = jitted
    kernel = _njit_sampler_kernel(numba, jit)
    gen = np.random.default_rng(5)
    batch, n, k = 300, 20, 6
    blogits = gen.normal(0, 3, size=(batch, n))
    clogits = gen.normal(0, 2, size=(batch, n, k))
    seed, site, draw, off = 2**40 + 17, 3, 1, 1000
    k0, k1 = rng.seed_key(seed)
    u1, u2, b, c, z = kernel(k0, k1, site, draw, off, blogits, clogits)
    rows, elems = np.arange(off, off + batch), np.arange(n)
    ref1, ref2 = rng.uniform_pair(seed, site, draw, rows[:, None], elems[None, :])
    np.testing.assert_array_equal(u1, ref1)
    np.testing.assert_array_equal(u2, ref2)
    np.testing.assert_array_equal(b, rng.bernoulli(blogits, seed, site, draw, off))
    np.testing.assert_array_equal(c, rng.categorical(clogits, seed, site, draw, off))
    # exp/log come from libm in Numba but from SIMD loops in NumPy: allow a few ulp.
    ref_z = rng.normal((batch, n), seed, site, draw, off)
    np.testing.assert_array_max_ulp(z, ref_z, maxulp=4)


def test_python_scalar_samplers_match_numpy():
    gen = np.random.default_rng(6)
    blogits = gen.normal(0, 3, size=(50, 4))
    clogits = gen.normal(0, 2, size=(50, 4, 5))
    seed, site, draw = 11, 2, 0
    k0, k1 = rng.seed_key(seed)
    b = rng.bernoulli(blogits, seed, site, draw)
    c = rng.categorical(clogits, seed, site, draw)
    z = rng.normal((50, 4), seed, site, draw)
    for i in range(50):
        for e in range(4):
            u1, u2 = rng.uniform_pair_scalar(k0, k1, site, draw, i, e)
            assert rng.bernoulli_scalar(blogits[i, e], u1) == b[i, e]
            assert rng.categorical_pick(clogits[i, e], u1) == c[i, e]
            np.testing.assert_array_max_ulp(rng.normal_scalar(u1, u2), z[i, e], 4)


# --- Statistical quality of the uniform stream --------------------------------


def _corr_ok(x, y):
    """|Pearson r| below 5 standard errors (r ~ N(0, 1/n) under independence)."""
    r = np.corrcoef(x.ravel(), y.ravel())[0, 1]
    return abs(r) < 5.0 / math.sqrt(x.size)


def _uniform_ok(u):
    """KS and 100-bin chi-square against U(0, 1), mean and variance within 5 se."""
    u = u.ravel()
    n = u.size
    counts = np.histogram(u, bins=100, range=(0.0, 1.0))[0]
    var_se = math.sqrt((1 / 80 - 1 / 144) / n)  # (mu4 - sigma^4) / n for U(0, 1)
    return (
        stats.kstest(u, "uniform").pvalue > 1e-3
        and stats.chisquare(counts).pvalue > 1e-3
        and abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
        and abs(u.var() - 1 / 12) < 5 * var_se
        and 0.0 < u.min()
        and u.max() <= 1.0
    )


def stream_checks(uniform_fn, seed=12345, site=7, draw=2):
    """Run every check on a ``uniform_pair``-like function; name -> passed."""
    k0, k1, c0, c1, c2, c3 = 0xA4093822, 0x299F31D0, 0x243F6A88, 0x85A308D3, 0x13198A2E, 3
    kat = rng.philox4x32_10(c0, c1, c2, c3, k0, k1)  # third KAT with c3 = 3 ...
    kat_seed = k0 | (k1 << 32)
    ctr, _, words = KATS[2]  # ... and the published third KAT itself
    got = uniform_fn(kat_seed, ctr[2], ctr[3], np.array([ctr[1]]), np.array([ctr[0]]))
    got3 = uniform_fn(kat_seed, c2, c3, np.array([c1]), np.array([c0]))
    rows, elems = np.arange(401)[:, None], np.arange(250)[None, :]
    u1, u2 = uniform_fn(seed, site, draw, rows, elems)
    base = u1[:-1]
    return {
        "kat": (float(got[0][0]), float(got[1][0])) == (_unit(words[0], words[1]), _unit(words[2], words[3])),
        "layout": (float(got3[0][0]), float(got3[1][0])) == (_unit(kat[0], kat[1]), _unit(kat[2], kat[3])),
        "uniform_u1": _uniform_ok(u1),
        "uniform_u2": _uniform_ok(u2),
        "corr_u1_u2": _corr_ok(u1, u2),
        "corr_rows": _corr_ok(u1[:-1], u1[1:]),
        "corr_elements": _corr_ok(u1[:, :-1], u1[:, 1:]),
        "corr_sites": _corr_ok(base, uniform_fn(seed, site + 1, draw, rows, elems)[0][:-1]),
        "corr_draws": _corr_ok(base, uniform_fn(seed, site, draw + 1, rows, elems)[0][:-1]),
        "corr_seeds": _corr_ok(base, uniform_fn(seed + 1, site, draw, rows, elems)[0][:-1]),
        "corr_seed_hi": _corr_ok(base, uniform_fn(seed + 2**32, site, draw, rows, elems)[0][:-1]),
    }


def _variant(rounds=10, bump=True, swap=False, keyed=True):
    """Independent uint64 reimplementation of ``uniform_pair`` with optional defects."""

    def uniform(seed, site, draw, rows, elements):
        k0, k1 = (seed & MASK, seed >> 32) if keyed else (0, 0)
        k0, k1 = np.uint64(k0), np.uint64(k1)
        c0, c1, c2, c3 = (a.astype(np.uint64) for a in np.broadcast_arrays(elements, rows, site, draw))
        if swap:
            c0, c1 = c1, c0
        m = np.uint64(MASK)
        for r in range(rounds):
            if r and bump:
                k0, k1 = (k0 + np.uint64(0x9E3779B9)) & m, (k1 + np.uint64(0xBB67AE85)) & m
            p0, p1 = np.uint64(0xD2511F53) * c0, np.uint64(0xCD9E8D57) * c2
            c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & m, (p0 >> 32) ^ c3 ^ k1, p0 & m
        scale = 2.0**-52
        u1 = ((c0 >> 6).astype(float) * 2.0**26 + (c1 >> 6) + 0.5) * scale
        u2 = ((c2 >> 6).astype(float) * 2.0**26 + (c3 >> 6) + 0.5) * scale
        return u1, u2

    return uniform


def test_uniform_stream_passes_all_checks():
    checks = stream_checks(rng.uniform_pair)
    assert all(checks.values()), [k for k, ok in checks.items() if not ok]


def test_independent_reimplementation_agrees():
    rows, elems = np.arange(30)[:, None], np.arange(17)[None, :]
    for seed in (0, 5, 2**64 - 1):
        got = rng.uniform_pair(seed, 3, 9, rows, elems)
        want = _variant()(seed, 3, 9, rows, elems)
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("defect", "caught_by"),
    [
        ({"bump": False}, {"kat", "layout"}),
        ({"swap": True}, {"kat", "layout"}),
        ({"keyed": False}, {"kat", "layout", "corr_seeds", "corr_seed_hi"}),
        ({"rounds": 1}, {"kat", "layout", "corr_rows", "corr_seeds"}),
    ],
)
def test_broken_variants_are_caught(defect, caught_by):
    checks = stream_checks(_variant(**defect))
    failed = {k for k, ok in checks.items() if not ok}
    assert caught_by <= failed


# --- Samplers: layout, distribution, determinism, chunking --------------------


def test_sampler_layout_follows_counter_convention():
    gen = np.random.default_rng(0)
    logits = gen.normal(size=(7, 2, 3))
    clogits = gen.normal(size=(7, 2, 3, 4))
    seed, site, draw, off = 42, 5, 1, 10
    rows, elems = np.arange(off, off + 7)[:, None], np.arange(6)[None, :]
    u1, u2 = rng.uniform_pair(seed, site, draw, rows, elems)
    b = rng.bernoulli(logits, seed, site, draw, off)
    np.testing.assert_array_equal(b, (u1 < rng.sigmoid(logits.reshape(7, 6))).reshape(7, 2, 3))
    z = rng.normal((7, 2, 3), seed, site, draw, off)
    np.testing.assert_array_equal(z.reshape(7, 6), np.sqrt(-2 * np.log(u1)) * np.cos(2 * np.pi * u2))
    c = rng.categorical(clogits, seed, site, draw, off)
    k0, k1 = rng.seed_key(seed)
    for i in range(7):
        for e in range(6):
            u = rng.uniform_pair_scalar(k0, k1, site, draw, off + i, e)[0]
            assert c.reshape(7, 6)[i, e] == rng.categorical_pick(clogits.reshape(7, 6, 4)[i, e], u)


def test_bernoulli_frequencies_match_sigmoid():
    logits = np.array([-4.0, -2.0, -0.5, 0.0, 0.3, 1.0, 3.0])
    batch = 20000
    x = rng.bernoulli(np.broadcast_to(logits, (batch, 7)), seed=3, site=1, draw=0)
    assert x.dtype == np.float64 and set(np.unique(x)) <= {0.0, 1.0}
    p = 1 / (1 + np.exp(-logits))
    assert np.all(np.abs(x.mean(axis=0) - p) < 5 * np.sqrt(p * (1 - p) / batch))


def test_categorical_frequencies_match_softmax():
    logits = np.array([[0.0, 1.0, -1.0, 2.0, 0.5], [3.0, -np.inf, 0.0, 0.0, -2.0]])
    batch = 30000
    x = rng.categorical(np.broadcast_to(logits, (batch, 2, 5)), seed=8, site=2, draw=0)
    assert x.dtype == np.int64 and x.shape == (batch, 2)
    for e in range(2):
        p = np.exp(logits[e] - logits[e].max())
        p /= p.sum()
        counts = np.bincount(x[:, e], minlength=5)
        live = p > 0
        assert np.all(counts[~live] == 0)
        assert stats.chisquare(counts[live], p[live] * batch).pvalue > 1e-3


def test_normal_moments_and_ks():
    z = rng.normal((20000, 5), seed=77, site=0, draw=0).ravel()
    n = z.size
    assert abs(z.mean()) < 5 / math.sqrt(n)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / n)
    assert stats.kstest(z, "norm").pvalue > 1e-3


def _samplers(offset, batch, logits, clogits):
    sl = slice(offset, offset + batch)
    args = (123, 4, 2, offset)
    return (
        rng.bernoulli(logits[sl], *args),
        rng.categorical(clogits[sl], *args),
        rng.normal((batch, 3), *args),
        rng.uniform_pair(123, 4, 2, np.arange(offset, offset + batch)[:, None], np.arange(3)),
    )


def test_determinism_and_row_chunking():
    gen = np.random.default_rng(1)
    logits, clogits = gen.normal(size=(100, 3)), gen.normal(size=(100, 3, 4))
    whole = _samplers(0, 100, logits, clogits)
    again = _samplers(0, 100, logits, clogits)
    first, second = _samplers(0, 50, logits, clogits), _samplers(50, 50, logits, clogits)
    for w, a, f, s in zip(whole[:3], again[:3], first[:3], second[:3]):
        np.testing.assert_array_equal(w, a)
        np.testing.assert_array_equal(w, np.concatenate([f, s]))
    for w, f, s in zip(whole[3], first[3], second[3]):
        np.testing.assert_array_equal(w, np.concatenate([f, s]))


def test_different_sites_draws_seeds_give_different_samples():
    base = rng.normal((10, 10), 1, 0, 0)
    for args in [(2, 0, 0), (1, 1, 0), (1, 0, 1)]:
        assert not np.array_equal(base, rng.normal((10, 10), *args))


def test_extreme_logits_are_finite_and_silent():
    logits = np.array([1e4, -1e4, np.inf, -np.inf, 0.0])
    clogits = np.array([[1e4, -1e4, 0.0], [-np.inf, 0.0, -np.inf], [-1e4, 1e4, -np.inf]])
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        b = rng.bernoulli(np.broadcast_to(logits, (1000, 5)), 9, 0, 0)
        c = rng.categorical(np.broadcast_to(clogits, (1000, 3, 3)), 9, 1, 0)
        scal = [rng.bernoulli_scalar(v, 0.5) for v in logits]
    assert np.all(np.isfinite(b)) and set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_array_equal(b[:, :4], np.broadcast_to([1.0, 0.0, 1.0, 0.0], (1000, 4)))
    assert scal[:4] == [1.0, 0.0, 1.0, 0.0]
    np.testing.assert_array_equal(c, np.broadcast_to([0, 1, 1], (1000, 3)))


def test_samplers_accept_u_equal_one():
    # u1 never reaches 1.0, but the scalar samplers stay well defined there.
    assert rng.normal_scalar(1.0, 0.3) == 0.0
    assert rng.bernoulli_scalar(0.0, 1.0) == 0.0
    assert rng.categorical_pick(np.array([0.0, 1.0, 2.0]), 1.0) == 2


def test_scalar_source_is_self_contained():
    ns = {}
    exec(rng.scalar_source(), ns)  # noqa: S102 -- the module's own source
    assert ns["philox4x32_10"](*KATS[2][0], *KATS[2][1]) == KATS[2][2]


@pytest.mark.parametrize(
    "call",
    [
        lambda: rng.seed_key(-1),
        lambda: rng.seed_key(2**64),
        lambda: rng.uniform_pair(0, 0, 0, np.array([-1]), np.array([0])),
        lambda: rng.uniform_pair(0, 2**32, 0, np.array([0]), np.array([0])),
        lambda: rng.bernoulli(np.zeros((3, 2)), 0, 0, 0, row_offset=2**32 - 2),
        lambda: rng.categorical(np.zeros(3), 0, 0, 0),
    ],
)
def test_invalid_arguments_are_rejected(call):
    with pytest.raises(ValueError):
        call()


# --- the numba runtime's uint64 Philox (one exact product per multiply) -------


def test_numba_runtime_philox_is_the_portable_one():
    """numba_runtime replaces rng's 16-bit-split multiply by a uint64 product: same words, KATs included."""
    from scg.backends.numba_cpu import runtime_module
    rt = runtime_module("float64")
    rows = _random_counters(300) + [ctr + key for ctr, key, _ in KATS]
    fast = [tuple(int(w) for w in rt.philox4x32_10(*r)) for r in rows]
    assert fast == [rng.philox4x32_10(*r) for r in rows]
    for ctr, key, expected in KATS:
        assert tuple(int(w) for w in rt.philox4x32_10(*ctr, *key)) == expected


def test_the_runtime_philox_comparison_can_fail():
    """The broken variant: a one-bit change in a round constant gives other words (the test above would see it)."""
    ctr, key, expected = KATS[0]
    saved = rng.PHILOX_M0
    try:
        rng.PHILOX_M0 = saved ^ 2
        assert rng.philox4x32_10(*ctr, *key) != expected
    finally:
        rng.PHILOX_M0 = saved
