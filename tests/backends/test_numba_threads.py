"""Several Python threads calling one numba estimator (issue 15).

Numba's default ``workqueue`` threading layer aborts the whole process (SIGABRT) when two
threads enter parallel regions at once, so every case runs in a subprocess: a crash fails
the test instead of killing pytest. Results must equal serial calls bit for bit (see the note on OpenBLAS in the script), and the
BLAS thread limit scg sets during a call must be undone afterwards.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import sys, threading
    import numpy as np
    sys.path.insert(0, {here!r})
    from numba_graphs import bandit, data
    from threadpoolctl import threadpool_info, threadpool_limits
    import scg

    def blas():
        return sorted(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")

    threadpool_limits(2, user_api="blas")
    g = bandit(layers=2, d_in=32, hidden=64, k=4)   # per-row work large enough for parallel kernels
    est = scg.compile(g, estimator="{estimator}", backend="numba")
    assert est.program.plan and any(k.parallel for k in est.program.plan.kernels), est.plan
    params, inputs = data(g, rows=300)
    before = blas()
    main = [est(params, inputs, seed=s) for s in range(6)]
    # the reference: the same calls one after the other in one worker thread. OpenBLAS rounds a
    # product differently in the main thread and in other threads (measured: 1e-17 on the first
    # matmul, serial calls, no concurrency), so bit equality is asked against worker-thread calls
    serial = []
    t = threading.Thread(target=lambda: serial.extend(est(params, inputs, seed=s) for s in range(6)))
    t.start()
    t.join()
    for m, ref in zip(main, serial):
        assert np.array_equal(m.samples["a"], ref.samples["a"])
        for k in ref.grads:
            np.testing.assert_allclose(m.grads[k], ref.grads[k], rtol=1e-12, atol=1e-15)
    got, errors = {{}}, []

    def work(i):
        try:
            for s in range(6):
                got[i, s] = est(params, inputs, seed=s)
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for (i, s), out in got.items():
        ref = serial[s]
        assert out.cost == ref.cost
        for k in ref.grads:
            assert np.array_equal(out.grads[k], ref.grads[k]), (i, s, k)
        for k in ref.samples:
            assert np.array_equal(out.samples[k], ref.samples[k]), (i, s, k)
    assert blas() == before, (before, blas())
    print("THREADS OK", len(got), before)
""")


def run_script(source: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NUMBA_THREADING_LAYER", None)  # scg's default layer: workqueue, the one that is not thread-safe
    return subprocess.run([sys.executable, "-c", source], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_concurrent_calls_equal_serial_calls_and_restore_blas_threads():
    proc = run_script(SCRIPT.format(here=str(Path(__file__).parent), estimator="hnca"))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"rc={proc.returncode}\n{out[-4000:]}"
    assert "THREADS OK 24 [2" in out, out[-2000:]


def test_the_harness_reports_a_crash():
    """The subprocess harness above sees an abort (what concurrent workqueue access did before the fix)."""
    proc = run_script("import os; os.abort()")
    assert proc.returncode != 0
