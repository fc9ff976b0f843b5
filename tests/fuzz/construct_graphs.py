"""A hypothesis strategy for random graphs that use every construct of the DSL (small enough for scg.exact).

A spec (a plain dict, printed as the minimal reproducing graph when a check fails)
is a stack of 1-3 stochastic layers over an input ``x`` (2 features):

* kind: ``bernoulli`` (1-2 units), ``categorical`` (K = 2-3 classes; 0 = a scalar
  sample, or 1-2 elements per row) or ``normal`` (1-2 units; at most 2 Normal
  elements per graph, so Gauss-Hermite stays cheap);
* link: ``affine`` in the previous layer's features, ``tanh`` of it, or ``prior``
  (unbatched logits / loc: a param only, e.g. ``Bernoulli(logits=b)``);
* how a categorical layer is read downstream (``use``): ``one_hot`` (depth K),
  ``one_hot_wide`` (depth > K), ``to_float``, ``take`` (a param vector indexed
  by the sample);
* a Normal's scale: a constant, ``softplus(param) + 0.3``, or read from the previous layer;
* a Bernoulli by ``logits=`` or ``probs=sigmoid(...)``.

Costs come from a menu (each may be ``blackbox=True``): a penalty on the first
layer, a square of the last, a Bernoulli likelihood of ``sigmoid(x)`` or of an
observed scalar 1.0 that broadcasts, a param-only regulariser, an equality reward
on a categorical, ``equal`` between two categorical samples, a one-hot-matmul
reward, a smooth fit of a Normal, a distribution's entropy, a Normal's
log q(z) - log p(z), ``where`` on a Bernoulli condition, a logsumexp, and an
external cost. The external cost is a
known function of some samples: ``build(spec)`` declares it with
``scg.external_cost`` (``depends_on`` those samples, or default = all) and returns
the NumPy function that computes it from ``run.samples``; ``build(spec,
oracle=True)`` writes the same function as an in-graph blackbox cost for scg.exact.

The estimator configurations: every named estimator, plus a per-node dict
(``{"default": a, "<layer>": b}``); each call draws ``n_samples`` in {1, 2, 3}
per row with baseline None / "ema" / "loo" ("loo" only with n_samples >= 2).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import scg

ESTIMATORS = ("reinforce", "scg", "muprop", "hnca")
MAX_NORMAL_ELEMENTS = 2
COSTS = ("penalty", "square", "likelihood", "scalar_likelihood", "regulariser", "match", "pair_equal",
         "onehot_reward", "normal_fit", "entropy", "normal_logp", "gate", "logsumexp")


@st.composite
def construct_specs(draw, max_layers: int = 3):
    layers = []
    normal_left = MAX_NORMAL_ELEMENTS
    for i in range(draw(st.integers(1, max_layers))):
        kinds = ["bernoulli", "categorical"] + (["normal"] if normal_left else [])
        kind = draw(st.sampled_from(kinds))
        layer = {"kind": kind, "link": draw(st.sampled_from(["affine", "affine", "tanh", "prior"]))}
        if kind == "bernoulli":
            layer["width"] = draw(st.integers(1, 2))
            layer["probs"] = draw(st.sampled_from([False, False, True]))  # Bernoulli(probs=sigmoid(...))
        elif kind == "categorical":
            layer["width"] = draw(st.integers(0, 2))  # 0: one scalar sample per row
            layer["k"] = draw(st.integers(2, 3))
            layer["use"] = draw(st.sampled_from(["one_hot", "to_float", "one_hot_wide", "take"]))
            if layer["use"] == "take":
                layer["table"] = draw(st.sampled_from(["const", "param"]))
        else:
            layer["width"] = draw(st.integers(1, normal_left))
            normal_left -= layer["width"]
            layer["scale"] = draw(st.sampled_from(["const", "param", "parent"]))
        if i == 0 and layer["link"] == "tanh":
            layer["link"] = "affine"
        layers.append(layer)
    costs = draw(st.lists(st.sampled_from(COSTS), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 3)) == 3:  # drawn apart from the menu, so it is not rare
        costs = [*costs, "external"]
    blackbox = sorted(draw(st.sets(st.sampled_from(costs))))
    spec = {"layers": layers, "costs": sorted(costs), "blackbox": blackbox}
    if blackbox:  # a blackbox cost reading a param directly must be refused: keep that the rarer case
        spec["blackbox_params"] = draw(st.sampled_from([False, False, False, True]))
    if "external" in costs:
        spec["external_reads"] = sorted(draw(st.sets(st.integers(0, len(layers) - 1), min_size=1)))
        spec["external_depends_on"] = draw(st.sampled_from(["all", "listed"]))
    spec["n_samples"] = draw(st.integers(1, 3))
    spec["baseline"] = draw(st.sampled_from([None, "ema", "loo"] if spec["n_samples"] > 1 else [None, "ema"]))
    if draw(st.booleans()):
        spec["mix"] = (draw(st.sampled_from(ESTIMATORS)), draw(st.integers(0, len(layers) - 1)),
                       draw(st.sampled_from(ESTIMATORS)))
    spec["seed"] = draw(st.integers(0, 2**16))
    return spec


def estimator_configs(spec) -> list:
    """Every named estimator, and the spec's per-node dict if it has one."""
    out: list = list(ESTIMATORS)
    if "mix" in spec:
        default, layer, other = spec["mix"]
        out.append({"default": default, f"u{layer}": other})
    return out


