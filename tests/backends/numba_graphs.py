"""Small graphs and helpers shared by the Numba backend tests (kept small: JIT time counts)."""

from __future__ import annotations

import numpy as np

import scg

B = 6


def bandit(layers: int = 2, d_in: int = 7, hidden: int = 5, k: int = 4, sparsity: bool = False) -> scg.Graph:
    """The README's bandit, scaled down: Bernoulli layers, softmax policy, cost -equal(a, y)."""
    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(d_in,))
        y = scg.input("y", shape=(), dtype="int64")
        prev, d = x, d_in
        for i in range(layers):
            w = scg.param(f"W{i + 1}", shape=(d, hidden))
            bias = scg.param(f"b{i + 1}", shape=(hidden,))
            prev = scg.sample(f"h{i + 1}", scg.Bernoulli(logits=prev @ w + bias))
            d = hidden
            if sparsity and i == 0:
                scg.cost("sparsity", 0.01 * prev.sum())
        wo = scg.param("Wo", shape=(d, k))
        bo = scg.param("bo", shape=(k,))
        a = scg.sample("a", scg.Categorical(logits=prev @ wo + bo))
        scg.cost("neg_reward", -scg.equal(a, y))
    return g


def gaussian() -> scg.Graph:
    """A reparameterisable Normal latent feeding a Bernoulli unit; costs on both."""
    g = scg.Graph("gauss")
    with g:
        x = scg.input("x", shape=(3,))
        w = scg.param("W", shape=(3, 4))
        s = scg.param("s", shape=(4,))
        z = scg.sample("z", scg.Normal(x @ w, scg.exp(s)))
        v = scg.param("V", shape=(4, 2))
        h = scg.sample("h", scg.Bernoulli(logits=scg.tanh(z) @ v))
        scg.cost("fit", scg.square(z - 0.5).mean() + scg.softplus(h.sum() - 1.0))
    return g


def categorical_parent() -> scg.Graph:
    """A categorical unit with Bernoulli and categorical children (hnca_onehot_loglik)."""
    g = scg.Graph("catpar")
    with g:
        x = scg.input("x", shape=(4,))
        y = scg.input("y", shape=(), dtype="int64")
        wc = scg.param("Wc", shape=(4, 3))
        c = scg.sample("c", scg.Categorical(logits=x @ wc))
        v = scg.param("V", shape=(3, 5))
        h = scg.sample("h", scg.Bernoulli(logits=scg.one_hot(c, 3) @ v))
        u = scg.param("U", shape=(3, 3))
        a = scg.sample("a", scg.Categorical(logits=scg.one_hot(c, 3) @ u + h.sum()))
        scg.cost("c1", -scg.equal(a, y) + 0.1 * scg.log_sigmoid(h.sum() - 2.0))
    return g


def decoder() -> scg.Graph:
    """f-HNCA: a cost that sees the unit directly (a Bernoulli decoder likelihood)."""
    g = scg.Graph("vae")
    with g:
        x = scg.input("x", shape=(6,))
        we = scg.param("We", shape=(6, 4))
        h = scg.sample("h", scg.Bernoulli(logits=x @ we))
        wd = scg.param("Wd", shape=(4, 6))
        bd = scg.param("bd", shape=(6,))
        scg.cost("rec", -scg.Bernoulli(logits=h @ wd + bd).log_prob(x).sum())
        scg.cost("kl", 0.1 * h.sum())
    return g


def external() -> scg.Graph:
    g = scg.Graph("env")
    with g:
        x = scg.input("x", shape=(4,))
        w = scg.param("W", shape=(4, 3))
        h = scg.sample("h", scg.Bernoulli(logits=x @ w))
        v = scg.param("V", shape=(3, 3))
        a = scg.sample("a", scg.Categorical(logits=h @ v))
        scg.external_cost("reward", depends_on=[a])
        scg.cost("act", 0.05 * scg.to_float(a))
    return g


def data(graph: scg.Graph, seed: int = 0, rows: int = B) -> tuple[dict, dict]:
    """Params (the graph's init) and random inputs for every input of ``graph``."""
    gen = np.random.default_rng(seed)
    params = {k: v * 2.0 for k, v in graph.init_params(seed=seed).items()}
    inputs = {}
    for name, node in graph.inputs.items():
        if node.dtype == "i64":
            inputs[name] = gen.integers(0, 3, size=(rows, *node.shape))
        else:
            inputs[name] = gen.normal(size=(rows, *node.shape))
    return params, inputs


def assert_results_match(r1, r2, rtol: float, exact_samples: bool = True) -> None:
    """Samples equal (discrete exactly), grads and costs equal to ``rtol`` relative to their scale."""
    assert r1.samples.keys() == r2.samples.keys()
    for k, v in r1.samples.items():
        if exact_samples and v.dtype.kind == "i" or np.all(np.isin(v, (0.0, 1.0))):
            assert np.array_equal(v, r2.samples[k]), f"samples of {k} differ"
        else:
            np.testing.assert_allclose(r2.samples[k], v, rtol=rtol, atol=rtol, err_msg=k)
    assert r1.grads.keys() == r2.grads.keys()
    for k, v in r1.grads.items():
        scale = max(1.0, float(np.max(np.abs(v))))
        np.testing.assert_allclose(r2.grads[k], v, rtol=rtol, atol=rtol * scale, err_msg=f"grad {k}")
    np.testing.assert_allclose(r2.cost, r1.cost, rtol=rtol, atol=rtol)
