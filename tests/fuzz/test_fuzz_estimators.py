"""Fuzzing: on random small graphs, every estimator's mean matches scg.exact.

CI profile: a bounded number of derandomised examples. Long profile (>= 500 graphs):
``SCG_FUZZ_LONG=1 python -m pytest tests/fuzz -q``.
"""

import os
import warnings

from hypothesis import HealthCheck, given, settings

import scg
from tests.estimators.oracle import is_unbiased
from tests.fuzz.random_graphs import build, graph_specs

LONG = os.environ.get("SCG_FUZZ_LONG") == "1"
PROFILE = settings(max_examples=500 if LONG else 40, deadline=None, derandomize=not LONG,
                   suppress_health_check=list(HealthCheck))


@PROFILE
@given(graph_specs())
def test_random_graphs_every_estimator_unbiased(spec):
    g, params, inputs = build(spec)
    ex = scg.exact(g, params, inputs)
    for estimator in ("reinforce", "muprop", "hnca"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scg.ScgWarning)
            est = scg.compile(g, estimator, baseline="loo")
        ok, worst = is_unbiased(est, ex, params, inputs, threshold=5.0, alpha=1e-4, n_calls=40, n_samples=200)
        assert ok, f"{estimator}: max |z| = {worst:.2f} on {spec}\n{est.ir}"
