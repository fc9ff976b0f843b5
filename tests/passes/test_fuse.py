"""The lowering and fusion passes: op classes, kernel grouping, materialisation, plan text."""

import dataclasses
import itertools

import pytest

import scg
from scg.ir.ops import Op
from scg.passes.fuse import Plan, fuse, loop_shape
from scg.passes.lower import OpClass, lower


def _bandit():
    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(7,))
        y = scg.input("y", shape=(), dtype="int64")
        w1 = scg.param("W1", shape=(7, 5))
        h1 = scg.sample("h1", scg.Bernoulli(logits=x @ w1))
        w2 = scg.param("W2", shape=(5, 5))
        h2 = scg.sample("h2", scg.Bernoulli(logits=h1 @ w2))
        wo = scg.param("Wo", shape=(5, 4))
        a = scg.sample("a", scg.Categorical(logits=h2 @ wo))
        scg.cost("neg_reward", -scg.equal(a, y))
    return g


def _plan(estimator="hnca", **kw):
    ir = scg.compile(_bandit(), estimator=estimator).ir
    low = lower(ir)
    given = frozenset(n.uid for n in ir.nodes if low.cls(n) is OpClass.LEAF)
    return ir, low, fuse(low, given, **kw)


def test_lower_classes():
    ir, low, _ = _plan()
    cls = {n.op: low.cls(n) for n in ir.nodes}
    assert cls[Op.MATMUL] is OpClass.BLAS and cls[Op.OUTER_SUM] is OpClass.BLAS
    assert cls[Op.BERNOULLI] is OpClass.MAP and cls[Op.SIGMOID] is OpClass.MAP
    assert cls[Op.HNCA_AFFINE_DELTA] is OpClass.ROWOP and cls[Op.CATEGORICAL] is OpClass.ROWOP
    assert cls[Op.UNBROADCAST] in (OpClass.CROSS, OpClass.REDUCE, OpClass.MAP)
    assert cls[Op.PARAM] is OpClass.LEAF


def test_plan_is_pure_frozen_and_deterministic():
    _ir, low, plan = _plan()
    again = fuse(low, plan.given)
    assert str(plan) == str(again)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.kernels = ()
    assert isinstance(plan, Plan)


def test_every_node_computed_once_in_topological_order():
    ir, _low, plan = _plan("muprop")
    seen = set(plan.given)
    for k in plan.kernels:
        for n in k.nodes:
            assert n.uid not in seen
            assert all(x.uid in seen or x in k.nodes for x in n.inputs), (k.name, n)
            seen.add(n.uid)
    assert seen == {n.uid for n in ir.nodes}


def test_per_row_work_between_matmuls_is_one_kernel():
    _ir, _low, plan = _plan()
    kinds = [k.kind for k in plan.kernels if k.kind in ("rows", "blas")]
    # matmul, rows, matmul, rows, matmul, rows, then the weight gradients: no two row kernels in a row
    assert all(not (a == b == "rows") for a, b in itertools.pairwise(kinds))
    hnca = [k for k in plan.kernels if any(n.op is Op.HNCA_AFFINE_DELTA for n in k.nodes)]
    for k in hnca:  # the delta sits in the same kernel as the sampling of its child
        assert any(n.op in (Op.BERNOULLI, Op.CATEGORICAL) for n in k.nodes)


def test_elementwise_chains_share_a_loop_and_stay_in_registers():
    ir, _low, plan = _plan()
    rows = [k for k in plan.kernels if k.kind == "rows"]
    loops = [b for k in rows for b in k.blocks if b.kind == "loop" and len(b.nodes) >= 4]
    assert loops, str(plan)
    outputs = {n.uid for n in ir.outputs.values()}
    written = {u for k in rows for u in k.outputs}
    sg = [n.uid for n in ir.nodes if n.op is Op.STOP_GRADIENT]
    assert any(u not in written for u in sg)  # fused temporaries are never materialised
    assert {u for u in outputs if any(u in {n.uid for n in k.nodes} for k in rows)} <= written


def test_reduction_fuses_into_its_producer_loop():
    g = scg.Graph("r")
    with g:
        x = scg.input("x", shape=(6,))
        scg.cost("c", scg.exp(x * 2.0).sum())
    low = lower(g)
    plan = fuse(low, frozenset(n.uid for n in g.nodes if low.cls(n) is OpClass.LEAF))
    (k,) = [k for k in plan.kernels if k.kind == "rows"]
    loop = next(b for b in k.blocks if b.shape == (6,))
    assert [ir_op for ir_op in (n.op for n in k.nodes if n.uid in loop.nodes)] == [Op.MUL, Op.EXP, Op.SUM]
    assert loop_shape((1, 1)) == ()


def test_skip_and_parallel_flags():
    ir, low, plan = _plan(parallel=True)
    assert all(k.parallel for k in plan.kernels if k.kind == "rows")
    skip = frozenset(n.uid for n in ir.nodes if n.op is Op.COST)
    part = fuse(low, plan.given, skip)
    assert all(n.uid not in skip for k in part.kernels for n in k.nodes)
    assert "deferred" in str(part)


def test_plan_text_names_nodes_like_the_ir():
    _ir, _low, plan = _plan()
    text = str(plan)
    assert "h1=bernoulli" in text and "hnca_affine_delta" in text and "BLAS: t0 = matmul x W1" in text
