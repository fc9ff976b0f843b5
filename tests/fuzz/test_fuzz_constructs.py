"""Fuzzing every construct: each generated graph matches scg.exact for every estimator that
accepts it, or is refused at compile time with an ScgError naming a node. Never a raw
exception; never a call-time failure after a successful compile.

Graphs (tests/fuzz/construct_graphs.py) mix Bernoulli, categorical and Normal layers
(a Normal feeding a Bernoulli's logits, a Bernoulli feeding a Normal's loc, prior
layers), categorical samples in every use, blackbox and external costs, per-node
estimator dicts, n_samples 1-3 with each baseline.

CI profile: a bounded number of derandomised graphs on numpy, plus pinned examples
that cover every construct. Long profile:
``SCG_FUZZ_LONG=1 python -m pytest tests/fuzz/test_fuzz_constructs.py -q`` runs 1,000
random graphs on numpy against the oracle, and 1,000 on numba against numpy (same
seeds: same refusal, samples and gradients; one estimator configuration per graph,
since each compile costs seconds). ``SCG_FUZZ_EXAMPLES=N`` overrides the count.

Known failing classes (tests/fuzz/known_failures.py) are left out of the sweep, and
each has a strict xfail reproducer below: a fix makes it XPASS (a failure), and then
the class comes out of the table.
"""

import dataclasses
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import scg
from tests.fuzz.construct_check import check_configuration, check_parity, oracle
from tests.fuzz.construct_graphs import construct_specs, estimator_configs
from tests.fuzz.known_failures import FIXED_CLASSES, KNOWN_CLASSES, PREDICATES, known_failure

LONG = os.environ.get("SCG_FUZZ_LONG") == "1"
EXAMPLES = int(os.environ.get("SCG_FUZZ_EXAMPLES") or (1000 if LONG else 12))


NORMAL = {"kind": "normal", "link": "affine", "width": 1, "scale": "param"}
# pinned graphs (run in every profile): each construct at least once, whatever the random draws
PINNED = [
    # Normal -> Bernoulli logits; Bernoulli -> Normal loc; external cost reading the Normal; LOO with 3 draws
    {"layers": [NORMAL, {"kind": "bernoulli", "link": "tanh", "width": 2},
                {"kind": "normal", "link": "affine", "width": 1, "scale": "const"}],
     "costs": ["external", "likelihood", "normal_fit"], "blackbox": ["normal_fit"], "blackbox_params": False,
     "external_reads": [0, 2], "external_depends_on": "listed", "n_samples": 3, "baseline": "loo",
     "mix": ("hnca", 1, "reinforce"), "seed": 11},
    # categoricals with elements: to_float into a prior-less child, take of a param table, equal between samples
    {"layers": [{"kind": "categorical", "link": "affine", "width": 2, "k": 3, "use": "to_float"},
                {"kind": "categorical", "link": "affine", "width": 1, "k": 3, "use": "take", "table": "param"}],
     "costs": ["match", "pair_equal", "square"], "blackbox": [], "n_samples": 2, "baseline": "ema",
     "mix": ("muprop", 0, "reinforce"), "seed": 12},
    # prior (unbatched) logits, one_hot deeper than K, a one-hot-matmul reward, an observed scalar likelihood
    {"layers": [{"kind": "bernoulli", "link": "prior", "width": 2},
                {"kind": "categorical", "link": "affine", "width": 0, "k": 2, "use": "one_hot_wide"},
                {"kind": "bernoulli", "link": "affine", "width": 1}],
     "costs": ["onehot_reward", "penalty", "scalar_likelihood"], "blackbox": ["penalty"],
     "blackbox_params": False, "n_samples": 1, "baseline": None, "seed": 13},
    # a prior Normal read by an external cost with the default depends_on (all samples), EMA baseline
    {"layers": [{"kind": "normal", "link": "prior", "width": 2, "scale": "param"},
                {"kind": "categorical", "link": "affine", "width": 0, "k": 3, "use": "one_hot"}],
     "costs": ["external", "regulariser"], "blackbox": [], "external_reads": [0, 1],
     "external_depends_on": "all", "n_samples": 2, "baseline": "ema", "mix": ("scg", 0, "reinforce"), "seed": 14},
    # equal between categoricals over 2 and 3 classes: HNCA enumerates the 3-class one, and its value 2
    # is no label error for the 2-class sample (long-profile find: a call-time InputError)
    {"layers": [{"kind": "categorical", "link": "affine", "width": 0, "k": 2, "use": "one_hot_wide"},
                {"kind": "normal", "link": "tanh", "width": 1, "scale": "parent"},
                {"kind": "categorical", "link": "affine", "width": 0, "k": 3, "use": "one_hot_wide"}],
     "costs": ["pair_equal"], "blackbox": [], "n_samples": 1, "baseline": None, "seed": 1},
    # a slowly converging quadrature: the refined oracle reaches 384 Gauss-Hermite points (long-profile find:
    # NaN oracle gradients from numpy's hermegauss there)
    {"layers": [{"kind": "normal", "link": "affine", "width": 1, "scale": "parent"},
                {"kind": "bernoulli", "link": "affine", "width": 2, "probs": False}],
     "costs": ["match"], "blackbox": ["match"], "blackbox_params": False, "n_samples": 3, "baseline": "ema",
     "seed": 6294},
]


