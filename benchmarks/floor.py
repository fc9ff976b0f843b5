"""The machine floor of one estimator step: operation counts / this machine's best rates.

Counts, for the bandit network with hidden widths ``n_1..n_L`` (L = 3), ``K = 10``
actions, ``D = 784`` inputs and ``B`` rows:

* **transcendentals of an HNCA step** (softplus / exp / log evaluations)::

      T = B * [ sum_{k<L} n_k n_{k+1}     one new child softplus per (row, parent, child):
                                          of u_i's two values one is the realised one, whose
                                          child log-likelihood is already known
              + n_L (K + 1)               categorical child: K exps + 1 log per (row, parent)
              + 3 sum_k n_k               sampling sigmoid, realised-child softplus, qhat sigmoid
              + 2K + 2 ]                  action softmax, sample, f-HNCA local sum

* **matmul FLOPs of an HNCA step**::

      F = 2B [ 2 (D n_1 + sum_{k<L} n_k n_{k+1} + n_L K)   forward logits + weight gradients
               + sum_{k<L} n_k n_{k+1} ]                    linear part of the counterfactuals
                                                            (sum_j c_j W_ij, a matmul)

* REINFORCE and MuProp need no counterfactuals: ``T = B (2 sum_k n_k + 2K)`` (REINFORCE)
  and about twice that for MuProp; MuProp's FLOPs add the mean-field pass and its
  backward (``~2x`` the forward matmuls).

Rates, measured here: the best vectorised float32 softplus throughput (a Numba
``prange`` loop with a pure-arithmetic softplus, abs. error < 2e-6, both storing the
result and summing it, and in the fused HNCA counterfactual form ``softplus(l_j + W_ij d_i)``
summed over j; also numpy and, when installed, torch for reference) and the best
float32 sgemm rate of numpy's BLAS. ``floor = T / softplus_rate + F / sgemm_rate``.
"""

from __future__ import annotations

import math
import time

import numpy as np

N_IN, K = 784, 10


def counts(estimator: str, batch: int, widths=(200, 200, 200), n_in: int = N_IN, k: int = K) -> dict:
    ns = list(widths)
    pairs = sum(ns[i] * ns[i + 1] for i in range(len(ns) - 1))
    fwd = n_in * ns[0] + pairs + ns[-1] * k
    units = sum(ns)
    if estimator == "hnca":
        t = batch * (pairs + ns[-1] * (k + 1) + 3 * units + 2 * k + 2)
        f = 2 * batch * (2 * fwd + pairs)
    elif estimator == "reinforce":
        t = batch * (2 * units + 2 * k)
        f = 2 * batch * 2 * fwd
    elif estimator == "muprop":
        t = batch * (4 * units + 3 * k)
        f = 2 * batch * (2 * fwd + 2 * (fwd - n_in * ns[0]))
    else:
        raise ValueError(estimator)
    return {"transcendentals": int(t), "matmul_flops": int(f)}


def floor_seconds(c: dict, rates: dict) -> float:
    return c["transcendentals"] / rates["softplus_per_s"] + c["matmul_flops"] / rates["sgemm_flops_per_s"]


# -- rates ---------------------------------------------------------------------------------
def _best(fn, repeats: int = 7) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def sgemm_rate(quick: bool = False) -> dict:
    """Best float32 GFLOP/s of numpy's matmul over a few shapes (including the step's own)."""
    rng = np.random.default_rng(0)
    shapes = [(1024, 784, 200), (1024, 1024, 1024)] if quick else \
        [(50, 784, 200), (1024, 784, 200), (1024, 1024, 1024), (2048, 2048, 2048)]
    out = {}
    for m, kk, n in shapes:
        a = rng.random((m, kk), dtype=np.float32)
        b = rng.random((kk, n), dtype=np.float32)
        t = _best(lambda a=a, b=b: a @ b, 3 if m * kk * n > 1e9 else 10)
        out[f"{m}x{kk}x{n}"] = 2.0 * m * kk * n / t
    return out


