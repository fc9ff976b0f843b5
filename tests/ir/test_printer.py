"""Golden-text tests for the IR printer (``str(graph)``).

The golden files under tests/golden/ pin the format. After an intended format
change, rewrite them with ``SCG_UPDATE_GOLDEN=1 python -m pytest tests/ir/test_printer.py``
and review the diff.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import scg
from scg.ir import Op, format_graph
from scg.ir.printer import assign_names

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden"
REPO = pathlib.Path(__file__).resolve().parents[2]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("SCG_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n")
        return
    if not path.exists():
        pytest.fail(f"missing golden file {path}; create it with SCG_UPDATE_GOLDEN=1")
    expected = path.read_text().rstrip("\n")
    assert text == expected, f"IR text differs from {path} (SCG_UPDATE_GOLDEN=1 rewrites it):\n{text}"


# -- graphs ------------------------------------------------------------------

def bandit() -> scg.Graph:
    """The README's bandit example."""
    g = scg.Graph("bandit")
    with g:
        x = scg.input("x", shape=(784,))
        y = scg.input("y", shape=(), dtype="int64")
        W1 = scg.param("W1", shape=(784, 200))
        b1 = scg.param("b1", shape=(200,))
        h1 = scg.sample("h1", scg.Bernoulli(logits=x @ W1 + b1))
        W2 = scg.param("W2", shape=(200, 10))
        b2 = scg.param("b2", shape=(10,))
        a = scg.sample("a", scg.Categorical(logits=h1 @ W2 + b2))
        scg.cost("neg_reward", -scg.equal(a, y))
        scg.cost("sparsity", 0.01 * h1.sum())
    return g


def gaussian() -> scg.Graph:
    g = scg.Graph("gaussian")
    with g:
        x = scg.input("x", shape=(4,))
        W = scg.param("W", shape=(4, 2))
        log_scale = scg.param("log_scale", shape=(2,))
        q = scg.Normal(x @ W, scg.exp(log_scale))
        z = scg.sample("z", q)
        kl_ish = q.log_prob(z) - scg.Normal(0.0, 1.0).log_prob(z)
        scg.cost("kl", kl_ish.sum())
        scg.cost("fit", ((z - 1.0) ** 2).mean(axis=-1))
    return g


def external() -> scg.Graph:
    g = scg.Graph("policy")
    with g:
        obs = scg.input("obs", shape=(3,))
        W = scg.param("W", shape=(3, 4))
        a = scg.sample("a", scg.Categorical(logits=obs @ W))
        b = scg.sample("b", scg.Bernoulli(probs=0.25))
        scg.external_cost("reward_cost", depends_on=[a])
        scg.external_cost("other")
        scg.cost("hidden", scg.to_float(a) * b, blackbox=True)
    return g


def constants() -> scg.Graph:
    g = scg.Graph("consts")
    with g:
        x = scg.input("x", shape=(3,))
        k = scg.input("k", dtype="int64")
        v = np.array([0.5, -1.0, 2.0]) * x
        m = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]) @ v
        big = np.full((3, 3), 0.1234567891) @ x
        idx = np.arange(3) + k
        s = m.sum() + big.sum() + scg.to_float(idx).sum() + 2 * x.sum() - 1e-8
        scg.cost("c", s)
    return g


def collisions() -> scg.Graph:
    g = scg.Graph("collide")
    with g:
        t0 = scg.input("t0", shape=(2,))
        t2 = scg.param("t2", shape=(2,))
        u = scg.exp(t0) + t2  # generated names must skip t0 and t2
        odd = scg.param('a"b c', shape=(2,))
        s = scg.sample("t1", scg.Bernoulli(logits=u * odd))
        scg.cost("t3", s.sum())
    return g


def one_line() -> scg.Graph:
    g = scg.Graph("one")
    with g:
        scg.cost("c", scg.input("x"))
    return g


def nested() -> scg.Graph:
    g = scg.Graph("nested")
    with g:
        x = scg.input("x", shape=(5,))
        W = scg.param("W", shape=(5, 3))
        b = scg.param("b", shape=(3,))
        h = scg.tanh(x @ W + b)
        scg.cost("c", scg.logsumexp(scg.softplus(-h) * 2.0 - scg.log_softmax(h)) + scg.relu(h).mean(keepdims=True).sum())
    return g


def with_notes() -> scg.Graph:
    g = bandit()
    h1 = g["h1"]
    sg = g.add(Op.STOP_GRADIENT, [h1], note="derived by hnca for h1")
    g.add(Op.SUM, [sg], {"axes": (0,), "keepdims": False}, note="multi\nline note")
    return g


GOLDEN_GRAPHS = {
    "printer_bandit": bandit,
    "printer_gaussian": gaussian,
    "printer_external": external,
    "printer_constants": constants,
    "printer_collisions": collisions,
    "printer_one_line": one_line,
    "printer_nested": nested,
    "printer_notes": with_notes,
}


@pytest.mark.parametrize("name", sorted(GOLDEN_GRAPHS))
def test_golden(name):
    check_golden(name, str(GOLDEN_GRAPHS[name]()))


# -- format details ----------------------------------------------------------

def test_bandit_text_reads_as_documented():
    text = str(bandit())
    assert text.splitlines()[0] == (
        "graph bandit(x:f64[B,784], y:i64[B]; W1:f64[784,200], b1:f64[200], W2:f64[200,10], b2:f64[10]) {")
    assert "  h1:f64[B,200] ~ bernoulli[site=h1] t1" in text
    assert "  a:i64[B] ~ categorical[site=a] t3" in text
    assert "sum[axis=0] h1" in text
    assert "mul 0.01 t6" in text
    assert text.endswith("  return neg_reward, sparsity\n}")