def _check_against_oracle(spec):
    ex = oracle(spec)
    for config in estimator_configs(spec):
        if known_failure(spec, config):
            continue  # reproduced by a strict xfail test below
        out = check_configuration(spec, config, ex)
        assert not out.problem, f"{config}: {out.status}: {out.detail}\nspec = {spec}"


@pytest.mark.parametrize("spec", PINNED, ids=[f"pinned{i}" for i in range(len(PINNED))])
def test_pinned_construct_graphs(spec):
    _check_against_oracle(spec)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG, database=None,
          suppress_health_check=list(HealthCheck))
@given(construct_specs())
def test_every_construct_matches_the_oracle_or_is_refused(spec):
    _check_against_oracle(spec)


@pytest.mark.skipif(not LONG, reason="long profile only (SCG_FUZZ_LONG=1): a numba compile per graph")
@pytest.mark.parametrize("backend", ["numba"])
def test_compiled_backend_matches_numpy_on_every_construct(backend):
    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
              suppress_health_check=list(HealthCheck))
    @given(construct_specs())
    def check(spec):
        configs = estimator_configs(spec)
        config = configs[spec["seed"] % len(configs)]
        if known_failure(spec, config):
            return
        out = check_parity(spec, config, backend=backend)
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
    "piecewise-check-walks-through-discrete-samples": [
        ("reinforce", _spec([{"kind": "normal", "link": "affine", "width": 1, "scale": "const"},
                             {"kind": "categorical", "link": "affine", "width": 0, "k": 3, "use": "one_hot"}],
                            ["match"])),
    ],
}
# classes failing now (tests/fuzz/known_failures.py): strict xfail reproducers. None at present: the
# last one (piecewise-check-walks-through-discrete-samples) was fixed on main in cad9562.
REPRODUCERS: dict = {}


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


def test_the_check_can_fail(monkeypatch):
    """Each symptom is caught: a biased mean (the oracle of shifted params), a raw exception, a refusal that
    names no node, an internal error text, an unexpected refusal, and a call-time failure."""
    spec = PINNED[3]
    ex = oracle(spec)
    shifted = dict(ex.grads)
    shifted["b0"] = ex.grads["b0"] + 0.1  # a bias of 0.1 on a prior Normal's loc (se about 0.01)
    biased = dataclasses.replace(ex, grads=shifted)
    assert check_configuration(spec, "scg", ex).status == "ok"
    out = check_configuration(spec, "scg", biased)
    assert out.status == "wrong mean" and "b0" in out.detail
    real_compile = scg.compile

    def raising(exc):
        def fake(*args, **kwargs):
            raise exc
        return fake

    for exc, config, status in [
        (IndexError("tuple index out of range"), "hnca", "raw exception at compile"),
        (scg.ScgError("cannot derive this"), "hnca", "refusal names no node"),
        (scg.ScgError("graph 'g' has no node named 'u0'"), "hnca", "internal error text"),
        (scg.ScgError("sample 'u0' is refused"), "scg", "unexpected refusal"),  # scg serves every node
        (scg.ScgError("sample 'u0' is refused"), "hnca", "refused"),  # hnca may decline a node it names
    ]:
        monkeypatch.setattr(scg, "compile", raising(exc))
        assert check_configuration(spec, config, ex).status == status, exc

    def broken_at_call(*args, **kwargs):
        est = real_compile(*args, **kwargs)
        est.program.run = raising(np.linalg.LinAlgError("singular"))
        return est

    monkeypatch.setattr(scg, "compile", broken_at_call)
    assert check_configuration(spec, "scg", ex).status == "call-time failure"
