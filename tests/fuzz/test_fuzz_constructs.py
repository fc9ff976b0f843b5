"""Fuzzing every construct: each generated graph matches scg.exact for every estimator that
accepts it, or is refused at compile time with an ScgError naming a node. Never a raw
exception; never a call-time failure after a successful compile.

Graphs (tests/fuzz/construct_graphs.py) mix Bernoulli, categorical and Normal layers
(a Normal feeding a Bernoulli's logits, a Bernoulli feeding a Normal's loc, prior
layers), categorical samples in every use, blackbox and external costs, per-node
estimator dicts, n_samples 1-3 with each baseline.

CI profile: a bounded number of derandomised graphs on numpy. Long profile:
``SCG_FUZZ_LONG=1 python -m pytest tests/fuzz/test_fuzz_constructs.py -q`` runs 1,000
random graphs on numpy and on numba (``SCG_FUZZ_EXAMPLES=N`` overrides the count).

Known failing classes (tests/fuzz/known_failures.py) are left out of the sweep, and
each has a strict xfail reproducer below: a fix makes it XPASS (a failure), and then
the class comes out of the table.
"""

import os

import pytest
from hypothesis import HealthCheck, given, settings

from tests.fuzz.construct_check import check_configuration, oracle
from tests.fuzz.construct_graphs import construct_specs, estimator_configs
from tests.fuzz.known_failures import FIXED_CLASSES, KNOWN_CLASSES, PREDICATES, known_failure

LONG = os.environ.get("SCG_FUZZ_LONG") == "1"
EXAMPLES = int(os.environ.get("SCG_FUZZ_EXAMPLES") or (1000 if LONG else 12))
BACKENDS = ["numpy", "numba"] if LONG else ["numpy"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_construct_matches_the_oracle_or_is_refused(backend):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
              suppress_health_check=list(HealthCheck))
    @given(construct_specs())
    def check(spec):
        ex = oracle(spec)
        for config in estimator_configs(spec):
            if known_failure(spec, config):
                continue  # reproduced by a strict xfail test below
            out = check_configuration(spec, config, ex, backend=backend)
            assert not out.problem, f"{config}: {out.status}: {out.detail}\nspec = {spec}"

    check()


def _spec(layers, costs, blackbox=(), **extra):
    spec = {"layers": layers, "costs": list(costs), "blackbox": list(blackbox), "n_samples": 1,
            "baseline": None, "seed": 3}
    spec.update(extra)
    return spec


PRIOR_NORMAL = {"kind": "normal", "link": "prior", "width": 1, "scale": "const"}
PRIOR_BERNOULLI = {"kind": "bernoulli", "link": "prior", "width": 1}
# classes found by this fuzzer on main@757f0d7, fixed since: each reproducer must pass
FIXED = {
    "normal-blackbox-zero-credit": [
        ("scg", _spec([PRIOR_NORMAL], ["normal_fit"], ["normal_fit"])),
        ("hnca", _spec([PRIOR_BERNOULLI, {"kind": "normal", "link": "affine", "width": 1, "scale": "param"}],
                       ["external"], external_reads=[1], external_depends_on="all")),
    ],
    "external-lists-normal-internal-error": [
        ("scg", _spec([PRIOR_BERNOULLI, {"kind": "normal", "link": "affine", "width": 1, "scale": "param"}],
                      ["external"], external_reads=[1], external_depends_on="listed")),
    ],
    "blackbox-reads-param": [
        ("reinforce", _spec([PRIOR_BERNOULLI], ["regulariser"], ["regulariser"], blackbox_params=True)),
    ],
    "muprop-categorical-raw-exception": [
        ("muprop", _spec([{"kind": "categorical", "link": "prior", "width": 0, "k": 3, "use": "to_float"}],
                         ["penalty"])),
        ("muprop", _spec([{"kind": "categorical", "link": "prior", "width": 2, "k": 2, "use": "one_hot"}],
                         ["penalty"])),
    ],
    "hnca-scalar-observed-call-failure": [
        ("hnca", _spec([{"kind": "bernoulli", "link": "affine", "width": 1}], ["scalar_likelihood"])),
    ],
}
# classes failing now (tests/fuzz/known_failures.py): strict xfail reproducers
REPRODUCERS = {
    "piecewise-check-walks-through-discrete-samples": [
        ("reinforce", _spec([{"kind": "normal", "link": "affine", "width": 1, "scale": "const"},
                             {"kind": "categorical", "link": "affine", "width": 0, "k": 3, "use": "one_hot"}],
                            ["match"])),
    ],
}


def test_every_known_class_has_a_reproducer_that_the_predicate_recognises():
    assert set(REPRODUCERS) == set(KNOWN_CLASSES)
    assert set(FIXED) == set(FIXED_CLASSES)
    for cls, cases in REPRODUCERS.items():
        for config, spec in cases:
            assert known_failure(spec, config) == cls, (cls, config, spec)
    for cls, cases in FIXED.items():
        for config, spec in cases:
            assert PREDICATES[cls](spec, config), (cls, config, spec)


@pytest.mark.parametrize("cls, config, spec", [
    pytest.param(cls, config, spec, id=f"{cls}-{i}",
                 marks=pytest.mark.xfail(strict=True, reason=f"known failing class: {KNOWN_CLASSES[cls]}"))
    for cls, cases in REPRODUCERS.items() for i, (config, spec) in enumerate(cases)
])
def test_known_failing_class_reproducer(cls, config, spec):
    out = check_configuration(spec, config, oracle(spec))
    assert not out.problem, f"{cls}: {config}: {out.status}: {out.detail}"


@pytest.mark.parametrize("cls, config, spec", [
    pytest.param(cls, config, spec, id=f"{cls}-{i}") for cls, cases in FIXED.items() for i, (config, spec) in
    enumerate(cases)
])
def test_fixed_class_stays_fixed(cls, config, spec):
    out = check_configuration(spec, config, oracle(spec))
    assert not out.problem, f"{cls}: {config}: {out.status}: {out.detail}"
