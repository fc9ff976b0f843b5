"""scg.optim, scg.train, histories and checkpoints."""

import numpy as np
import pytest

import scg
from scg import optim, training


def coin_graph():
    g = scg.Graph("coin")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - 0.45) ** 2)
    return g


def bandit_graph():
    g = scg.Graph("tiny_bandit")
    with g:
        x = scg.input("x", shape=(4,))
        W1, b1 = scg.param("W1", shape=(4, 6)), scg.param("b1", shape=(6,))
        h = scg.sample("h", scg.Bernoulli(logits=x @ W1 + b1))
        W2, b2 = scg.param("W2", shape=(6, 2)), scg.param("b2", shape=(2,))
        a = scg.sample("a", scg.Categorical(logits=h @ W2 + b2))
        scg.external_cost("neg_reward", depends_on=[a])
    return g


def bandit_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    return [{"x": x, "y": (x[:, 0] > 0).astype(np.int64)}]


def reward(batch, samples):
    return {"neg_reward": -(samples["a"] == batch["y"]).astype(float)}


# ----------------------------------------------------------------- optimisers


def test_adam_first_step_is_lr_times_sign():
    p = {"w": np.array([1.0, -2.0, 3.0]), "s": np.array(0.5)}
    opt = optim.Adam(lr=0.1)
    opt.step(p, {"w": np.array([0.5, -3.0, 1e-3]), "s": np.array(2.0)})
    np.testing.assert_allclose(p["w"], [0.9, -1.9, 2.9], rtol=1e-6)
    assert p["s"].shape == () and p["s"] == pytest.approx(0.4)
    assert opt.t == 1


def test_adam_minimises_a_quadratic():
    p = {"w": np.array([3.0, -4.0])}
    opt = optim.Adam(lr=0.05)
    for _ in range(2000):
        opt.step(p, {"w": 2 * p["w"]})
    np.testing.assert_allclose(p["w"], 0.0, atol=1e-2)


def test_sgd_plain_momentum_and_decay():
    p = {"w": np.array([1.0])}
    optim.SGD(0.5).step(p, {"w": np.array([1.0])})
    assert p["w"][0] == pytest.approx(0.5)
    opt = optim.SGD(1.0, momentum=0.5)
    p = {"w": np.array([0.0])}
    opt.step(p, {"w": np.array([1.0])})
    opt.step(p, {"w": np.array([1.0])})
    assert p["w"][0] == pytest.approx(-(1.0 + 1.5))
    p = {"w": np.array([2.0])}
    optim.SGD(0.1, weight_decay=1.0).step(p, {"w": np.array([0.0])})
    assert p["w"][0] == pytest.approx(1.8)


def test_optimiser_keeps_param_dtype_and_checks_grads():
    p = {"w": np.ones(3, dtype=np.float32)}
    opt = optim.make("adam", 1e-3)
    opt.step(p, {"w": np.ones(3)})
    assert p["w"].dtype == np.float32
    with pytest.raises(scg.ScgError, match="no gradient for parameter"):
        opt.step(p, {})
    with pytest.raises(scg.ScgError, match="shape"):
        opt.step(p, {"w": np.ones(4)})
    with pytest.raises(scg.ScgError, match="learning rate"):
        optim.SGD(0.0)
    with pytest.raises(scg.ScgError, match="unknown optimiser"):
        optim.make("rmsprop", 1e-3)


@pytest.mark.parametrize("make", [lambda: optim.Adam(0.1), lambda: optim.SGD(0.1, momentum=0.9)])
def test_optimiser_state_roundtrip_continues_identically(make):
    grads = [{"w": np.array([0.3 * i, -1.0])} for i in range(1, 6)]
    a, pa = make(), {"w": np.zeros(2)}
    for g in grads:
        a.step(pa, g)
    b, pb = make(), {"w": np.zeros(2)}
    for g in grads[:3]:
        b.step(pb, g)
    c = make()
    c.load_state_dict(b.state_dict())
    for g in grads[3:]:
        c.step(pb, g)
    np.testing.assert_allclose(pa["w"], pb["w"])


# ----------------------------------------------------------------- train


def test_train_one_phase_lowers_exact_cost_and_records_history():
    g = coin_graph()
    est = scg.compile(g, estimator="reinforce", baseline="ema")
    params = {"phi": np.array(0.0)}
    before = scg.exact(g, params, {}).cost
    evals = []
    hist = scg.train(est, params, [{}], optim.Adam(0.1), steps=100, seed=3, progress=False,
                     evaluate=lambda p, step: evals.append(step) or {"exact": scg.exact(g, p, {}).cost},
                     eval_every=25)
    assert scg.exact(g, params, {}).cost < before
    assert len(hist) == 100 and hist.steps[-1]["step"] == 100
    assert set(hist.steps[0]) >= {"step", "epoch", "cost", "cost/c", "grad_norm", "seconds"}
    assert [e["step"] for e in hist.evals] == [0, 25, 50, 75, 100] == evals
    assert np.all(np.isfinite(hist.column("exact", evals=True)))


