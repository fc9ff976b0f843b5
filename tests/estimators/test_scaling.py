"""Derivation size grows linearly with the graph (counts, never wall-clock).

A wide sum of samples ``s0.sum() + ... + s{N-1}.sum()`` used to give HNCA an IR
quadratic in N (every unit's f-HNCA counterfactual replayed the whole chain of
adds: 43k nodes at N = 200); a deep chain of Bernoulli layers exercises the
children/Markov-blanket side of the derivation.
"""

from __future__ import annotations

import pytest

import scg


def wide_sum(n: int) -> scg.Graph:
    g = scg.Graph("wide")
    with g:
        b = scg.param("b", shape=(2,))
        total = None
        for i in range(n):
            s = scg.sample(f"s{i}", scg.Bernoulli(logits=b))
            total = s.sum() if total is None else total + s.sum()
        scg.cost("c", scg.square(total - 1.0))
    return g


def deep_chain(n: int) -> scg.Graph:
    g = scg.Graph("deep")
    with g:
        x = scg.input("x", shape=(3,))
        h = x
        for i in range(n):
            W = scg.param(f"W{i}", shape=(3, 3))
            h = scg.sample(f"h{i}", scg.Bernoulli(logits=h @ W))
        scg.cost("c", scg.square(h.sum() - 1.0))
    return g


@pytest.mark.parametrize("build", [wide_sum, deep_chain])
@pytest.mark.parametrize("estimator", ["reinforce", "muprop", "hnca"])
def test_estimator_ir_grows_linearly(build, estimator):
    sizes = {n: len(scg.compile(build(n), estimator).ir.nodes) for n in (8, 16, 32)}
    # a constant number of nodes per unit: the increments double with the doubling of n
    first, second = sizes[16] - sizes[8], sizes[32] - sizes[16]
    assert second <= 2 * first + 8, sizes


def test_wide_sum_hnca_size_per_unit_is_small():
    n = 64
    per_unit = len(scg.compile(wide_sum(n), "hnca").ir.nodes) / n
    assert per_unit < 40, per_unit   # 20 today; it was ~220 at n = 200
