"""CUDA backend cases, run under the CUDA simulator by ``test_cuda_sim.py`` in a subprocess.

The simulator must be switched on before numba is first imported, so these run as
``NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/backends/cuda_sim_cases.py`` (the
name does not start with ``test_``: the main pytest run does not collect it).
Graphs are small (tens of rows, at most a few hundred threads per launch): the
simulator runs every CUDA thread as a Python thread.

Parity contract with the NumPy specification: same samples (discrete ones bit for
bit), grads and costs to 1e-10 in float64 and 1e-4 in float32.
"""

import os
import re

import numpy as np
import pytest
from numba_graphs import assert_results_match, bandit, categorical_parent, data, decoder, external, gaussian

import scg
from scg.errors import BackendError, InputError

pytestmark = pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1",
                                reason="run by test_cuda_sim.py with NUMBA_ENABLE_CUDASIM=1")

BANDIT = bandit()


def _pair(graph, estimator, baseline=None, precision="float64"):
    ref = scg.compile(graph, estimator=estimator, baseline=baseline, backend="numpy", precision=precision)
    dev = scg.compile(graph, estimator=estimator, baseline=baseline, backend="cuda", precision=precision)
    return ref, dev


def _check_calls(graph, estimator, baseline=None, precision="float64", n_samples=1, steps=2, rtol=1e-10):
    ref, dev = _pair(graph, estimator, baseline, precision)
    params, inputs = data(graph)
    for step in range(steps):  # two steps: the EMA baseline state is used on the second
        r1 = ref(params, inputs, seed=11 + step, n_samples=n_samples)
        r2 = dev(params, inputs, seed=11 + step, n_samples=n_samples)
        assert_results_match(r1, r2, rtol)
    for key, v in ref.state.items():
        np.testing.assert_allclose(dev.state[key], v, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("baseline", [None, "ema", "loo"])
@pytest.mark.parametrize("estimator", ["reinforce", "scg", "muprop", "hnca"])
def test_bandit_every_estimator_and_baseline(estimator, baseline):
    _check_calls(BANDIT, estimator, baseline, n_samples=3 if baseline == "loo" else 1)


@pytest.mark.parametrize("estimator", ["scg", "hnca"])
def test_normal_nodes(estimator):
    _check_calls(gaussian(), estimator, n_samples=2)


def test_categorical_parent_with_children_loo():
    _check_calls(categorical_parent(), "hnca", "loo", n_samples=2)


def test_direct_costs_f_hnca():
    _check_calls(decoder(), "hnca", "ema")


def test_external_costs_two_phase():
    g = external()
    ref, dev = _pair(g, "hnca", "ema")
    params, inputs = data(g)
    for step in range(2):
        runs = [est.sample(params, inputs, seed=5 + step, n_samples=2) for est in (ref, dev)]
        assert np.array_equal(runs[0].samples["a"], runs[1].samples["a"])
        reward = -(runs[0].samples["a"] == 1).astype(float)
        r1, r2 = (run.grads(external={"reward": reward}) for run in runs)
        assert_results_match(r1, r2, 1e-10)


def test_float32():
    _check_calls(BANDIT, "hnca", "loo", precision="float32", n_samples=2, rtol=1e-4, steps=1)


def test_more_rows_than_one_block():
    """130 rows: two blocks of 128 threads per row kernel (and grid-stride for the rest)."""
    ref, dev = _pair(BANDIT, "hnca")
    params, inputs = data(BANDIT, rows=130)
    assert_results_match(ref(params, inputs, seed=2), dev(params, inputs, seed=2), 1e-10)


def test_grid_stride_any_launch_shape(monkeypatch):
    """Rows walked by 2 blocks of 4 threads (each thread many rows): the same bits as one thread per row."""
    from scg.backends import cuda_runtime
    est = scg.compile(BANDIT, estimator="hnca", backend="cuda")
    params, inputs = data(BANDIT, rows=9)
    want = est.program.run(params, inputs, seed=7, n_samples=2)
    monkeypatch.setattr(cuda_runtime, "THREADS_PER_BLOCK", 4)
    monkeypatch.setattr(cuda_runtime, "MAX_BLOCKS", 2)
    got = est.program.run(params, inputs, seed=7, n_samples=2)
    assert got.keys() == want.keys()
    for uid, v in want.items():
        assert np.array_equal(got[uid], v), uid


def test_program_values_match_evaluate_for_every_materialised_node():
    from scg.backends.numpy_ref import evaluate
    est = scg.compile(BANDIT, estimator="hnca", backend="cuda")
    params, inputs = data(BANDIT)
    ref = evaluate(est.ir, params, inputs, seed=4, n_samples=2, state={})
    got = est.program.run(params, inputs, seed=4, n_samples=2, state={})
    assert {est.ir.outputs[k].uid for k in est.ir.outputs} <= set(got)
    for uid, v in got.items():
        assert v.dtype == ref[uid].dtype and v.shape == ref[uid].shape
        np.testing.assert_allclose(v, ref[uid], rtol=1e-10, atol=1e-12)


def test_inspectable():
    est = scg.compile(BANDIT, estimator="hnca", backend="cuda")
    assert "@cuda.jit" in est.source and "cuda.grid(1)" in est.source and "def k" in est.source
    assert "hnca_affine_delta" in str(est.plan)
    with pytest.raises(BackendError, match="cuda backend"):
        est.llvm()


def test_parameter_side_algebra_stays_on_the_device():
    """exp(s), V.T and grad/s = unbroadcast(...) * exp(s) run as generated kernels: device in, device out."""
    est = scg.compile(gaussian(), estimator="scg", backend="cuda")
    assert "def u" in est.source
    params, inputs = data(est.model)
    prog = est.program
    values = prog.run(prog.to_device(params), inputs, seed=3, keep_on_device=True)
    for name, uid in _grad_uids(est).items():
        assert hasattr(values[uid], "copy_to_host"), name
    ref = scg.compile(gaussian(), estimator="scg", backend="numpy")
    assert_results_match(ref(params, inputs, seed=3), est(params, inputs, seed=3), 1e-10)


def _grad_uids(est):
    return {k.removeprefix("grad/"): n.uid for k, n in est.ir.outputs.items() if k.startswith("grad/")}


def test_device_resident_params_sgd_and_adam():
    """Params stay on the device across steps; the updates equal the same steps on the host."""
    est = scg.compile(BANDIT, estimator="hnca", backend="cuda")
    prog = est.program
    params, inputs = data(BANDIT)
    dparams = prog.to_device(params)
    host = {k: v.astype(np.float64).copy() for k, v in params.items()}
    grads = _grad_uids(est)
    lr = 0.1
    for step in range(2):
        values = prog.run(dparams, inputs, seed=step, keep_on_device=True, state={})
        assert all(hasattr(values[u], "copy_to_host") for u in grads.values())
        prog.sgd_step(dparams, values, lr)
        ref = prog.run(host, inputs, seed=step, state={})
        for name, uid in grads.items():
            host[name] = host[name] - lr * ref[uid]
    for name, p in prog.to_host(dparams).items():
        np.testing.assert_allclose(p.reshape(host[name].shape), host[name], rtol=1e-12, atol=1e-12)

    state: dict = {}
    m = {k: np.zeros_like(v) for k, v in host.items()}
    v2 = {k: np.zeros_like(v) for k, v in host.items()}
    dparams = prog.to_device(host)
    for t in (1, 2):
        values = prog.run(dparams, inputs, seed=9 + t, keep_on_device=True, state={})
        prog.adam_step(dparams, values, state, lr=0.01)
        ref = prog.run(host, inputs, seed=9 + t, state={})
        for name, uid in grads.items():
            g = ref[uid]
            m[name] = 0.9 * m[name] + 0.1 * g
            v2[name] = 0.999 * v2[name] + 0.001 * g * g
            host[name] = host[name] - 0.01 * (m[name] / (1 - 0.9 ** t)) / (np.sqrt(v2[name] / (1 - 0.999 ** t)) + 1e-8)
    for name, p in prog.to_host(dparams).items():
        np.testing.assert_allclose(p.reshape(host[name].shape), host[name], rtol=1e-10, atol=1e-12)


def test_device_param_checked():
    est = scg.compile(BANDIT, estimator="reinforce", backend="cuda")
    params, inputs = data(BANDIT)
    dparams = est.program.to_device(params)
    from numba import cuda
    dparams["W1"] = cuda.to_device(np.zeros((3, 3)))
    with pytest.raises(InputError, match="W1.*shape"):
        est.program.run(dparams, inputs)
    dparams["W1"] = cuda.to_device(params["W1"].astype(np.float32))
    with pytest.raises(InputError, match="W1.*dtype"):
        est.program.run(dparams, inputs)


def test_too_large_for_the_device(monkeypatch):
    est = scg.compile(BANDIT, estimator="hnca", backend="cuda")
    params, inputs = data(BANDIT)
    monkeypatch.setenv("SCG_CUDA_MEMORY_LIMIT", "1024")
    with pytest.raises(BackendError, match=r"MiB of device memory .* rows"):
        est(params, inputs)


def test_unsupported_op_names_the_op(monkeypatch):
    from scg.backends import cuda_render
    from scg.ir.ops import Op
    monkeypatch.setattr(cuda_render, "UNSUPPORTED", frozenset({Op.TANH}))
    with pytest.raises(BackendError, match="cuda backend has no kernel template for op 'tanh'"):
        scg.compile(gaussian(), estimator="scg", backend="cuda")


def test_out_of_range_index_same_error_as_numpy():
    g = scg.Graph("t")
    with g:
        x = scg.input("x", shape=(3,))
        y = scg.input("y", shape=(), dtype="int64")
        scg.cost("c", (scg.one_hot(y, 3) * x).sum() + scg.take(x, y))
    args = ({}, {"x": np.ones((2, 3)), "y": np.array([0, 3])})
    with pytest.raises(InputError) as e1:
        scg.compile(g, backend="numpy")(*args)
    with pytest.raises(InputError) as e2:
        scg.compile(g, backend="cuda")(*args)
    assert str(e1.value) == str(e2.value)


# -- one argument-check path: the bad-input catalogue's call-time cases, word for word on cuda --------------
def _catalogue():
    from tests.hardening import test_bad_inputs as catalogue
    return catalogue


_CALL_TIME = ("equal-label", "one-hot-index", "probs-", "nan-logits", "categorical-", "normal-", "nan-param",
              "inf-input", "input-", "label-float", "missing-", "extra-", "param-wrong", "rows-disagree",
              "loo-with-one", "zero-samples", "negative-seed", "empty-batch", "external-cost")


def _catalogue_cases():
    return [c for c in _catalogue().CASES if c[0].startswith(_CALL_TIME)]


@pytest.mark.parametrize("case", _catalogue_cases(), ids=[c[0] for c in _catalogue_cases()])
def test_bad_input_catalogue_on_cuda(case):
    """CUDA refuses exactly what numpy refuses, with numpy's message (these once were raw ValueErrors or passed)."""
    _, action, error, match = case
    with pytest.raises(error, match=match) as got:
        action("cuda")
    with pytest.raises(error) as want:
        action("numpy")
    same = re.compile(r"#\d+")  # internal ids differ between two compiled estimators
    assert same.sub("#", str(got.value)) == same.sub("#", str(want.value))


def test_catalogue_selection_covers_the_argument_checks():
    ids = {c[0] for c in _catalogue_cases()}
    assert {"probs-above-one", "equal-label-too-big", "normal-negative-scale", "categorical-nan-logits"} <= ids
    assert len(ids) >= 25


def test_check_finite_false_lets_nan_through_on_cuda():
    cat = _catalogue()
    lenient = scg.compile(cat.GRAPHS["bandit"], "reinforce", backend="cuda", check_finite=False)
    out = lenient({**cat.BP, "W1": cat.with_nan(cat.BP["W1"])}, cat.INPUTS["bandit"], seed=1)
    assert np.isnan(out.grads["W1"]).any()
    # probs=1.5 gives NaN on a GPU; the simulator runs math.log as Python, which raises: a BackendError, not raw
    lenient = scg.compile(cat.GRAPHS["probs"], "reinforce", backend="cuda", check_finite=False)
    bad = {**cat.INPUTS["probs"], "p": cat.with_nan(np.full((cat.B, 3), 0.5), (1, 2), 1.5)}
    with pytest.raises(BackendError, match="a cuda kernel of graph 'probs.reinforce' failed"):
        lenient(cat.PARAMS["probs"], bad, seed=1)
    with pytest.raises(InputError, match="probs outside"):  # the strict estimator still refuses
        cat.call("probs", "cuda", inputs={"p": bad["p"]})


def test_a_kernel_error_without_bad_arguments_is_a_backend_error():
    """A kernel that fails although the spec accepts the call: BackendError naming the graph, not a raw error."""
    est = scg.compile(gaussian(), estimator="scg", backend="cuda")
    params, inputs = data(gaussian())
    steps = est.program._base.steps
    step = steps[0]

    def broken(*args):
        raise ValueError("math domain error")
    steps[0] = broken
    try:
        with pytest.raises(BackendError, match=r"a cuda kernel of graph 'gauss\S*' failed: ValueError"):
            est(params, inputs)
    finally:
        steps[0] = step
    est(params, inputs)


def test_leaky_relu_hidden_layer():
    g = scg.Graph("leaky_cuda")
    with g:
        x = scg.input("x", shape=(5,))
        h = scg.leaky_relu(x @ scg.param("W", shape=(5, 4), init="glorot"), negative_slope=0.1)
        z = scg.sample("z", scg.Bernoulli(logits=h @ scg.param("V", shape=(4, 3), init="glorot")))
        scg.cost("c", scg.leaky_relu(z @ scg.param("U", shape=(3, 2), init="glorot") - 0.3, 0.3).sum())
    _check_calls(g, "reinforce")
