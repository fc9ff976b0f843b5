"""Counter-based random numbers: every uniform is a pure function of its coordinates.

The generator is Philox-4x32-10 from Salmon, Moraes, Dror and Shaw, "Parallel
random numbers: as easy as 1, 2, 3" (SC '11, 2011).  Philox is a keyed bijection
on 128-bit counters, so a random number needs no state, only an address:

    counter = (c0, c1, c2, c3) = (element, row, site, draw)
    key     = (k0, k1)         = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)

* ``element`` is the flat C-order index of a value inside one batch row,
* ``row`` is the global batch row (``row_offset + b``),
* ``site`` numbers the random site (sample statement) in the graph,
* ``draw`` tells apart repeated draws at the same site (e.g. several samples).

Because nothing depends on *which* thread or *which* chunk computes a value,
a kernel may split the batch over any number of threads, GPU blocks or row
chunks and still produce the very same bits as the NumPy reference below.

Each Philox call yields four 32-bit words, turned into two float64 uniforms
with 52 random bits each::

    u = ((wa >> 6) * 2**26 + (wb >> 6) + 0.5) / 2**52

Every step is exact in float64 (``n + 0.5`` needs 53 bits), so ``u`` lies in
the open interval [2**-53, 1 - 2**-53]: ``log(u)`` is always finite and
``u < p`` is always true for ``p == 1`` and false for ``p == 0``.

The module has two layers that must agree:

* vectorised NumPy functions (``philox4x32_10_np``, ``uniform_pair``,
  ``bernoulli``, ``categorical``, ``normal``): the reference every backend
  must reproduce;
* scalar functions (``philox4x32_10``, ``uniform_pair_scalar``,
  ``bernoulli_scalar``, ``categorical_pick``, ``normal_scalar``) that run as
  plain Python and compile under ``numba.njit`` / ``numba.cuda.jit``.  They
  call each other by global name, so use ``compile_scalars`` (or emit
  ``scalar_source()`` into a generated module) to get a jitted set.

Integer work (Philox and the uniform conversion) is bit-identical everywhere.
The samplers use the same float64 formulas in both layers, but ``exp``/``log``
come from different libraries (NumPy's SIMD loops, libm, CUDA libdevice) that
may differ in the last ulp, so normal samples agree to a few ulp and
Bernoulli/categorical samples differ only if ``u`` lands within an ulp of a
threshold.
"""

import inspect
import math
from types import SimpleNamespace

import numpy as np

# Philox-4x32 round multipliers and Weyl key increments (Salmon et al. 2011).
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
PHILOX_ROUNDS = 10

MASK32 = 0xFFFFFFFF
TWO_POW_26 = 67108864.0
TWO_POW_52 = 4503599627370496.0

# ---------------------------------------------------------------------------
# Scalar layer: plain integer/float arithmetic only, so the same source runs
# in CPython, numba.njit and numba.cuda.jit(device=True).  Arguments are
# Python ints or int64/uint32 (not uint64: Numba turns uint64 mixed with
# int64 into float64).
# ---------------------------------------------------------------------------


def _mulhilo32(a, b):
    """Return (hi, lo) 32-bit halves of a * b for a, b < 2**32.

    b is split into 16-bit halves so every partial product stays below 2**48:
    the full 64-bit product would overflow Numba's signed int64.
    """
    p_lo = a * (b & 0xFFFF)
    p_hi = a * (b >> 16)
    mid = p_lo + ((p_hi & 0xFFFF) << 16)
    return (p_hi >> 16) + (mid >> 32), mid & 0xFFFFFFFF


def philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Philox-4x32-10 block function on one counter; returns 4 words (uint32 values).

    Salmon et al. 2011: each round multiplies c0 and c2 by fixed odd constants,
    mixes the high halves with c1, c3 and the round key, and the key is
    bumped by a Weyl increment between rounds.
    """
    c0 &= 0xFFFFFFFF
    c1 &= 0xFFFFFFFF
    c2 &= 0xFFFFFFFF
    c3 &= 0xFFFFFFFF
    k0 &= 0xFFFFFFFF
    k1 &= 0xFFFFFFFF
    for r in range(PHILOX_ROUNDS):
        if r > 0:
            k0 = (k0 + PHILOX_W0) & 0xFFFFFFFF
            k1 = (k1 + PHILOX_W1) & 0xFFFFFFFF
        hi0, lo0 = _mulhilo32(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
    return c0, c1, c2, c3


def uniform_pair_scalar(k0, k1, site, draw, row, element):
    """Two uniforms in (0, 1) for one (row, element); twin of ``uniform_pair``."""
    w0, w1, w2, w3 = philox4x32_10(element, row, site, draw, k0, k1)
    u1 = ((w0 >> 6) * 67108864 + (w1 >> 6) + 0.5) / 4503599627370496.0
    u2 = ((w2 >> 6) * 67108864 + (w3 >> 6) + 0.5) / 4503599627370496.0
    return u1, u2


def sigmoid_scalar(logit):
    """Stable logistic: exp(-|l|) never overflows; twin of ``sigmoid``."""
    e = math.exp(-abs(logit))
    if logit >= 0.0:
        return 1.0 / (1.0 + e)
    return e / (1.0 + e)


def bernoulli_scalar(logit, u1):
    """1.0 with probability sigmoid(logit), decided by the uniform u1."""
    return 1.0 if u1 < sigmoid_scalar(logit) else 0.0


def categorical_pick(logits, u1):
    """Index drawn from softmax(logits) (1-D array) by inverse CDF with u1.

    Sums run strictly left to right, matching ``categorical`` (np.cumsum).
    """
    n = logits.shape[0]
    m = logits[0]
    for k in range(1, n):
        m = max(m, logits[k])
    total = 0.0
    for k in range(n):
        total += math.exp(logits[k] - m)
    target = u1 * total
    acc = 0.0
    for k in range(n):
        acc += math.exp(logits[k] - m)
        if target < acc:
            return k
    return n - 1


def normal_scalar(u1, u2):
    """Standard normal by Box-Muller (cosine branch); u1 in (0, 1) keeps log finite."""
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


SCALAR_FUNCTIONS = (
    "_mulhilo32",
    "philox4x32_10",
    "uniform_pair_scalar",
    "sigmoid_scalar",
    "bernoulli_scalar",
    "categorical_pick",
    "normal_scalar",
)
_SCALAR_CONSTANTS = ("PHILOX_M0", "PHILOX_M1", "PHILOX_W0", "PHILOX_W1")


def scalar_source():
    """Python source of the scalar layer (constants + functions), for code emitters.

    The text needs only ``import math`` and defines every name it calls.
    """
    lines = ["import math", ""]
    lines += [f"{name} = {globals()[name]:#010x}" for name in _SCALAR_CONSTANTS]
    lines.append(f"PHILOX_ROUNDS = {PHILOX_ROUNDS}")
    parts = ["\n".join(lines)]
    parts += [inspect.getsource(globals()[name]) for name in SCALAR_FUNCTIONS]
    return "\n\n".join(parts)


def compile_scalars(decorator):
    """Return a namespace with every scalar function wrapped by ``decorator``.

    Example: ``compile_scalars(numba.njit)`` or
    ``compile_scalars(numba.cuda.jit(device=True))``.  The functions are
    re-created from source in a private namespace so that their calls to
    each other resolve to the decorated versions (Numba cannot call plain
    Python functions).
    """
    ns = {}
    code = compile(scalar_source(), "<scg.backends.rng scalars>", "exec")
    exec(code, ns)  # noqa: S102 -- our own source text, nothing external
    for name in SCALAR_FUNCTIONS:
        ns[name] = decorator(ns[name])
    return SimpleNamespace(**{name.lstrip("_"): ns[name] for name in SCALAR_FUNCTIONS})


# ---------------------------------------------------------------------------
# Vectorised NumPy layer: the reference implementation.
# ---------------------------------------------------------------------------


def seed_key(seed):
    """Split a 64-bit seed into the Philox key (k0, k1)."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed & MASK32, (seed >> 32) & MASK32


def _as_u32(x, name):
    """Convert to a uint32 array, refusing values that would silently wrap."""
    a = np.asarray(x)
    if a.dtype.kind not in "iub":
        raise TypeError(f"{name} must be integer, got dtype {a.dtype}")
    if a.size and (a.min() < 0 or a.max() > MASK32):
        raise ValueError(f"{name} must be in [0, 2**32)")
    return a.astype(np.uint32)


def _mulhilo32_np(m, c):
    """(hi, lo) of the uint32 array c times the constant m, via a uint64 product."""
    p = np.uint64(m) * c.astype(np.uint64)
    return (p >> np.uint64(32)).astype(np.uint32), p.astype(np.uint32)