def test_str_is_format_graph():
    g = bandit()
    assert str(g) == format_graph(g)


@pytest.mark.parametrize("build", list(GOLDEN_GRAPHS.values()), ids=list(GOLDEN_GRAPHS))
def test_deterministic_within_process(build):
    assert str(build()) == str(build())


def test_no_ids_or_addresses():
    for build in GOLDEN_GRAPHS.values():
        text = str(build())
        assert not re.search(r"0x[0-9a-fA-F]{4,}|#\d+\b|\bid=", text), text


_SNIPPET = """
import sys
sys.path.insert(0, {tests!r})
from ir.test_printer import GOLDEN_GRAPHS
print("\\n=====\\n".join(str(GOLDEN_GRAPHS[k]()) for k in sorted(GOLDEN_GRAPHS)))
"""


def test_deterministic_across_processes():
    # different hash seeds would expose any set/dict-order dependence
    outs = []
    for hashseed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed, PYTHONPATH=str(REPO))
        code = _SNIPPET.format(tests=str(REPO / "tests"))
        res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                             check=True)
        outs.append(res.stdout.rstrip("\n"))
    here = "\n=====\n".join(str(GOLDEN_GRAPHS[k]()) for k in sorted(GOLDEN_GRAPHS))
    assert outs[0] == outs[1] == here


def test_user_names_win_over_generated_names():
    text = str(collisions())
    lines = text.splitlines()
    assert lines[0] == 'graph collide(t0:f64[B,2]; t2:f64[2], "a\\"b c":f64[2]) {'
    bound = [line.split(":")[0].strip() for line in lines[1:-2]]
    assert len(bound) == len(set(bound)), "a name is bound twice"
    assert "t1:f64[B,2] ~ bernoulli[site=t1]" in text


def test_repeated_name_hints_get_suffixes():
    g = scg.Graph("hints")
    with g:
        x = scg.input("x", shape=(2,))
    a = g.add(Op.EXP, [x.node], name="e")
    b = g.add(Op.EXP, [a], name="e")
    g.add(Op.EXP, [b], name="e_1")  # a later user name that the suffix must not steal
    text = str(g)
    assert "  e:f64[B,2] = exp x" in text
    assert "  e_2:f64[B,2] = exp e" in text
    assert "  e_1:f64[B,2] = exp e_2" in text


def test_quoted_names_stay_on_one_line():
    g = scg.Graph("weird graph")
    with g:
        x = scg.input('a"b\nc', shape=())
        scg.cost("c\\d", x)
    text = str(g)
    assert text.splitlines()[0] == 'graph "weird graph"("a\\"b\\nc":f64[B]) {'
    assert len(text.splitlines()) == 4
    assert '"c\\\\d":f64[B] = cost "a\\"b\\nc"' in text


def test_names_that_look_like_constants_are_quoted():
    g = scg.Graph("g")
    with g:
        x = scg.input("1", shape=())
        y = scg.input("nan", shape=())
        scg.cost("-c", x + 1 + y)
    text = str(g)
    assert 'add t0 "nan"' in text
    assert 'add "1" 1' in text
    assert '"-c":f64[B] = cost' in text


def test_reduction_attrs():
    g = scg.Graph("r")
    with g:
        x = scg.input("x", shape=(2, 3))
        x.sum(axis=1)
        x.mean(axis=(0, 1), keepdims=True)
        scg.logsumexp(x)
    text = str(g)
    assert "sum[axis=1] x" in text
    assert "mean[axes=(0,1), keepdims] x" in text
    assert "logsumexp[axis=1] x" in text


def test_notes_can_be_hidden():
    g = with_notes()
    assert "# derived by hnca for h1" in str(g)
    assert "#" not in format_graph(g, notes=False)


def test_constants_print_exactly_when_scalar():
    g = scg.Graph("c")
    with g:
        x = scg.input("x")
        scg.cost("c", x * 0.1 + 3 + 1e-300)
    text = str(g)
    assert "mul t0" not in text
    assert "mul x 0.1" in text and "add t0 3" in text and "add t1 1e-300" in text


def test_outputs_with_other_names():
    g = bandit()
    g.outputs = {"loss": g["neg_reward"], "sparsity": g["sparsity"]}
    assert str(g).splitlines()[-2] == "  return loss=neg_reward, sparsity"


_NAME = st.one_of(st.sampled_from(["t0", "t1", "t2", "x", "x_1", "e", "e_1", "a b", "1"]), st.text(min_size=1, max_size=4))


@given(hints=st.lists(st.one_of(st.none(), _NAME), min_size=1, max_size=12))
@settings(max_examples=200, deadline=None)
def test_bound_names_are_unique_and_user_names_win(hints):
    g = scg.Graph("prop")
    with g:
        prev = scg.input("in", shape=(2,)).node
    for hint in hints:
        prev = g.add(Op.EXP, [prev], name=hint)
    names = assign_names(g, quote=False)
    bound = [names[id(n)] for n in g.nodes]
    assert len(bound) == len(set(bound))
    firsts = {}
    for n in g.nodes:
        if n.name is not None:
            firsts.setdefault(n.name, n)
    for name, node in firsts.items():
        assert names[id(node)] == name
    # every binding is one line, and the text is stable
    text = str(g)
    assert len(text.splitlines()) == len(hints) + 2
    assert text == str(g)
