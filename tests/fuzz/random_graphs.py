"""A hypothesis strategy for random valid stochastic computation graphs (small enough for scg.exact).

Each graph is a random stack of discrete layers (Bernoulli or categorical units,
widths 1-3) over an input; a layer's logits are affine in the previous layer
(the HNCA closed form), or go through tanh (the unrolled fallback), or through
one_hot for a categorical parent; costs are drawn from a menu: a direct penalty,
a nonlinear function of the last layer, a likelihood of the input, a
parameter-only regulariser, an equality reward on a categorical unit.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import scg


@st.composite
def graph_specs(draw, max_layers: int = 3, max_units: int = 2):
    n_layers = draw(st.integers(1, max_layers))
    layers = []
    for _ in range(n_layers):
        kind = draw(st.sampled_from(["bernoulli", "bernoulli", "categorical"]))
        width = draw(st.integers(1, max_units)) if kind == "bernoulli" else draw(st.integers(2, 3))
        link = draw(st.sampled_from(["affine", "affine", "tanh"]))
        layers.append((kind, width, link))
    costs = draw(st.lists(st.sampled_from(["penalty", "square", "likelihood", "regulariser", "match"]),
                          min_size=1, max_size=3, unique=True))
    seed = draw(st.integers(0, 2**16))
    return {"layers": layers, "costs": costs, "seed": seed}


def build(spec):
    """Graph, params and inputs from a spec (deterministic in the spec)."""
    rng = np.random.default_rng(spec["seed"])
    g = scg.Graph("fuzz")
    with g:
        x = scg.input("x", shape=(2,))
        prev, prev_kind, prev_dim = x, "input", 2
        units = []
        for i, (kind, width, link) in enumerate(spec["layers"]):
            feat = scg.one_hot(prev, prev_dim) if prev_kind == "categorical" else prev
            W = scg.param(f"W{i}", shape=(prev_dim, width))
            b = scg.param(f"b{i}", shape=(width,))
            pre = feat @ W + b
            logits = scg.tanh(pre) * 2.0 if link == "tanh" else pre
            if kind == "bernoulli":
                u = scg.sample(f"u{i}", scg.Bernoulli(logits=logits))
                prev, prev_kind, prev_dim = u, kind, width
            else:
                u = scg.sample(f"u{i}", scg.Categorical(logits=logits))
                prev, prev_kind, prev_dim = u, kind, width
            units.append((u, kind, width))
        last, last_kind, last_dim = units[-1]
        last_f = scg.one_hot(last, last_dim) if last_kind == "categorical" else last
        first, first_kind, first_dim = units[0]
        first_f = scg.one_hot(first, first_dim) if first_kind == "categorical" else first
        for c in spec["costs"]:
            if c == "penalty":
                scg.cost("penalty", 0.3 * first_f.sum())
            elif c == "square":
                v = scg.param("v", shape=(last_f.shape[-1],))
                scg.cost("square", scg.square((last_f * v).sum() - 0.5))
            elif c == "likelihood":
                D = scg.param("D", shape=(last_f.shape[-1], 2))
                scg.cost("likelihood", -scg.Bernoulli(logits=last_f @ D).log_prob(scg.sigmoid(x)).sum())
            elif c == "regulariser":
                scg.cost("regulariser", 0.1 * scg.square(scg.param("r", shape=(2,))).sum())
            elif c == "match" and last_kind == "categorical":
                scg.cost("match", -scg.equal(last, 1))
            else:
                scg.cost("fallback", 0.2 * last_f.sum())
    params = {k: v + rng.normal(0.0, 0.8, v.shape) for k, v in g.init_params(spec["seed"]).items()}
    inputs = {"x": rng.normal(size=(2, 2))}
    return g, params, inputs
