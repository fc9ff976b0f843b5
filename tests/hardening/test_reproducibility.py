"""Issue 7.4: same seed => identical samples across backends, Numba thread counts (1, 2), processes,
and batch chunking (a row's draws depend on (seed, site, draw, row), not on the rest of the batch)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scg
from tests.estimators.graphs import bandit

_CHILD = textwrap.dedent("""
    import json, sys, numpy as np, numba
    sys.path.insert(0, {root!r})
    import scg
    from tests.estimators.graphs import bandit
    g, params, _ = bandit()
    x = np.random.default_rng(0).normal(size=(257, 3)); y = np.arange(257) % 4
    numba.set_num_threads({threads})
    out = {{}}
    for backend in ("numpy", "numba"):
        est = scg.compile(g, "hnca", backend=backend, baseline="loo")
        r = est(params, {{"x": x, "y": y}}, seed=11, n_samples=2)
        out[backend] = {{"h1": r.samples["h1"].tolist(), "a": r.samples["a"].tolist(),
                        "W1": r.grads["W1"].tolist(), "threads": numba.get_num_threads()}}
    print(json.dumps(out))
""")


def _child(threads):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "NUMBA_NUM_THREADS": "2"}
    res = subprocess.run([sys.executable, "-c", _CHILD.format(root=root, threads=threads)], capture_output=True,
                         text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_same_samples_across_backends_threads_and_processes():
    one, two = _child(1), _child(2)
    assert one["numba"]["threads"] == 1 and two["numba"]["threads"] == 2
    for run in (one, two):
        assert run["numba"]["h1"] == run["numpy"]["h1"] and run["numba"]["a"] == run["numpy"]["a"]
        np.testing.assert_allclose(run["numba"]["W1"], run["numpy"]["W1"], rtol=1e-10)
    assert one["numba"]["h1"] == two["numba"]["h1"] and one["numba"]["a"] == two["numba"]["a"]
    assert one["numba"]["W1"] == two["numba"]["W1"]  # bit for bit across thread counts
    assert one["numpy"] == {**two["numpy"], "threads": one["numpy"]["threads"]}  # and across processes


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_samples_do_not_depend_on_batch_size_or_chunking(backend):
    g, params, _ = bandit()
    gen = np.random.default_rng(3)
    x, y = gen.normal(size=(40, 3)), gen.integers(0, 4, size=40)
    est = scg.compile(g, "reinforce", backend=backend)
    full = est(params, {"x": x, "y": y}, seed=5, n_samples=3)
    for rows in (1, 7, 39):
        part = est(params, {"x": x[:rows], "y": y[:rows]}, seed=5, n_samples=3)
        for k, v in part.samples.items():
            assert np.array_equal(v, full.samples[k][:, :rows]), (k, rows)
    again = est(params, {"x": x, "y": y}, seed=5, n_samples=3)
    assert all(np.array_equal(again.samples[k], v) for k, v in full.samples.items())
    other = est(params, {"x": x, "y": y}, seed=6, n_samples=3)
    assert not np.array_equal(other.samples["h1"], full.samples["h1"])
