"""Golden text of fused plans (``print(est.plan)``): what runs as one kernel, what is materialised,
which steps are BLAS or host ops. Plans are target-agnostic (numba and cuda run the same plan);
they are built here without compiling anything.

Rewrite after an intended change with ``SCG_UPDATE_GOLDEN=1 python -m pytest tests/backends/test_plan_golden.py``.
"""

import pytest
from numba_graphs import bandit, gaussian
from test_compile_scaling import LEAVES, hnca_chain, tanh_chain

from scg.estimators.derive import derive
from scg.passes.fuse import fuse
from scg.passes.lower import lower
from tests.ir.test_printer import check_golden

CASES = {
    "bandit_hnca": (lambda: bandit(), "hnca", None),
    "bandit_reinforce_loo": (lambda: bandit(), "reinforce", "loo"),
    "bandit_muprop": (lambda: bandit(), "muprop", None),
    "gauss_scg": (lambda: gaussian(), "scg", None),
    "chain6_hnca": (lambda: hnca_chain(6), "hnca", None),
    "tanh100_scg": (lambda: tanh_chain(100), "scg", None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fused_plan_golden(name):
    build, estimator, baseline = CASES[name]
    ir = derive(build(), estimator, baseline).graph
    plan = fuse(lower(ir), frozenset(n.uid for n in ir.nodes if n.op in LEAVES), frozenset())
    check_golden(f"plan_{name}", str(plan))
