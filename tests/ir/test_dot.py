"""DOT export: syntactically valid text, SCG-paper shapes, escaping of user strings."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scg
from scg.ir import Op

_STR = r'"(?:[^"\\\n]|\\.)*"'  # a DOT double-quoted string: no raw newline, escapes consume the next char
_ATTR = rf"\w+=(?:{_STR}|[\w.]+)"
_LINE_FORMS = [
    re.compile(rf"digraph {_STR} \{{"),
    re.compile(r"  rankdir=TB;"),
    re.compile(rf"  (n\d+) \[({_ATTR}(?:, {_ATTR})*)\];"),
    re.compile(r"  (n\d+) -> (n\d+);"),
    re.compile(r"\}"),
]


def parse_dot(text: str) -> tuple[dict[str, dict[str, str]], list[tuple[str, str]]]:
    """A strict check of the DOT subset scg emits; returns node attrs and edges."""
    assert text.endswith("}\n")
    lines = text[:-1].split("\n")
    assert _LINE_FORMS[0].fullmatch(lines[0]), lines[0]
    assert lines[-1] == "}"
    nodes: dict[str, dict[str, str]] = {}
    edges: list[tuple[str, str]] = []
    for line in lines[1:-1]:
        if _LINE_FORMS[1].fullmatch(line):
            continue
        if m := _LINE_FORMS[2].fullmatch(line):
            assert m.group(1) not in nodes, f"node {m.group(1)} declared twice"
            attrs = dict(re.findall(rf"(\w+)=({_STR}|[\w.]+)", m.group(2)))
            nodes[m.group(1)] = attrs
            continue
        m = _LINE_FORMS[3].fullmatch(line)
        assert m, f"not a DOT statement scg emits: {line!r}"
        edges.append((m.group(1), m.group(2)))
    for a, b in edges:
        assert a in nodes and b in nodes, f"edge {a} -> {b} names an undeclared node"
    return nodes, edges


def unquote(s: str) -> str:
    assert s[0] == s[-1] == '"'
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), s[1:-1])


def by_name(nodes: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    return {unquote(a["label"]).split("\n")[0]: a for a in nodes.values()}


def model() -> scg.Graph:
    g = scg.Graph("dot model")
    with g:
        x = scg.input("x", shape=(3,))
        W = scg.param("W", shape=(3, 2))
        h = scg.sample("h", scg.Bernoulli(logits=x @ W))
        z = scg.sample("z", scg.Normal(h, 1.0))
        scg.cost("c", (np.array([1.0, 2.0]) * z).sum() * 0.5)
        scg.external_cost("r", depends_on=[h])
    return g


def test_shapes_follow_the_scg_convention():
    nodes, edges = parse_dot(model().to_dot())
    named = by_name(nodes)
    assert named["h"]["shape"] == "circle"
    assert named["z"]["shape"] == "circle"
    assert named["c"]["shape"] == "diamond"
    assert named["r"]["shape"] == "diamond"
    assert named["t0"]["shape"] == "box"  # the matmul
    assert named["x"]["shape"] == named["W"]["shape"] == "box"
    # inputs, params and plain ops look different from each other
    styles = {k: (named[k].get("style"), named[k].get("fillcolor")) for k in ("x", "W", "t0")}
    assert len(set(styles.values())) == 3
    assert named["r"]["style"] != named["c"]["style"]  # external costs are marked
    assert len(edges) == 9


def test_scalar_constants_fold_into_labels():
    nodes, _edges = parse_dot(model().to_dot())
    labels = [unquote(a["label"]) for a in nodes.values()]
    assert "z\nnormal[site=z] 1.0 f64[B,2]" in labels
    assert "t4\nmul 0.5 f64[B]" in labels
    assert any(label.startswith("t1\nconst [1.0,2.0]") for label in labels)  # arrays stay nodes
    assert not any(label.startswith("1.0") for label in labels)


def test_edges_follow_inputs():
    g = model()
    nodes, edges = parse_dot(g.to_dot())
    ids = {unquote(a["label"]).split("\n")[0]: k for k, a in nodes.items()}
    assert (ids["x"], ids["t0"]) in edges
    assert (ids["W"], ids["t0"]) in edges
    assert (ids["t0"], ids["h"]) in edges
    assert (ids["h"], ids["z"]) in edges


@pytest.mark.parametrize("weird", ['a"b\nc', "back\\slash", 'end\\', "\\N\\l", "tab\there", 'q"', "{}[];->"])
def test_user_strings_are_escaped(weird):
    g = scg.Graph(weird)
    with g:
        x = scg.input(weird, shape=())
        scg.cost("c", x * 2.0)
    text = g.to_dot()
    nodes, _ = parse_dot(text)
    header = text.split("\n", 1)[0]
    assert unquote(header.removeprefix("digraph ").removesuffix(" {")) == weird.replace("\t", " ")
    labels = [unquote(a["label"]).split("\n") for a in nodes.values()]
    shown = weird.replace("\t", " ").split("\n")
    assert any(label[: len(shown)] == shown for label in labels)


def test_deterministic():
    assert model().to_dot() == model().to_dot()


def test_derived_nodes_render():
    g = model()
    g.add(Op.STOP_GRADIENT, [g["h"]], note="derived")
    nodes, edges = parse_dot(g.to_dot())
    assert len(nodes) == 12
    assert len(edges) == 10


def test_parses_with_pydot_when_available():
    pydot = pytest.importorskip("pydot")
    (parsed,) = pydot.graph_from_dot_data(model().to_dot())
    assert len(parsed.get_nodes()) >= 9


@given(name=st.text(min_size=1, max_size=12))
@settings(max_examples=200, deadline=None)
def test_any_name_gives_valid_dot(name):
    g = scg.Graph(name)
    with g:
        x = scg.input(name, shape=(2,))
        scg.cost(name + "!", x.sum())
    nodes, edges = parse_dot(g.to_dot())
    assert len(nodes) == 3 and len(edges) == 2
    shown = "".join("\n" if c in "\r\n" else " " if ord(c) < 32 or ord(c) == 127 else c for c in name)
    assert any(unquote(a["label"]).startswith(shown + "\n") for a in nodes.values())