def philox4x32_10_np(c0, c1, c2, c3, k0, k1):
    """Vectorised Philox-4x32-10 over broadcasting uint32 arrays; 4 uint32 arrays."""
    c0, c1, c2, c3 = np.broadcast_arrays(_as_u32(c0, "c0"), _as_u32(c1, "c1"), _as_u32(c2, "c2"), _as_u32(c3, "c3"))
    k0, k1 = _as_u32(k0, "k0"), _as_u32(k1, "k1")
    for r in range(PHILOX_ROUNDS):
        # Round r uses key + r * increment (mod 2**32); uint64 avoids overflow warnings.
        rk0 = ((k0.astype(np.uint64) + r * PHILOX_W0) & MASK32).astype(np.uint32)
        rk1 = ((k1.astype(np.uint64) + r * PHILOX_W1) & MASK32).astype(np.uint32)
        hi0, lo0 = _mulhilo32_np(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32_np(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ rk0, lo1, hi0 ^ c3 ^ rk1, lo0
    return c0, c1, c2, c3


def _words_to_unit(wa, wb):
    """52-bit float in (0, 1) from two words; every step is exact, as in the scalar path."""
    hi = (wa >> np.uint32(6)).astype(np.float64)
    lo = (wb >> np.uint32(6)).astype(np.float64)
    return (hi * TWO_POW_26 + lo + 0.5) / TWO_POW_52


def uniform_pair(seed, site, draw, rows, elements):
    """Two float64 uniform arrays for broadcasting ``rows`` x ``elements``.

    Typical call: ``uniform_pair(seed, site, draw, rows[:, None], elements[None, :])``.
    """
    k0, k1 = seed_key(seed)
    w0, w1, w2, w3 = philox4x32_10_np(elements, rows, site, draw, k0, k1)
    return _words_to_unit(w0, w1), _words_to_unit(w2, w3)


def _row_uniforms(batch, n_elements, seed, site, draw, row_offset):
    """(u1, u2), each of shape (batch, n_elements), for rows row_offset.. .

    ``draw`` is an int, or an int array of shape (batch,) giving each row's draw;
    ``row_offset`` is an int, or an int array of shape (batch,) of row indices.
    One vectorised Philox call serves every draw of a multi-draw batch.
    """
    if np.ndim(row_offset):
        rows = np.asarray(row_offset, dtype=np.int64)
    else:
        if row_offset < 0 or row_offset + batch > 2**32:
            raise ValueError("rows must lie in [0, 2**32)")
        rows = np.arange(batch, dtype=np.int64) + row_offset
    draw = np.asarray(draw, dtype=np.int64)
    if draw.ndim:
        draw = draw[:, None]
    elements = np.arange(n_elements, dtype=np.int64)
    return uniform_pair(seed, site, draw, rows[:, None], elements[None, :])


def sigmoid(logits):
    """Stable logistic with the same arithmetic as ``sigmoid_scalar``."""
    logits = np.asarray(logits, dtype=np.float64)
    with np.errstate(under="ignore"):  # exp(-large) -> 0 is the intended result
        e = np.exp(-np.abs(logits))  # exp(-l) for l >= 0, exp(l) for l < 0
    return np.where(logits >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def bernoulli(logits, seed, site, draw, row_offset=0):
    """Bernoulli(sigmoid(logits)) as float64 0/1; ``logits`` has shape (B, *shape)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim < 1:
        raise ValueError("logits need a leading batch axis")
    batch, shape = logits.shape[0], logits.shape[1:]
    u1, _ = _row_uniforms(batch, math.prod(shape), seed, site, draw, row_offset)
    p = sigmoid(logits).reshape(batch, -1)
    return np.where(u1 < p, 1.0, 0.0).reshape(logits.shape)


def categorical(logits, seed, site, draw, row_offset=0):
    """Draw from softmax over the last axis of ``logits`` (B, *shape, K).

    Returns int64 indices of shape (B, *shape); one u1 per (row, element).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim < 2 or logits.shape[-1] == 0:
        raise ValueError("logits need shape (B, *shape, K) with K >= 1")
    batch, shape, k = logits.shape[0], logits.shape[1:-1], logits.shape[-1]
    u1, _ = _row_uniforms(batch, math.prod(shape), seed, site, draw, row_offset)
    flat = logits.reshape(batch, -1, k)
    # np.cumsum adds strictly left to right, matching the scalar loop; np.sum would not.
    with np.errstate(under="ignore"):  # exp(-large) -> 0 is the intended result
        cum = np.cumsum(np.exp(flat - flat.max(axis=-1, keepdims=True)), axis=-1)
    hit = (u1 * cum[..., -1])[..., None] < cum
    idx = np.where(hit.any(axis=-1), hit.argmax(axis=-1), k - 1)
    return idx.astype(np.int64).reshape((batch, *shape))


def normal(shape_rows, seed, site, draw, row_offset=0):
    """Standard normal noise, shape ``shape_rows`` = (B, *shape); Box-Muller (cos)."""
    shape_rows = tuple(int(s) for s in shape_rows)
    if not shape_rows:
        raise ValueError("shape_rows needs a leading batch axis")
    batch, shape = shape_rows[0], shape_rows[1:]
    u1, u2 = _row_uniforms(batch, math.prod(shape), seed, site, draw, row_offset)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return z.reshape(shape_rows)
