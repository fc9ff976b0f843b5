"""Small discrete graphs for estimator tests: each exercises a different derivation path."""

from __future__ import annotations

import numpy as np

import scg


def _perturbed(g: scg.Graph, seed: int = 0, scale: float = 0.7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {k: v + rng.normal(0.0, scale, v.shape) for k, v in g.init_params(seed).items()}


def coin():
    """E[(b - 0.45)^2], b ~ Bernoulli(sigmoid(phi)): the REBAR toy; a direct cost only."""
    g = scg.Graph("coin")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - 0.45) ** 2)
    return g, {"phi": np.array(0.3)}, {}


def bandit():
    """Bernoulli layer -> categorical action; reward depends on the action, sparsity on the layer."""
    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(3,))
        y = scg.input("y", dtype="int64")
        W1, b1 = scg.param("W1", shape=(3, 3)), scg.param("b1", shape=(3,))
        h1 = scg.sample("h1", scg.Bernoulli(logits=x @ W1 + b1))
        W2, b2 = scg.param("W2", shape=(3, 4)), scg.param("b2", shape=(4,))
        a = scg.sample("a", scg.Categorical(logits=h1 @ W2 + b2))
        scg.cost("neg_reward", -scg.equal(a, y))
        scg.cost("sparsity", 0.3 * h1.sum())
    rng = np.random.default_rng(1)
    return g, _perturbed(g), {"x": rng.normal(size=(2, 3)), "y": np.array([1, 2])}


def two_layers():
    """h1 -> h2 (Bernoulli child with logits b - h1 @ W: a negative affine sign) -> nonlinear cost."""
    g = scg.Graph("two_layers")
    with g:
        x = scg.input("x", shape=(2,))
        W1 = scg.param("W1", shape=(2, 3))
        h1 = scg.sample("h1", scg.Bernoulli(logits=x @ W1))
        W2, b2 = scg.param("W2", shape=(3, 2)), scg.param("b2", shape=(2,))
        h2 = scg.sample("h2", scg.Bernoulli(logits=b2 - h1 @ W2))
        v = scg.param("v", shape=(2,))
        scg.cost("fit", scg.square((h2 * v).sum() - 0.7))
        scg.cost("l1", 0.2 * scg.tanh(h1).sum())
    rng = np.random.default_rng(2)
    return g, _perturbed(g, 1), {"x": rng.normal(size=(2, 2))}


def nonaffine_child():
    """A child whose logits are not affine in the parent (tanh): the unrolled counterfactual."""
    g = scg.Graph("nonaffine")
    with g:
        x = scg.input("x", shape=(2,))
        W1 = scg.param("W1", shape=(2, 2))
        h = scg.sample("h", scg.Bernoulli(logits=x @ W1))
        W2 = scg.param("W2", shape=(2, 3))
        c = scg.sample("c", scg.Bernoulli(logits=scg.tanh(h @ W2) * 2.0))
        scg.cost("cost", scg.square(c.sum() - 1.5) + 0.5 * h.sum())
    rng = np.random.default_rng(3)
    return g, _perturbed(g, 2), {"x": rng.normal(size=(2, 2))}


def categorical_parent():
    """A categorical unit feeding a Bernoulli child through one_hot(u) @ W, plus a direct cost."""
    g = scg.Graph("cat_parent")
    with g:
        x = scg.input("x", shape=(2,))
        Wu = scg.param("Wu", shape=(2, 3))
        u = scg.sample("u", scg.Categorical(logits=x @ Wu))
        We = scg.param("We", shape=(3, 2))
        h = scg.sample("h", scg.Bernoulli(logits=scg.one_hot(u, 3) @ We))
        scg.cost("fit", scg.square(h.sum() - 1.0))
        scg.cost("pick", 0.3 * scg.equal(u, 2))
    rng = np.random.default_rng(4)
    return g, _perturbed(g, 3), {"x": rng.normal(size=(2, 2))}


def decoder():
    """An SBN-style decoder likelihood as a direct cost: the aggregated affine f-HNCA closed form."""
    g = scg.Graph("decoder")
    with g:
        x = scg.input("x", shape=(3,))
        We = scg.param("We", shape=(3, 3))
        z = scg.sample("z", scg.Bernoulli(logits=x @ We))
        Wd, bd = scg.param("Wd", shape=(3, 3)), scg.param("bd", shape=(3,))
        recon = scg.Bernoulli(logits=z @ Wd + bd)
        scg.cost("nll", -recon.log_prob(x).sum())
    rng = np.random.default_rng(5)
    return g, _perturbed(g, 4), {"x": (rng.random(size=(2, 3)) > 0.5).astype(float)}


def blackbox():
    """A black-box cost depending directly on a unit: HNCA must fall back to the score function."""
    g = scg.Graph("blackbox")
    with g:
        x = scg.input("x", shape=(2,))
        W = scg.param("W", shape=(2, 2))
        h = scg.sample("h", scg.Bernoulli(logits=x @ W))
        W2 = scg.param("W2", shape=(2, 3))
        a = scg.sample("a", scg.Categorical(logits=h @ W2))
        scg.cost("reward", -scg.equal(a, 1), blackbox=True)
        scg.cost("size", scg.square(h.sum() - 1.0), blackbox=True)
    rng = np.random.default_rng(6)
    return g, _perturbed(g, 5), {"x": rng.normal(size=(2, 2))}


GRAPHS = {f.__name__: f for f in (coin, bandit, two_layers, nonaffine_child, categorical_parent, decoder, blackbox)}


def vae():
    """A VAE-like chain: ELBO cost with decoder likelihood, prior and log q(z|x) (f-HNCA closed form)."""
    g = scg.Graph("vae")
    with g:
        x = scg.input("x", shape=(3,))
        We, be = scg.param("We", shape=(3, 3)), scg.param("be", shape=(3,))
        q = scg.Bernoulli(logits=x @ We + be)
        z = scg.sample("z", q)
        Wd, bd = scg.param("Wd", shape=(3, 3)), scg.param("bd", shape=(3,))
        prior = scg.Bernoulli(logits=scg.param("prior", shape=(3,)))
        log_px = scg.Bernoulli(logits=z @ Wd + bd).log_prob(x).sum()
        scg.cost("neg_elbo", -(log_px + prior.log_prob(z).sum() - q.log_prob(z).sum()))
    rng = np.random.default_rng(8)
    return g, _perturbed(g, 6), {"x": (rng.random(size=(2, 3)) > 0.5).astype(float)}


GRAPHS["vae"] = vae