def test_train_is_reproducible_in_the_seed():
    g = bandit_graph()

    def run(seed):
        est = scg.compile(g, estimator="hnca", baseline="ema")
        params = g.init_params(seed=0)
        scg.train(est, params, bandit_data(), optim.SGD(0.2), steps=20, external=reward, seed=seed,
                  progress=False)
        return params

    a, b, c = run(1), run(1), run(2)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in a)


def test_train_two_phase_external_reward_learns():
    g = bandit_graph()
    est = scg.compile(g, estimator="hnca", baseline="ema")
    params = g.init_params(seed=0)
    hist = scg.train(est, params, bandit_data(), optim.SGD(0.5), steps=200, external=reward, progress=False)
    costs = hist.column("cost")
    assert costs[-50:].mean() < costs[:50].mean() - 0.1     # reward went up


def test_train_needs_external_for_external_costs_and_a_bound():
    g = bandit_graph()
    est = scg.compile(g, estimator="reinforce")
    with pytest.raises(scg.ScgError, match="external costs"):
        scg.train(est, g.init_params(), bandit_data(), optim.SGD(0.1), steps=1)
    with pytest.raises(scg.ScgError, match="epochs"):
        scg.train(est, g.init_params(), bandit_data(), optim.SGD(0.1), external=reward)
    with pytest.raises(scg.ScgError, match="no batches"):
        scg.train(est, g.init_params(), [], optim.SGD(0.1), epochs=1, external=reward)


def test_train_epochs_over_a_callable_data_source():
    g = bandit_graph()
    data = bandit_data(40)[0]
    seen = []

    def epochs(epoch):
        seen.append(epoch)
        for i in range(0, 40, 10):
            yield {"x": data["x"][i:i + 10], "y": data["y"][i:i + 10]}

    est = scg.compile(g, estimator="reinforce")
    hist = scg.train(est, g.init_params(), epochs, optim.SGD(0.1), epochs=3, external=reward, progress=False)
    assert seen == [0, 1, 2] and len(hist) == 12
    assert hist.column("epoch").tolist() == [0] * 4 + [1] * 4 + [2] * 4


def test_dataset_batches_are_seeded_per_epoch():
    from scg.datasets import Dataset

    rng = np.random.default_rng(0)
    d = Dataset("toy", rng.random((30, 5)).astype(np.float32), np.arange(30), rng.random((4, 5)).astype(np.float32),
                np.arange(4), (1, 5))
    f = training.dataset_batches(d, 10, seed=4)
    a, b = list(f(0)), list(f(0))
    np.testing.assert_array_equal(a[0]["x"], b[0]["x"])
    assert not np.array_equal(a[0]["y"], next(iter(f(1)))["y"])
    assert set(a[0]) == {"x", "y"}


def test_history_files(tmp_path):
    h = training.History(steps=[{"step": 1, "cost": 0.5}, {"step": 2, "cost": 0.25, "extra": 1.0}],
                         evals=[{"step": 2, "acc": 0.9}])
    h.save_csv(tmp_path / "h.csv")
    h.save_json(tmp_path / "h.json")
    assert (tmp_path / "h.csv").read_text().splitlines()[0] == "step,cost,extra"
    assert "acc" in (tmp_path / "h.json").read_text()


def test_progress_bar_shows_running_cost(capsys):
    g = coin_graph()
    est = scg.compile(g, estimator="hnca")
    scg.train(est, {"phi": np.array(0.0)}, [{}], optim.SGD(0.1), steps=5, progress=True, desc="coin")
    err = capsys.readouterr().err
    assert "coin" in err and "cost=" in err


# ----------------------------------------------------------------- checkpoints


def test_params_and_checkpoint_roundtrip(tmp_path):
    g = bandit_graph()
    est = scg.compile(g, estimator="reinforce", baseline="ema")
    params = g.init_params(seed=1)
    opt = optim.Adam(0.01)
    scg.train(est, params, bandit_data(), opt, steps=5, external=reward, progress=False)

    training.save_params(tmp_path / "p.npz", params)
    loaded = training.load_params(tmp_path / "p.npz")
    assert loaded.keys() == params.keys()
    for k in params:
        np.testing.assert_array_equal(loaded[k], params[k])

    training.save_checkpoint(tmp_path / "ck.npz", params, optimizer=opt, estimator=est, step=5, note="hi")
    opt2, est2 = optim.Adam(0.01), scg.compile(g, estimator="reinforce", baseline="ema")
    ck = training.load_checkpoint(tmp_path / "ck.npz", optimizer=opt2, estimator=est2)
    assert ck.step == 5 and ck.meta == {"note": "hi"} and opt2.t == opt.t == 5
    assert est.state and est2.state.keys() == est.state.keys()
    for k in est.state:
        np.testing.assert_array_equal(est2.state[k], est.state[k])

    # resuming gives the same params as running straight through
    p_resume = {k: v.copy() for k, v in ck.params.items()}
    scg.train(est2, p_resume, bandit_data(), opt2, steps=5, external=reward, progress=False, start_step=5)
    scg.train(est, params, bandit_data(), opt, steps=5, external=reward, progress=False, start_step=5)
    for k in params:
        np.testing.assert_allclose(p_resume[k], params[k], rtol=1e-12)