def _elements(layer) -> tuple[int, ...]:
    return () if layer["width"] == 0 else (layer["width"],)


def _features(layer, u, i):
    """A float vector read from a layer's sample (what the next layer and the costs see)."""
    if layer["kind"] != "categorical":
        return u
    k, n = layer["k"], max(layer["width"], 1)
    use = layer["use"]
    if use in ("one_hot", "one_hot_wide"):
        depth = k if use == "one_hot" else k + 2
        oh = scg.one_hot(u, depth)
        return oh if layer["width"] == 0 else oh.reshape(n * depth)
    if use == "to_float":
        v = scg.to_float(u)
    else:
        table = scg.param(f"t{i}", shape=(k,)) if layer["table"] == "param" else np.linspace(-0.8, 0.9, k)
        v = scg.take(table, u)
    return v.reshape(1) if layer["width"] == 0 else v


def _sum(v):
    return v if v.shape == () else v.sum()


def _external_dsl(spec, units):
    total = 0.0
    for i in spec["external_reads"]:
        layer, u = spec["layers"][i], units[i]
        if layer["kind"] == "bernoulli":
            total = total + _sum(u)
        elif layer["kind"] == "normal":
            total = total + _sum(scg.tanh(u))
        else:
            total = total + _sum(scg.equal(u, 1))
    return 0.5 * scg.square(total - 0.5)


def external_numpy(spec, samples):
    """The external cost from ``run.samples`` (``(B, ...)`` or ``(K, B, ...)``): as ``_external_dsl``."""
    total = 0.0
    for i in spec["external_reads"]:
        layer, u = spec["layers"][i], np.asarray(samples[f"u{i}"])
        axes = tuple(range(u.ndim - len(_elements(layer)), u.ndim))
        if layer["kind"] == "bernoulli":
            total = total + u.sum(axis=axes)
        elif layer["kind"] == "normal":
            total = total + np.tanh(u).sum(axis=axes)
        else:
            total = total + (u == 1).astype(float).sum(axis=axes)
    return 0.5 * np.square(total - 0.5)


def build(spec, *, oracle: bool = False):
    """Graph, params, inputs (2 rows) from a spec; ``oracle=True`` writes the external cost in-graph."""
    rng = np.random.default_rng(spec["seed"])
    g = scg.Graph("construct")
    with g:
        x = scg.input("x", shape=(2,))
        feat = x
        units, feats, dists = [], [], []
        for i, layer in enumerate(spec["layers"]):
            kind, link, n = layer["kind"], layer["link"], max(layer["width"], 1)
            out_shape = (n,) if kind != "categorical" else _elements(layer) + (layer["k"],)
            if link == "prior":
                pre = scg.param(f"b{i}", shape=out_shape)
            else:
                width = out_shape[-1]
                pre = feat @ scg.param(f"W{i}", shape=(feat.shape[-1], width)) + scg.param(f"b{i}", shape=out_shape)
                if link == "tanh":
                    pre = 2.0 * scg.tanh(pre)
            if kind == "bernoulli":
                dist = scg.Bernoulli(probs=scg.sigmoid(pre)) if layer.get("probs") else scg.Bernoulli(logits=pre)
            elif kind == "categorical":
                dist = scg.Categorical(logits=pre)
            else:
                dist = scg.Normal(pre, _scale(layer, feat, i, n))
            u = scg.sample(f"u{i}", dist)
            dists.append(dist)
            feat = _features(layer, u, i)
            units.append(u)
            feats.append(feat)
        _costs(spec, x, units, feats, dists, oracle)
    params = {k: v + rng.normal(0.0, 0.6, v.shape) for k, v in g.init_params(spec["seed"]).items()}
    inputs = {"x": rng.normal(size=(2, 2))}
    return g, params, inputs


def _weight(spec, cost, name, shape):
    """A cost's weight: a param, or a constant in a blackbox cost (unless the spec asks for params there)."""
    if cost in spec["blackbox"] and not spec.get("blackbox_params"):
        return np.linspace(-0.9, 0.8, int(np.prod(shape))).reshape(shape)
    return scg.param(name, shape=shape)


