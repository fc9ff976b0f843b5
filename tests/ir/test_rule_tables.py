"""Every op and every distribution has an entry in every rule table that needs one.

A new op or distribution is one line per table; a missing line must fail here, not
as a KeyError deep inside a user's compile.
"""

from __future__ import annotations

import pytest

from scg.backends.numpy_ops import numpy_impls
from scg.backends.numpy_ref import _LOADED
from scg.ir.distributions import DENSITY_OF, DISTRIBUTIONS
from scg.ir.infer import infer_rules
from scg.ir.networkx_view import NON_SMOOTH_INPUTS
from scg.ir.ops import DISCRETE_OPS, REPARAMETERISABLE_OPS, STOCHASTIC_OPS, Kind, Op
from scg.passes.vjp_rules import vjp_rules

TABLES = {"infer_rules": infer_rules, "vjp_rules": vjp_rules, "numpy_impls": numpy_impls}
MEAN_KINDS = {"sigmoid", "softmax", "loc"}   # what scg.estimators.mean_field knows how to build


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_op_has_a_rule(table):
    exempt = _LOADED if table == "numpy_impls" else frozenset()   # values the interpreter is given
    missing = [op.pretty for op in Op if op not in TABLES[table] and op not in exempt]
    assert not missing, f"{table} lacks {missing}"


def test_every_stochastic_op_is_a_distribution_and_the_op_sets_agree():
    assert set(DISTRIBUTIONS) == set(STOCHASTIC_OPS)
    assert DISCRETE_OPS == {op for op, d in DISTRIBUTIONS.items() if d.discrete}
    assert REPARAMETERISABLE_OPS == {op for op, d in DISTRIBUTIONS.items() if d.reparameterisable}


@pytest.mark.parametrize("op", sorted(DISTRIBUTIONS, key=lambda o: o.pretty), ids=lambda o: o.pretty)
def test_every_distribution_row_is_complete(op):
    d = DISTRIBUTIONS[op]
    assert d.density.kind is Kind.DENSITY and DENSITY_OF[op] is d.density
    assert d.density.info.arity == op.info.arity + 1 == len(d.params) + 1
    assert d.mean in MEAN_KINDS
    assert set(d.constraints) <= set(d.params)
    for table in TABLES.values():
        assert op in table and d.density in table
    if d.discrete:
        assert d.values(3) and d.noise is None
    else:
        assert d.values() is None and (d.noise is not None) == d.reparameterisable


def test_non_smooth_positions_exist():
    for op, positions in NON_SMOOTH_INPUTS.items():
        assert op.info.arity is not None and max(positions) < op.info.arity, op
