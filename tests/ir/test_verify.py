"""The verifier: every check can fail, and failures point at the node in printed IR."""

from __future__ import annotations

import re

import pytest

import scg
from scg.errors import GraphError
from scg.ir import F64, Graph, Node, Op, TensorType, maybe_verify, verify
from scg.ir.verify import CHECKS


def base() -> tuple[Graph, Node, Node]:
    g = Graph("base")
    x = g.add(Op.INPUT, (), {"shape": (3,), "dtype": F64, "batched": True}, name="x")
    w = g.add(Op.PARAM, (), {"shape": (3,), "dtype": F64, "batched": False}, name="w")
    return g, x, w


def leaf(op: Op, name: str | None, shape=(3,), batched=False) -> Node:
    return Node(op, (), {"shape": shape, "dtype": F64, "batched": batched}, TensorType(F64, shape, batched), name=name)


def force_append(g: Graph, node: Node) -> Node:
    """Append without Graph.append's own checks, as a buggy pass might."""
    g.nodes.append(node)
    g._members.add(id(node))
    return node


def assert_points_at(err: pytest.ExceptionInfo, name: str, *fragments: str) -> str:
    msg = str(err.value)
    assert repr(name) in msg.splitlines()[0], msg
    marked = [line for line in msg.splitlines() if line.startswith("--> ")]
    assert len(marked) == 1, msg
    assert marked[0].removeprefix("--> ").startswith(name), msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_well_formed_graphs_pass():
    g = scg.Graph("ok")
    with g:
        x = scg.input("x", shape=(3,))
        h = scg.sample("h", scg.Bernoulli(logits=x))
        scg.cost("c", h.sum())
    assert verify(g) is g


def test_every_check_has_a_name():
    assert [name for name, _ in CHECKS] == [
        "listed once", "topological order", "type", "unique names", "random sites"]


def test_stored_type_disagrees_with_inference():
    g, x, w = base()
    g.append(Node(Op.ADD, (x, w), {}, TensorType(F64, (4,), True), name="bad"))
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "bad", "stored type f64[B,4] differs from inferred type f64[B,3]", "[check: type]")


def test_type_inference_fails():
    g, x, _w = base()
    force_append(g, Node(Op.ADD, (x,), {}, TensorType(F64, (3,), True), name="lonely"))
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "lonely", "type inference fails", "add takes 2 inputs, got 1")


def test_missing_attribute_is_a_graph_error():
    g, x, _w = base()
    force_append(g, Node(Op.SUM, (x,), {}, TensorType(F64, (), True), name="s"))
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "s", "type inference fails", "axes")


def test_use_before_definition():
    g, x, w = base()
    e = g.add(Op.EXP, (x,), name="e")
    g.add(Op.ADD, (e, w), name="later")
    g.nodes[0], g.nodes[2] = g.nodes[2], g.nodes[0]  # e now precedes x
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "e", "uses 'x', which is not defined before it", "[check: topological order]")


def test_use_of_a_node_from_another_graph():
    g, x, _w = base()
    other = leaf(Op.PARAM, "stranger")
    force_append(g, Node(Op.ADD, (x, other), {}, TensorType(F64, (3,), True), name="mixed"))
    with pytest.raises(GraphError) as err:
        verify(g)
    msg = assert_points_at(err, "mixed", "uses 'stranger'")
    assert "<undefined 'stranger'>" in msg  # the window still prints


def test_node_listed_twice():
    g, _x, w = base()
    g.nodes.append(w)
    with pytest.raises(GraphError) as err:
        verify(g)
    msg = assert_points_at(err, "w", "appears twice")
    assert msg.count("--> ") == 1


def test_duplicate_names():
    g, _x, _w = base()
    force_append(g, leaf(Op.PARAM, "w", shape=(2,)))
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "w", "name 'w' is used twice (first by a param node)", "[check: unique names]")


def test_unnamed_param():
    g, _x, _w = base()
    force_append(g, leaf(Op.PARAM, None))
    with pytest.raises(GraphError, match=r"a param node needs a name[\s\S]*--> t0:f64\[3\]"):
        verify(g)


