"""Issue 7.3: on random valid graphs (tests/fuzz/random_graphs.py) the numba backend equals the NumPy
spec: discrete samples bit for bit, costs and gradients to 1e-9. Estimator-vs-exact fuzzing lives in
tests/fuzz/test_fuzz_estimators.py.

CI profile: a few derandomised graphs (each compiles fresh kernels). Long profile (>= 500 graphs):
``SCG_FUZZ_LONG=1 python -m pytest tests/hardening/test_fuzz_backends.py tests/fuzz -q``.
"""

import os
import warnings

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scg
from tests.fuzz.random_graphs import build, graph_specs

LONG = os.environ.get("SCG_FUZZ_LONG") == "1"
PROFILE = settings(max_examples=500 if LONG else 6, deadline=None, derandomize=not LONG,
                   suppress_health_check=list(HealthCheck))


@PROFILE
@given(graph_specs(), st.sampled_from(["reinforce", "scg", "muprop", "hnca"]), st.sampled_from([None, "loo"]))
def test_numba_equals_numpy_on_random_graphs(spec, estimator, baseline):
    g, params, inputs = build(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        ref = scg.compile(g, estimator, backend="numpy", baseline=baseline)
        fast = scg.compile(g, estimator, backend="numba", baseline=baseline)
    for seed in (1, 2):
        r1 = ref(params, inputs, seed=seed, n_samples=3)
        r2 = fast(params, inputs, seed=seed, n_samples=3)
        for k, v in r1.samples.items():
            assert np.array_equal(r2.samples[k], v), f"samples {k} differ on {spec}"
        for k, v in r1.grads.items():
            scale = max(1.0, float(np.abs(v).max()))
            np.testing.assert_allclose(r2.grads[k], v, rtol=1e-9, atol=1e-9 * scale, err_msg=f"{k} {spec}")
        np.testing.assert_allclose(r2.cost, r1.cost, rtol=1e-9, atol=1e-12)
