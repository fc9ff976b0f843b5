"""Numba backend: inspection, errors, safety of generated code, thread-count independence."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from numba_graphs import bandit, data

import scg
from scg.backends.numba_cpu import NumbaProgram
from scg.backends.numpy_ref import evaluate
from scg.backends.registry import get_backend
from scg.errors import BackendError, InputError
from scg.ir.ops import Op


def test_registered_and_inspectable():
    assert get_backend("numba") is not None
    est = scg.compile(bandit(), estimator="hnca", backend="numba")
    plan = str(est.plan)
    assert plan.startswith("plan bandit.hnca") and "hnca_affine_delta" in plan and "BLAS" in plan
    assert "@njit" in est.source and "def k" in est.source
    kernels = [k.name for k in est.plan.kernels if k.kind == "rows"]
    ir = est.llvm()
    assert "define" in ir and all(f"kernel {k} " in ir for k in kernels)
    assert f"kernel {kernels[0]} " in est.llvm(kernels[0])
    with pytest.raises(BackendError, match="no generated kernel named"):
        est.llvm("nope")


def test_errors_are_the_specs():
    est = scg.compile(bandit(), estimator="reinforce", backend="numba")
    params, inputs = data(est.model)
    ref = scg.compile(bandit(), estimator="reinforce", backend="numpy")
    for bad in ({"x": inputs["x"][:, :3], "y": inputs["y"]}, {"x": inputs["x"]}):
        with pytest.raises(InputError) as e1:
            ref(params, bad)
        with pytest.raises(InputError) as e2:
            est(params, bad)
        assert str(e1.value) == str(e2.value)


def test_out_of_range_index_checked_like_numpy():
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(3,))
        y = scg.input("y", shape=(), dtype="int64")
        scg.cost("c", (scg.one_hot(y, 3) * x).sum() + scg.take(x, y))
    prog = NumbaProgram(g, "float64")
    args = ({}, {"x": np.ones((2, 3)), "y": np.array([0, 3])})
    with pytest.raises(InputError) as e1:
        evaluate(g, *args)
    with pytest.raises(InputError) as e2:
        prog.run(*args)
    assert str(e1.value) == str(e2.value)


def test_loo_needs_two_draws_same_error():
    est = scg.compile(bandit(), estimator="reinforce", baseline="loo", backend="numba")
    with pytest.raises(BackendError, match="n_samples >= 2"):
        est(*data(est.model), n_samples=1)


def test_unsupported_op_is_a_clear_compile_time_error(monkeypatch):
    from scg.backends import numba_templates
    monkeypatch.delitem(numba_templates.map_templates, Op.TANH)
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(2,))
        scg.cost("c", scg.tanh(x).sum())
    with pytest.raises(BackendError, match=r"the numba backend has no kernel template for op 'tanh'"):
        NumbaProgram(g, "float64")


NASTY = ["q'\"\"\"", "line\nbreak", "__import__('os').system('echo pwned')", "}{ ; # \\"]


def test_user_names_never_reach_generated_code():
    g = scg.Graph("g\"\"\"\n__import__('os')")
    with g:
        x = scg.input(NASTY[0], shape=(3,))
        w = scg.param(NASTY[1], shape=(3, 2))
        h = scg.sample(NASTY[2], scg.Bernoulli(logits=x @ w))
        scg.cost(NASTY[3], h.sum())
    est = scg.compile(g, estimator="hnca", backend="numba")
    for name in NASTY + ["__import__", "pwned", "line"]:
        assert name not in est.source
    params = {NASTY[1]: np.ones((3, 2))}
    out = est(params, {NASTY[0]: np.ones((4, 3))}, seed=1)
    ref = scg.compile(g, estimator="hnca", backend="numpy")(params, {NASTY[0]: np.ones((4, 3))}, seed=1)
    assert np.array_equal(out.samples[NASTY[2]], ref.samples[NASTY[2]])


_THREADS = textwrap.dedent("""
    import sys, numpy as np, numba
    sys.path.insert(0, {here!r})
    from numba_graphs import bandit, data
    from scg.backends.numba_cpu import NumbaProgram
    import scg
    g = bandit(hidden=6)
    ir = scg.compile(g, estimator="hnca", baseline="loo").ir
    prog = NumbaProgram(ir, "float64", parallel=True)
    params, inputs = data(g, rows=37)
    out = []
    for threads in (1, 2):
        numba.set_num_threads(threads)
        vals = prog.run(params, inputs, seed=3, n_samples=2, state={{}})
        out.append({{k: vals[n.uid] for k, n in ir.outputs.items()}})
    assert all(np.array_equal(out[0][k], out[1][k]) for k in out[0]), "thread count changed results"
    print("ok", numba.get_num_threads(), numba.threading_layer())
""")


def test_same_bits_for_one_and_two_threads():
    here = str(__import__("pathlib").Path(__file__).parent)
    code = _THREADS.format(here=here)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False,
                         env={**__import__("os").environ, "NUMBA_NUM_THREADS": "2"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.startswith("ok 2")


def test_constants_are_folded_once(monkeypatch):
    """Constants (and pure ops of constants) run their numpy rule at the first call only, then are reused."""
    from scg.backends import numba_cpu
    est = scg.compile(bandit(), estimator="hnca", backend="numba")
    params, inputs = data(est.model)
    folded = est.program.folded
    assert folded and all(not n.batched for n in est.ir.nodes if n.uid in folded)
    calls: list[Op] = []
    real = numba_cpu.run_node

    def counting(node, args, env):
        calls.append(node.op)
        return real(node, args, env)
    monkeypatch.setattr(numba_cpu, "run_node", counting)
    first = est(params, inputs, seed=1)
    n_first = calls.count(Op.CONST)
    calls.clear()
    second = est(params, inputs, seed=1)
    assert n_first >= 1 and calls.count(Op.CONST) == 0, (n_first, calls)
    for k in first.grads:
        assert np.array_equal(first.grads[k], second.grads[k])
    ref = scg.compile(bandit(), estimator="hnca", backend="numpy")(params, inputs, seed=1)
    for k in ref.grads:
        np.testing.assert_allclose(second.grads[k], ref.grads[k], rtol=1e-10, atol=1e-12)
