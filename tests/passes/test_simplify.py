"""CSE, DCE, algebraic folding and the pipeline runner."""

from __future__ import annotations

import numpy as np
import pytest

import scg
from scg.backends.numpy_ref import evaluate
from scg.dsl.value import apply
from scg.errors import GraphError
from scg.ir import Node, Op, TensorType, verify
from scg.passes import cse, dce, fold, grad, run_pipeline, simplify


def _count(graph, op):
    return sum(n.op is op for n in graph.nodes)


# -- CSE --------------------------------------------------------------------------------------------
def test_cse_merges_duplicate_deterministic_subexpressions_and_equal_constants():
    g = scg.Graph("dup")
    with g:
        x = scg.input("x", shape=(3,))
        a = scg.exp(x * 2.0)
        b = scg.exp(x * 2.0)
        scg.cost("c", (a + b).sum())
    out = cse(g)
    verify(out)
    assert _count(g, Op.EXP) == 2 and _count(out, Op.EXP) == 1
    assert _count(g, Op.CONST) == 2 and _count(out, Op.CONST) == 1
    add = next(n for n in out.nodes if n.op is Op.ADD)
    assert add.inputs[0] is add.inputs[1]
    assert out["c"].name == "c" and out.outputs["c"] is out["c"]


def test_cse_keeps_distinct_constants_apart():
    g = scg.Graph("consts")
    with g:
        x = scg.input("x", shape=(2,))
        y = x * 2.0 + x * 2 + x * np.array([2.0, 2.0]) + x * -0.0 + x * 0.0
        scg.cost("c", y.sum())
    out = cse(g)
    # 2.0 (f64 scalar), 2 (i64), [2, 2] (shape (2,)), -0.0 and 0.0 (different bytes) all stay distinct
    assert _count(out, Op.CONST) == _count(g, Op.CONST) == 5


def test_cse_never_merges_samples_or_noise_or_named_leaves():
    g = scg.Graph("samples")
    with g:
        logits = scg.param("logits", shape=(3,))
        h1 = scg.sample("h1", scg.Bernoulli(logits=logits * 1.0))
        h2 = scg.sample("h2", scg.Bernoulli(logits=logits * 1.0))
        scg.cost("c1", h1.sum())
        scg.cost("c2", h2.sum())
    noise = [g.add(Op.NOISE_NORMAL, (), {"shape": (3,), "dtype": "f64", "batched": True, "site": s})
             for s in (7, 8)]
    g.outputs["n"] = g.add(Op.ADD, noise)
    out = cse(g)
    verify(out)
    assert _count(out, Op.MUL) == 1  # the logits merged ...
    assert _count(out, Op.BERNOULLI) == 2 and _count(out, Op.NOISE_NORMAL) == 2  # ... the draws did not
    assert _count(out, Op.SUM) == 2 and out["h1"].inputs == out["h2"].inputs


# -- DCE --------------------------------------------------------------------------------------------
def test_dce_drops_dead_deterministic_nodes_but_keeps_samples_and_leaves():
    g = scg.Graph("dead")
    with g:
        x = scg.input("x", shape=(3,))
        unused_in = scg.input("unused", shape=(2,))
        p = scg.param("p", shape=(3,))
        dead = scg.exp(x * p)  # noqa: F841
        h = scg.sample("h", scg.Bernoulli(logits=scg.tanh(p)))  # unused sample: kept with its logits
        scg.cost("c", (x * 3.0).sum())
    out = dce(g)
    verify(out)
    ops = [n.op for n in out.nodes]
    assert Op.EXP not in ops and Op.TANH in ops and Op.BERNOULLI in ops
    assert out["h"] is h.node and out["unused"] is unused_in.node and set(out.params) == {"p"}
    assert len(out) == len(g) - 2 and out.outputs == g.outputs


# -- folding ------------------------------------------------------------------------------------------
def test_fold_algebraic_identities():
    g = scg.Graph("fold")
    with g:
        x = scg.input("x", shape=(3,))
        a = (x + 0.0) * 1.0
        b = 0.0 + (1.0 * apply(Op.NEG, -a))
        c = scg.stop_gradient(scg.stop_gradient(b)) - 0.0
        d = apply(Op.BROADCAST_TO, c, shape=(3,), batched=True) / 1.0
        e = apply(Op.UNBROADCAST, d, shape=(3,), batched=True).reshape(3)
        scg.cost("c", (e + x * 0.0).sum())
    out = simplify(g)
    verify(out)
    assert [n.op for n in out.nodes] == [Op.INPUT, Op.STOP_GRADIENT, Op.SUM, Op.COST]
    assert out["c"].inputs[0].inputs[0].inputs[0] is x.node


