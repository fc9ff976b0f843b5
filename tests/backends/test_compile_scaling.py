"""Compile size against graph depth and width (issue 15): counts, never timings.

What the numba backend compiles is counted from the rendered module (no Numba
compilation needed): the number of distinct kernels (``@njit`` definitions: kernels of
one pattern are compiled once and aliased), the size of every kernel (nodes, array
operands) and the module's lines. IR size must grow linearly with depth; distinct
kernels must not grow with depth or width; no kernel may exceed the size bounds
(Numba's compile time grows faster than linearly with a function's size).

One deep graph of each kind is also compiled and run on numba against numpy (the
600-op tanh chain once raised RecursionError; a 100-layer HNCA chain was killed at 24 GB);
those sizes run with ``SCG_LONG=1``, the default suite compiles shorter chains.
"""

import itertools
import os

import numpy as np
import pytest

import scg
from scg.backends.numba_render import render_module
from scg.estimators.derive import derive
from scg.ir.ops import Op
from scg.passes import fuse as fuse_mod
from scg.passes.fuse import fuse
from scg.passes.lower import lower

LONG = os.environ.get("SCG_LONG") == "1"
LEAVES = (Op.INPUT, Op.PARAM, Op.EXTERNAL_COST, Op.STATE)


def hnca_chain(depth: int, width: int = 4) -> scg.Graph:
    g = scg.Graph(f"chain{depth}x{width}")
    with g:
        x = scg.input("x", shape=(width,))
        prev = x
        for i in range(depth):
            w = scg.param(f"w{i}", shape=(width, width))
            prev = scg.sample(f"h{i}", scg.Bernoulli(logits=prev @ w))
        scg.cost("c", prev.sum())
    return g


def tanh_chain(depth: int) -> scg.Graph:
    g = scg.Graph(f"tanh{depth}")
    with g:
        x = scg.input("x", shape=(3,))
        h = x * scg.param("w", shape=(3,))
        for _ in range(depth):
            h = scg.tanh(h)
        scg.cost("c", h.sum())
    return g


def counts(graph: scg.Graph, estimator: str) -> dict:
    ir = derive(graph, estimator, None).graph
    lowered = lower(ir)
    plan = fuse(lowered, frozenset(n.uid for n in ir.nodes if n.op in LEAVES), frozenset())
    source = render_module(plan, lowered, "float64", "rt")
    rows = [k for k in plan.kernels if k.kind == "rows"]
    return {
        "ir_nodes": len(ir.nodes),
        "steps": len(plan.kernels),
        "rows_kernels": len(rows),
        "compiled_kernels": source.count("@njit("),
        "lines": len(source.splitlines()),
        "max_nodes": max(len(k.nodes) for k in rows),
        "max_reads": max(len(k.inputs) for k in rows),
    }


def _linear(values: list[int], depths: list[int], slack: float = 0.1) -> bool:
    """At most linear: growth per unit of depth never rises (beyond ``slack``) above its first value."""
    rates = [(b - a) / (db - da) for a, b, da, db in zip(values, values[1:], depths, depths[1:])]
    return max(rates) <= (1 + slack) * rates[0] + 1


DEPTHS = [8, 16, 32, 64]


def test_hnca_chain_depth():
    got = [counts(hnca_chain(d), "hnca") for d in DEPTHS]
    for key in ("ir_nodes", "steps", "lines"):
        assert _linear([c[key] for c in got], DEPTHS), (key, got)
    compiled = [c["compiled_kernels"] for c in got]
    # patterns, not layers: each doubling of the depth adds at most 2 distinct kernels (the credit tail
    # that collects every layer is cut at other phases), where one kernel per layer would double them
    assert all(b - a <= 2 for a, b in itertools.pairwise(compiled)) and max(compiled) <= 12, compiled
    for c in got:
        assert c["max_nodes"] <= fuse_mod.MAX_KERNEL_NODES and c["max_reads"] <= fuse_mod.MAX_KERNEL_READS + 3


def test_hnca_chain_width():
    got = [counts(hnca_chain(6, width), "hnca") for width in (2, 8, 32, 128)]
    assert len({c["ir_nodes"] for c in got}) == 1, got        # width is in the shapes, not the node count
    assert len({c["compiled_kernels"] for c in got}) <= 2, got
    assert max(c["lines"] for c in got) <= 1.2 * min(c["lines"] for c in got), got


def test_tanh_chain_depth():
    depths = [100, 200, 400, 600]
    got = [counts(tanh_chain(d), "scg") for d in depths]
    for key in ("ir_nodes", "rows_kernels"):
        assert _linear([c[key] for c in got], depths, slack=0.25), (key, got)
    assert max(c["compiled_kernels"] for c in got) <= 6, got
    assert all(c["max_nodes"] <= fuse_mod.MAX_KERNEL_NODES for c in got), got


def test_the_bounds_are_what_the_counts_see(monkeypatch):
    """A broken variant: without the kernel bounds, a deep chain is one huge kernel (caught above)."""
    monkeypatch.setattr(fuse_mod, "MAX_KERNEL_NODES", 10**9)
    monkeypatch.setattr(fuse_mod, "MAX_KERNEL_READS", 10**9)
    c = counts(tanh_chain(200), "scg")
    assert c["max_nodes"] > 800  # the whole chain and its backward pass in one kernel


def test_identical_layers_share_one_kernel_but_keep_their_own_random_sites():
    est = scg.compile(hnca_chain(6), "hnca", backend="numpy")
    ir = est.ir
    lowered = lower(ir)
    plan = fuse(lowered, frozenset(n.uid for n in ir.nodes if n.op in LEAVES), frozenset())
    source = render_module(plan, lowered, "float64", "rt")
    assert source.count("same pattern as") >= 3
    sites = [line for line in source.splitlines() if line.startswith("SITES[")]
    assert len({s.split(" = ")[1] for s in sites}) == len(sites)  # every kernel call has its own sites


# the default suite compiles chains long enough for several pieces and aliases; SCG_LONG=1 the sizes
DEEP = ([(600, 40), (100, 100)] if LONG else [(100, 12)])


@pytest.mark.parametrize("graph, estimator", [g for t, h in DEEP for g in ((tanh_chain(t), "scg"),
                                                                             (hnca_chain(h), "hnca"))],
                         ids=[i for t, h in DEEP for i in (f"tanh{t}", f"hnca{h}")])
def test_deep_graphs_compile_and_match_numpy(graph, estimator):
    params = graph.init_params(seed=0)
    width = graph.inputs["x"].shape[0]
    inputs = {"x": np.random.default_rng(0).normal(size=(5, width))}
    ref = scg.compile(graph, estimator, backend="numpy")(params, inputs, seed=3)
    out = scg.compile(graph, estimator, backend="numba")(params, inputs, seed=3)
    for k, v in ref.samples.items():
        assert np.array_equal(out.samples[k], v), k
    for k, v in ref.grads.items():
        np.testing.assert_allclose(out.grads[k], v, rtol=1e-10, atol=1e-12)


def test_literal_sites_would_compile_one_kernel_per_layer(monkeypatch):
    """A broken variant: random sites baked into the text make every layer its own pattern (caught above)."""
    from scg.backends.numba_render import KernelContext
    monkeypatch.setattr(KernelContext, "site", lambda self, node: str(int(node.attrs["site"])))
    compiled = [counts(hnca_chain(d), "hnca")["compiled_kernels"] for d in (8, 16)]
    assert compiled[1] - compiled[0] >= 8, compiled