def test_unnamed_samples_do_not_collide():
    g, x, _w = base()
    g.add(Op.BERNOULLI, (x,))
    g.add(Op.BERNOULLI, (x,))
    verify(g)


def test_duplicate_random_sites():
    g, x, _w = base()
    g.add(Op.BERNOULLI, (x,), {"site": 0}, name="h1")
    g.add(Op.BERNOULLI, (x,), {"site": 0}, name="h2")
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "h2", "shares random site 0 with 'h1'", "[check: random sites]")


def test_missing_site():
    g, x, _w = base()
    force_append(g, Node(Op.BERNOULLI, (x,), {}, TensorType(F64, (3,), True), name="h"))
    with pytest.raises(GraphError) as err:
        verify(g)
    assert_points_at(err, "h", "needs an int `site` attribute")


def test_output_not_in_graph():
    g, _x, _w = base()
    g.outputs["ghost"] = leaf(Op.PARAM, "phantom")
    with pytest.raises(GraphError, match="output 'ghost' of graph 'base' is 'phantom', which is not a node"):
        verify(g)


def test_error_shows_the_user_source_line():
    g = scg.Graph("src")
    with g:
        x = scg.input("x", shape=(2,))
        y = scg.exp(x)
        scg.cost("c", y.sum())
    line = next(n for n in g.nodes if n.op is Op.EXP).origin
    assert re.fullmatch(r"test_verify\.py:\d+", line)
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]
    with pytest.raises(GraphError) as err:
        verify(g)
    msg = str(err.value)
    assert f"created at {line}" in msg
    assert "--> t0:f64[B,2] = exp x" in msg


def test_window_is_bounded():
    g, x, _w = base()
    prev = x
    for i in range(20):
        prev = g.add(Op.EXP, (prev,), name=f"e{i}")
    force_append(g, Node(Op.EXP, (prev,), {}, TensorType(F64, (7,), True), name="last"))
    with pytest.raises(GraphError) as err:
        verify(g)
    msg = str(err.value)
    assert "e17:" in msg and "e16:" not in msg  # three lines of context above
    assert msg.splitlines()[-1].startswith("--> last:")


# -- maybe_verify -------------------------------------------------------------

def broken() -> Graph:
    g, x, w = base()
    g.append(Node(Op.ADD, (x, w), {}, TensorType(F64, (4,), True), name="bad"))
    return g


def test_maybe_verify_checks_when_enabled(monkeypatch):
    monkeypatch.setenv("SCG_CHECKS", "1")
    monkeypatch.delenv("SCG_DUMP", raising=False)
    with pytest.raises(GraphError, match=r"after stage 'simplify': 'bad'") as err:
        maybe_verify(broken(), "simplify")
    assert "--> bad:" in str(err.value)


@pytest.mark.parametrize("value", ["", "0"])
def test_maybe_verify_skips_when_disabled(monkeypatch, value):
    monkeypatch.setenv("SCG_CHECKS", value)
    monkeypatch.delenv("SCG_DUMP", raising=False)
    g = broken()
    assert maybe_verify(g, "simplify") is g


def test_maybe_verify_dumps_after_the_named_stage(monkeypatch, capsys):
    monkeypatch.setenv("SCG_DUMP", "after:lower,after:fuse")
    g, _x, _w = base()
    maybe_verify(g, "simplify")
    assert capsys.readouterr().out == ""
    maybe_verify(g, "lower")
    out = capsys.readouterr().out
    assert out == f"# --- IR after lower ---\n{g}\n"
    maybe_verify(g, "fuse")
    assert "IR after fuse" in capsys.readouterr().out


def test_maybe_verify_dump_all(monkeypatch, capsys):
    monkeypatch.setenv("SCG_DUMP", "all")
    g, _x, _w = base()
    maybe_verify(g, "anything")
    assert capsys.readouterr().out.startswith("# --- IR after anything ---\ngraph base(x:f64[B,3]; w:f64[3]) {")
