"""Issue 7.6: many small training steps keep resident memory flat (no growth from kernel caches,
recompiles or retained arrays), and compiling the same graph twice reuses the kernels.

CI: 2,000 steps. Full run (1e5 steps): ``SCG_LONG=1 python -m pytest tests/hardening/test_long_run.py -q``
or ``python benchmarks/long_run.py`` (prints RSS over time).
"""

import gc
import os
import resource

import numpy as np
import pytest

import scg
from scg.backends import kernel_cache
from tests.estimators.graphs import bandit

LONG = os.environ.get("SCG_LONG") == "1"
STEPS = 100_000 if LONG else 2_000


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("backend", ["numba"] + (["numpy"] if LONG else []))
def test_resident_memory_is_flat_over_many_steps(backend):
    g, params, inputs = bandit()
    est = scg.compile(g, "hnca", backend=backend, baseline="ema")
    params = {k: v.copy() for k, v in params.items()}
    warm = max(200, STEPS // 10)
    samples = []
    for step in range(STEPS):
        out = est(params, inputs, seed=step, n_samples=2)
        for k in params:
            params[k] -= 0.01 * out.grads[k]
        if step == warm:
            gc.collect()
            base = rss_mb()
        if step > warm and step % (STEPS // 10) == 0:
            samples.append(rss_mb())
    gc.collect()
    end = rss_mb()
    assert all(np.isfinite(v).all() for v in params.values())
    assert len(est.program._variants) == 1 if backend == "numba" else True  # no recompiles
    bound = 8.0 if not LONG else 16.0
    assert end - base < bound, f"RSS grew {end - base:.1f} MiB over {STEPS - warm} steps: {samples}"


def test_compiling_the_same_graph_twice_reuses_kernels():
    g, params, inputs = bandit()
    first = scg.compile(g, "hnca", backend="numba")
    written = len(kernel_cache.STATS.written)
    second = scg.compile(g, "hnca", backend="numba")
    assert len(kernel_cache.STATS.written) == written  # nothing new generated or written
    assert second.program._base.module is first.program._base.module  # the very same loaded kernels
    a, b = first(params, inputs, seed=1), second(params, inputs, seed=1)
    assert all(np.array_equal(a.grads[k], b.grads[k]) for k in a.grads)