def test_fold_keeps_rewrites_that_would_change_a_type():
    g = scg.Graph("typed")
    with g:
        s = scg.input("s")  # a per-row scalar
        z = scg.param("z", shape=(4,))
        k = scg.input("k", shape=(4,), dtype="int64")
        y = (s + np.zeros(4)).sum() + (s * np.ones(4)).sum()  # both broadcast s: they stay
        w = (z * 0.0).sum() + (k * 0.0).sum()  # x * 0 -> the zero constant broadcast to x * 0's type
        scg.cost("c", y + w)
    out = fold(g)
    verify(out)
    assert _count(out, Op.ADD) == _count(g, Op.ADD) and _count(out, Op.MUL) == _count(g, Op.MUL) - 2
    assert _count(out, Op.BROADCAST_TO) == 2


def test_fold_tries_both_operands():
    g = scg.Graph("ones")
    with g:
        x = scg.input("x", shape=(3,))
        ones = apply(Op.BROADCAST_TO, 1.0, shape=(3,), batched=True)
        y = ones * 1.0  # the left candidate (1.0) has the wrong type; the right one (ones) fits
        scg.cost("c", (x * y).sum())
    out = simplify(g)
    assert _count(out, Op.MUL) == 0 and out["c"].inputs[0].inputs[0] is x.node


# -- whole-graph behaviour ------------------------------------------------------------------------------
def _model():
    g = scg.Graph("mlp")
    with g:
        x = scg.input("x", shape=(4,))
        W = scg.param("W", shape=(4, 3))
        b = scg.param("b", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=x @ W + b))
        hid = scg.tanh(x @ W + b)
        scg.cost("c", scg.logsumexp(hid) + (hid * hid).sum() + 0.1 * h.sum())
    return g


def test_simplify_preserves_values_and_shrinks_gradient_graphs():
    g = _model()
    gg, grads = grad(g, g["c"], [g["W"], g["b"], g["x"]], note="grad")
    gg.outputs.update({f"d{name}": n for name, n in zip(("W", "b", "x"), grads, strict=True)})
    out = simplify(gg)
    verify(out)
    assert len(out) < len(gg) and _count(out, Op.MATMUL) < _count(gg, Op.MATMUL)
    assert _count(out, Op.BERNOULLI) == 1
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(4, 3)), "b": rng.normal(size=3)}
    inputs = {"x": rng.normal(size=(5, 4))}
    before, after = evaluate(gg, params, inputs, seed=3), evaluate(out, params, inputs, seed=3)
    for name, node in gg.outputs.items():
        np.testing.assert_allclose(after[out.outputs[name].uid], before[node.uid], rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(after[out["h"].uid], before[gg["h"].uid])  # same site, same draws


def test_passes_are_pure_and_keep_names_notes_and_origins():
    g = _model()
    snapshot = list(g.nodes)
    gg, _ = grad(g, g["c"], [g["W"]], note="grad for W")
    out = simplify(gg)
    assert g.nodes == snapshot
    for n in out.nodes:
        if n.op is Op.COST:
            assert n.name == "c" and n.origin and n.origin.startswith("test_simplify.py:")
    rebuilt = fold(_with_zero_add())
    cost = rebuilt["c"]
    assert cost.note == "kept" and cost.inputs[0].op is Op.SUM


def _with_zero_add():
    g = scg.Graph("z")
    with g:
        x = scg.input("x", shape=(2,))
        y = (x + 0.0).sum()
    g.add(Op.COST, (y.node,), {"blackbox": False}, name="c", note="kept")
    g.outputs = dict(g.costs)
    return g


# -- pipeline ----------------------------------------------------------------------------------------------
def test_run_pipeline_verifies_after_each_stage_and_dumps(monkeypatch, capsys):
    g = _model()
    monkeypatch.setenv("SCG_DUMP", "after:cse")
    out = run_pipeline(g, [("fold", fold), ("cse", cse), ("dce", dce)])
    assert "# --- IR after cse ---" in capsys.readouterr().out and len(out) < len(g)

    def corrupt(graph):
        bad = graph.derive()
        x = graph["x"]
        bad.append(Node(Op.EXP, (x,), {}, TensorType("f64", (7,), True)))  # wrong stored type
        return bad

    monkeypatch.setenv("SCG_CHECKS", "1")
    with pytest.raises(GraphError, match="after stage 'corrupt'"):
        run_pipeline(g, [("cse", cse), ("corrupt", corrupt)])