def _numba_kernels():
    import numba as nb

    @nb.njit(inline="always", fastmath=True)
    def softplus32(x):
        # softplus(x) = max(x, 0) + log1p(exp(-|x|)), all arithmetic (vectorisable):
        # e = exp(-t), t = min(|x|, 16), by a degree-6 Taylor polynomial of exp(-t/64)
        # squared 6 times; log1p(e) = 2 atanh(s), s = e / (2 + e) in [0, 1/3], odd series.
        t = min(abs(x), np.float32(16.0))
        r = -t * np.float32(1.0 / 64.0)
        p = np.float32(1.0) + r * (np.float32(1.0) + r * (np.float32(0.5) + r * (
            np.float32(1.0 / 6.0) + r * (np.float32(1.0 / 24.0) + r * (np.float32(1.0 / 120.0)
                                                                   + r * np.float32(1.0 / 720.0))))))
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        p = p * p
        e = p * p
        s = e / (np.float32(2.0) + e)
        s2 = s * s
        lg = np.float32(2.0) * s * (np.float32(1.0) + s2 * (np.float32(1.0 / 3.0) + s2 * (
            np.float32(1.0 / 5.0) + s2 * (np.float32(1.0 / 7.0) + s2 * (np.float32(1.0 / 9.0) + s2 * (
                np.float32(1.0 / 11.0) + s2 * np.float32(1.0 / 13.0)))))))
        return max(x, np.float32(0.0)) + lg

    @nb.njit(parallel=True, fastmath=True)
    def store(x, out):
        for i in nb.prange(x.shape[0]):
            out[i] = softplus32(x[i])

    @nb.njit(parallel=True, fastmath=True)
    def total(x):
        s = np.float32(0.0)
        for i in nb.prange(x.shape[0]):
            s += softplus32(x[i])
        return s

    @nb.njit(parallel=True, fastmath=True)
    def counterfactual(logits, w, d, out):
        # out[b, i] = sum_j softplus(logits[b, j] + w[i, j] * d[b, i]): HNCA's inner loop
        for b in nb.prange(logits.shape[0]):
            for i in range(w.shape[0]):
                di = d[b, i]
                s = np.float32(0.0)
                for j in range(w.shape[1]):
                    s += softplus32(logits[b, j] + w[i, j] * di)
                out[b, i] = s

    return store, total, counterfactual


def softplus_rates(quick: bool = False) -> dict:
    """Softplus evaluations per second, float32, by several implementations."""
    n = 2_000_000 if quick else 10_000_000
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(n) * 4).astype(np.float32)
    out = np.empty_like(x)
    rates, notes = {}, {}
    t = _best(lambda: np.logaddexp(np.float32(0.0), x, out=out), 3)
    rates["numpy_logaddexp"] = n / t
    t = _best(lambda: np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))), 3)
    rates["numpy_max_log1p_exp"] = n / t
    try:
        store, total, counterfactual = _numba_kernels()
        exact = np.logaddexp(0.0, x.astype(np.float64))
        store(x, out)
        notes["numba_poly_max_abs_error"] = float(np.abs(out - exact).max())
        rates["numba_poly_store"] = n / _best(lambda: store(x, out))
        rates["numba_poly_sum"] = n / _best(lambda: total(x))
        b, m = (50, 200)
        logits = (rng.standard_normal((b, m)) * 2).astype(np.float32)
        w = (rng.standard_normal((m, m)) * 0.1).astype(np.float32)
        d = np.where(rng.random((b, m)) < 0.5, 1.0, -1.0).astype(np.float32)
        cf = np.empty((b, m), np.float32)
        rates["numba_poly_hnca_counterfactual"] = b * m * m / _best(lambda: counterfactual(logits, w, d, cf), 20)
    except ImportError as e:
        notes["numba"] = f"not available: {e}"
    try:
        import torch
        import torch.nn.functional as F

        xt = torch.from_numpy(x)
        rates["torch_softplus"] = n / _best(lambda: F.softplus(xt), 5)
        notes["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    best_key = max(rates, key=rates.get)
    return {"per_s": rates, "best": best_key, "best_per_s": rates[best_key], "n": n, "notes": notes}


def measure(quick: bool = False) -> dict:
    gemm = sgemm_rate(quick)  # first: Numba's parallel workers, once started, can spin and slow BLAS
    sp = softplus_rates(quick)
    best_gemm = max(gemm.values())
    # a store-based rate is what a kernel that writes its counterfactuals gets; the fused
    # (summing) form is what a fused HNCA kernel gets: both bracket the floor.
    store_rate = sp["per_s"].get("numba_poly_store", sp["best_per_s"])
    return {
        "softplus": sp,
        "sgemm_flops_per_s": gemm,
        "rates": {"softplus_per_s": sp["best_per_s"], "sgemm_flops_per_s": best_gemm},
        "rates_store": {"softplus_per_s": store_rate, "sgemm_flops_per_s": best_gemm},
    }


if __name__ == "__main__":
    import json

    m = measure()
    print(json.dumps(m, indent=1))
    for est in ("reinforce", "hnca", "muprop"):
        for b in (50, 1024):
            c = counts(est, b)
            print(est, b, c, f"floor {floor_seconds(c, m['rates']) * 1e3:.2f} ms "
                  f"(store-rate {floor_seconds(c, m['rates_store']) * 1e3:.2f} ms)")