def _scale(layer, feat, i, n):
    """A Normal's scale: a constant, softplus(param) + 0.3, or (``parent``) softplus of the previous layer."""
    if layer["scale"] == "const":
        return 0.7
    if layer["scale"] == "parent" and layer["link"] != "prior":
        return scg.softplus(feat @ scg.param(f"Ws{i}", shape=(feat.shape[-1], n))) + 0.3
    return scg.softplus(scg.param(f"s{i}", shape=(n,))) + 0.3


def _costs(spec, x, units, feats, dists, oracle):
    layers = spec["layers"]
    cats = [i for i, layer in enumerate(layers) if layer["kind"] == "categorical"]
    normals = [i for i, layer in enumerate(layers) if layer["kind"] == "normal"]
    bernoullis = [i for i, layer in enumerate(layers) if layer["kind"] == "bernoulli"]
    for c in spec["costs"]:
        bb = c in spec["blackbox"]
        if c == "penalty":
            scg.cost(c, 0.3 * feats[0].sum(), blackbox=bb)
        elif c == "square":
            v = _weight(spec, c, "v", (feats[-1].shape[-1],))
            scg.cost(c, scg.square((feats[-1] * v).sum() - 0.5), blackbox=bb)
        elif c in ("likelihood", "scalar_likelihood"):
            D = _weight(spec, c, f"D_{c}", (feats[-1].shape[-1], 2))
            observed = scg.sigmoid(x) if c == "likelihood" else 1.0
            scg.cost(c, -scg.Bernoulli(logits=feats[-1] @ D).log_prob(observed).sum(), blackbox=bb)
        elif c == "regulariser":
            scg.cost(c, 0.1 * scg.square(scg.param("r", shape=(2,))).sum(), blackbox=bb)
        elif c == "match" and cats:
            scg.cost(c, -_sum(scg.equal(units[cats[-1]], 1)), blackbox=bb)
        elif c == "pair_equal" and len(cats) >= 2:
            scg.cost(c, -_sum(scg.equal(units[cats[0]], units[cats[1]])), blackbox=bb)
        elif c == "onehot_reward" and cats:
            i = cats[0]
            depth = layers[i]["k"] + 1
            reward = scg.one_hot(units[i], depth) @ _weight(spec, c, "w_onehot", (depth, 1))
            scg.cost(c, -reward.sum(), blackbox=bb)
        elif c == "normal_fit" and normals:
            scg.cost(c, scg.square(units[normals[0]] - 0.5).sum(), blackbox=bb)
        elif c == "entropy":  # a distribution's entropy as a (negated) cost, e.g. an ELBO's entropy term
            scg.cost(c, -0.3 * _sum(dists[0].entropy()), blackbox=bb)
        elif c == "normal_logp" and normals:  # log q(z) - log p(z) of a Normal's own sample: an ELBO's KL term
            i = normals[0]
            kl = dists[i].log_prob(units[i]) - scg.Normal(0.0, 1.0).log_prob(units[i])
            scg.cost(c, 0.5 * kl.sum(), blackbox=bb)
        elif c == "gate" and bernoullis:  # where() on a discrete condition, branches read the last layer
            a = feats[-1].sum()
            scg.cost(c, scg.where(scg.greater(units[bernoullis[0]].sum(), 0.5), a, -0.5 * a), blackbox=bb)
        elif c == "logsumexp":
            scg.cost(c, scg.logsumexp(feats[-1] * _weight(spec, c, "v_lse", (feats[-1].shape[-1],))), blackbox=bb)
        elif c == "external":
            if oracle:
                scg.cost(c, _external_dsl(spec, units), blackbox=True)
            elif spec["external_depends_on"] == "all":
                scg.external_cost(c)
            else:
                scg.external_cost(c, depends_on=[units[i] for i in spec["external_reads"]])
        else:  # the construct needs a layer the spec lacks: a plain cost on the last layer
            scg.cost(c, 0.2 * feats[-1].sum(), blackbox=bb)


def quadrature_points(spec) -> tuple[int, int]:
    """Gauss-Hermite points per Normal element to start from, and the cap of the refinement."""
    n = sum(layer["width"] for layer in spec["layers"] if layer["kind"] == "normal")
    return (24, 384) if n <= 1 else (12, 96)


def blackbox_param_reads(graph) -> list[tuple[str, str]]:
    """(cost, param) pairs where a blackbox cost reads a param other than through a sample."""
    out = []
    for name, c in graph.costs.items():
        if not c.attrs.get("blackbox"):
            continue
        seen, stack = set(), [c]
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op.name == "PARAM":
                out.append((name, n.name))
            elif n.op.kind.value != "stochastic":
                stack.extend(n.inputs)
    return sorted(set(out))
