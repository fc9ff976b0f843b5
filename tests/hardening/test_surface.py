"""Issue 15: the public surface refuses bad arguments with an ScgError (never a raw traceback) and
says what it refused; things that used to pass silently or blame the wrong thing are caught.

Each case failed before the fix (a raw TypeError/ValueError/MemoryError/FileNotFoundError, or no
error at all); ``test_harness_catches_a_raw_error`` shows the harness itself can fail.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import scg
from scg import optim
from scg.errors import BackendError, GraphError, InputError, ScgError
from scg.training import TrainingDiverged, load_checkpoint, save_checkpoint

X3 = {"x": np.ones((3, 2))}


def coin():
    g = scg.Graph("coin")
    with g:
        x = scg.input("x", shape=(2,))
        w = scg.param("w", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=x * w))
        scg.cost("c", (h - 0.3).sum())
    return g


def bandit():
    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(2,))
        w = scg.param("w", shape=(2, 3))
        a = scg.sample("a", scg.Categorical(logits=x @ w))
        scg.external_cost("reward", depends_on=[a])
    return g


def labels(shift):
    g = scg.Graph("labels")
    with g:
        x = scg.input("x", shape=(2,))
        y = scg.input("y", shape=(), dtype="int64")
        w = scg.param("w", shape=(2, 3))
        a = scg.sample("a", scg.Categorical(logits=x @ w))
        scg.cost("c", -scg.equal(a, y + 1 if shift else y))
    return g


def ema_est():
    est = scg.compile(coin(), estimator="reinforce", baseline="ema")
    est({"w": np.ones(2)}, X3, seed=1)
    return est


def ro(a):
    a.flags.writeable = False
    return a


def train(params=None, data=None, **kw):
    kw.setdefault("steps", 2)
    return scg.train(scg.compile(coin(), "reinforce"), params if params is not None else {"w": np.ones(2)},
                     data if data is not None else [X3], optim.SGD(0.1), progress=False, **kw)


def _reshape():
    with scg.Graph("r"):
        scg.input("x", shape=(2,)).reshape("ab")


def _init_string():
    g = scg.Graph("i")
    with g:
        scg.param("w", shape=(2,), init=lambda rng, shape: "hello")
    g.init_params()


def _bad_file(tmp_path):
    (tmp_path / "bad.npz").write_text("not a checkpoint")
    return load_checkpoint(tmp_path / "bad.npz")


def _truncated_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ck.npz", {"w": np.ones(2)})
    blob = (tmp_path / "ck.npz").read_bytes()
    (tmp_path / "ck.npz").write_bytes(blob[: len(blob) // 2])
    return load_checkpoint(tmp_path / "ck.npz")


def _two_phase(external, est=None):
    est = est or scg.compile(bandit(), estimator="reinforce")
    return est.sample({"w": np.ones((2, 3))}, X3, seed=1).grads(external=external)


# (id, action(tmp_path), error, message regex)
CASES = [
    ("load_state-string", lambda t: ema_est().load_state({"ema_h": "abc"}), ScgError,
     r"baseline 'ema_h' must be a real number of shape \(\), got 'abc'"),
    ("load_state-None", lambda t: ema_est().load_state(None), ScgError, r"load_state expects a dict .* got NoneType"),
    ("load_state-NaN", lambda t: ema_est().load_state({"ema_h": np.nan}), ScgError,
     r"baseline 'ema_h' is nan; a baseline must be finite"),
    ("load_state-misspelt", lambda t: ema_est().load_state({"ema_hh": 1.0}), ScgError,
     r"unknown baseline 'ema_hh'; this estimator's baselines: ema_h"),
    ("n_samples-absurd", lambda t: scg.compile(coin())({"w": np.ones(2)}, X3, n_samples=10**12), InputError,
     r"n_samples=1000000000000 with B=3 row\(s\) needs at least [\d,.]+ GiB .* more than the"),
    ("train-int-params", lambda t: train({"w": np.ones(2, dtype=np.int64)}), ScgError,
     r"train: parameter 'w' must be a float ndarray .* got dtype int64"),
    ("train-read-only-params", lambda t: train({"w": ro(np.ones(2))}), ScgError,
     r"train: parameter 'w' is a read-only array"),
    ("train-negative-seed", lambda t: train(seed=-1), ScgError, r"train: seed must be >= 0, got -1"),
    ("train-batch-not-dict", lambda t: train(data=[np.ones((3, 2))]), ScgError,
     r"batch 0 of epoch 0 is a ndarray; each batch must be a dict"),
    ("train-negative-steps", lambda t: train(steps=-5), ScgError, r"train: steps must be >= 0, got -5"),
    ("sgd-string-lr", lambda t: optim.SGD("0.1"), ScgError, r"learning rate must be a real number, got '0.1' \(str\)"),
    ("sgd-inf-lr", lambda t: optim.SGD(float("inf")), ScgError, r"learning rate must be in \(0, inf\), got inf"),
    ("adam-bad-betas", lambda t: optim.Adam(betas=0.9), ScgError, r"Adam betas must be a pair"),
    ("compile-string-ema-decay", lambda t: scg.compile(coin(), ema_decay="0.5"), ScgError,
     r"ema_decay must be a real number, got '0.5'"),
    ("compile-backend-list", lambda t: scg.compile(coin(), backend=["numba"]), BackendError,
     r"backend must be a name .* got list \['numba'\]"),
    ("compile-not-a-graph", lambda t: scg.compile("not a graph"), GraphError,
     r"scg.compile expects an scg.Graph as its first argument, got str 'not a graph'"),
    ("reshape-string", lambda t: _reshape(), GraphError, r"reshape of 'x' .* must be ints, got \('ab',\)"),
    ("init-returns-string", lambda t: _init_string(), GraphError, r"param 'w': init '<lambda>' returned 'hello'"),
    ("save_checkpoint-missing-dir", lambda t: save_checkpoint(t / "nope" / "ck", {"w": np.ones(2)}), ScgError,
     r"cannot write '.*ck.npz': directory '.*nope' does not exist"),
    ("load_checkpoint-text-file", _bad_file, ScgError, r"bad.npz' is not a readable scg .npz file"),
    ("load_checkpoint-truncated", _truncated_checkpoint, ScgError, r"ck.npz' is not a readable scg .npz file"),
    ("load_checkpoint-missing", lambda t: load_checkpoint(t / "none"), ScgError, r"no checkpoint at '.*none'"),
    ("external-wrong-length-blames-the-cost", lambda t: _two_phase({"reward": np.ones(5)}), InputError,
     r"^external cost 'reward' has shape \(5,\), expected \(K\*B,\) = \(3,\)"),
    ("external-NaN", lambda t: _two_phase({"reward": np.array([1.0, np.nan, 1.0])}), InputError,
     r"external cost 'reward' has 1 non-finite value"),
    ("computed-label-out-of-range",
     lambda t: scg.compile(labels(True))({"w": np.ones((2, 3))}, {**X3, "y": np.array([0, 1, 2])}),
     InputError, r"equal\(a, y \+ 1\): label `y \+ 1` is 3 at row 2, but Categorical sample 'a' takes values in"),
    ("uint64-label-beyond-int64",
     lambda t: scg.compile(labels(False))({"w": np.ones((2, 3))}, {**X3, "y": np.array([0, 1, 2**64 - 1], np.uint64)}),
     InputError, r"input 'y' has value 18446744073709551615 at index \(2,\), which does not fit int64"),
]


def check(action, tmp_path, error, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ScgError) as info:
            action(tmp_path)
    err = info.value
    assert isinstance(err, error), f"{type(err).__name__}: {err}"
    assert re.search(match, str(err)), f"{match!r} not in {str(err)!r}"
    assert not re.search(r"#\d+", str(err)), f"internal id in {str(err)!r}"


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_with_a_clear_scg_error(case, tmp_path):
    _, action, error, match = case
    check(action, tmp_path, error, match)


def test_harness_catches_a_raw_error(tmp_path):
    """The broken variant: a raw ValueError (the old behaviour) and a silent pass both fail the check."""
    with pytest.raises(ValueError):
        check(lambda t: float("abc"), tmp_path, ScgError, "")
    with pytest.raises(pytest.fail.Exception):
        check(lambda t: None, tmp_path, ScgError, "")


def test_messages_use_the_users_names_not_internal_ids():
    g = scg.Graph("oh")
    with g:
        y = scg.input("y", shape=(), dtype="int64")
        w = scg.param("w", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=w))
        scg.cost("c", (scg.one_hot(y + 1, 3) * h).sum())
    with pytest.raises(InputError) as info:
        scg.compile(g)({"w": np.zeros(3)}, {"y": np.array([0, 2])})
    assert str(info.value).startswith("`one_hot(y + 1)`: one_hot of `y + 1` has index 3 outside [0, 3)")


def test_checkpoint_name_without_suffix_round_trips(tmp_path):
    save_checkpoint(tmp_path / "ck", {"w": np.arange(2.0)}, step=7)
    assert (tmp_path / "ck.npz").is_file()
    for name in ("ck", "ck.npz"):
        ck = load_checkpoint(tmp_path / name)
        assert ck.step == 7 and np.array_equal(ck.params["w"], [0.0, 1.0])


def test_second_grads_call_advances_the_ema_once():
    est = scg.compile(bandit(), estimator="reinforce", baseline="ema", ema_decay=0.5)
    run = est.sample({"w": np.ones((2, 3))}, X3, seed=1)
    first = run.grads(external={"reward": np.ones(3)})
    after_first = dict(est.state)
    again = run.grads(external={"reward": np.ones(3)})
    assert est.state == after_first
    for k in first.grads:  # the same draws and baselines: the same result
        np.testing.assert_array_equal(first.grads[k], again.grads[k])
    est.sample({"w": np.ones((2, 3))}, X3, seed=2).grads(external={"reward": np.full(3, 3.0)})
    assert est.state != after_first  # a new run does advance it


def test_load_state_round_trip_still_works():
    src = ema_est()
    dst = scg.compile(coin(), estimator="reinforce", baseline="ema")
    dst.load_state(src.state)
    assert dst.state == {k: np.float64(v) for k, v in src.state.items()}
    dst.load_state({})  # nothing to restore: a fresh baseline
    assert dst.state == {}


def test_training_stops_on_nan_costs_without_check_finite():
    g = scg.Graph("nan")
    with g:
        x = scg.input("x", shape=(1,))
        w = scg.param("w", shape=(1,))
        h = scg.sample("h", scg.Bernoulli(logits=w))
        scg.cost("c", (h * scg.log(x)).sum())
    est = scg.compile(g, "reinforce", check_finite=False)
    data = [{"x": np.ones((2, 1))}, {"x": np.ones((2, 1))}, {"x": -np.ones((2, 1))}, {"x": np.ones((2, 1))}]
    params = {"w": np.zeros(1)}
    with pytest.raises(TrainingDiverged, match=r"training diverged at step 2: the sampled cost is nan|gradient") as info:
        scg.train(est, params, data, optim.SGD(0.1), steps=4, progress=False, seed=3)
    assert info.value.step == 2 and len(info.value.history) == 2 and np.all(np.isfinite(params["w"]))


def test_training_stops_when_an_update_overflows():
    g = scg.Graph("quad")
    with g:
        w = scg.param("w", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=w.sum() * 0.0))
        scg.cost("c", (w * w).sum() + h)
    params = {"w": np.full(2, 1e150)}
    with pytest.raises(TrainingDiverged, match=r"step 0: after the optimiser step, parameter\(s\) 'w' hold NaN or inf"):
        scg.train(scg.compile(g, "scg"), params, [{}], optim.SGD(1e160), steps=3, progress=False)


def test_blas_threads_env_is_checked(monkeypatch):
    monkeypatch.setenv("SCG_BLAS_THREADS", "abc")
    with pytest.raises(BackendError, match=r"SCG_BLAS_THREADS='abc': expected a non-negative int"):
        scg.compile(coin(), backend="numba")
    monkeypatch.setenv("SCG_BLAS_THREADS", "2")
    from scg.guards import blas_threads
    assert blas_threads() == 2


def test_dot_into_a_missing_directory_is_a_message_not_a_traceback(tmp_path, capsys):
    from scg import cli

    model = tmp_path / "model.py"
    model.write_text("import scg\ng = scg.Graph('coin')\nwith g:\n    p = scg.param('p', shape=())\n"
                     "    b = scg.sample('b', scg.Bernoulli(logits=p))\n    scg.cost('c', b)\n")
    assert cli.main(["dot", str(model), "-o", str(tmp_path / "missing" / "g.dot")]) == 1
    err = capsys.readouterr().err
    assert "scg dot: error: cannot write" in err and "does not exist" in err and "Traceback" not in err
    assert cli.main(["dot", str(model), "-o", str(tmp_path / "g.dot")]) == 0  # the same command, a real dir
