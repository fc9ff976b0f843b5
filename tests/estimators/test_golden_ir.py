"""Golden text of derived estimator IR: one small graph per estimator, and the bandit under HNCA.

Rewrite after an intended change with ``SCG_UPDATE_GOLDEN=1 python -m pytest tests/estimators``.
"""

import pytest

import scg
from tests.estimators.graphs import GRAPHS
from tests.ir.test_printer import check_golden


@pytest.mark.parametrize("estimator", ["reinforce", "scg", "muprop", "hnca"])
def test_estimator_ir_golden(estimator):
    g, _, _ = GRAPHS["coin"]()
    check_golden(f"estimator_coin_{estimator}", str(scg.compile(g, estimator).ir))


@pytest.mark.parametrize("baseline", [None, "ema", "loo"])
def test_bandit_hnca_ir_golden(baseline):
    g, _, _ = GRAPHS["bandit"]()
    check_golden(f"estimator_bandit_hnca_{baseline}", str(scg.compile(g, "hnca", baseline=baseline).ir))


def test_pathwise_ir_golden():
    g = scg.Graph("gauss")
    with g:
        mu = scg.param("mu", shape=(2,))
        z = scg.sample("z", scg.Normal(mu, 0.5))
        scg.cost("sq", scg.square(z - 1.0).sum())
    check_golden("estimator_gauss_scg", str(scg.compile(g, "scg").ir))
