"""The zoo's public surface: compile-time refusals, options, est.unbiased, the relaxed estimators
(Concrete is the exact pathwise gradient of its relaxed forward pass; straight-through Gumbel's
forward pass is the discrete one), and ``scg.exact(objective="iwae")``."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import scg
from scg.backends import rng
from tests.estimators.graphs import GRAPHS


def _normal_graph():
    g = scg.Graph("gauss")
    with g:
        mu = scg.param("mu", shape=())
        z = scg.sample("z", scg.Normal(mu, 1.0))
        scg.cost("c", z * z)
    return g


def _compile_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        return scg.compile(*args, **kwargs)


# -- refusals name the node and the reason --------------------------------------------------

@pytest.mark.parametrize("kind", ["arm", "disarm", "concrete", "gumbel_st"])
def test_discrete_only_estimators_refuse_a_normal_node(kind):
    with pytest.raises(scg.ScgError, match=r"Normal node 'z'"):
        _compile_quiet(_normal_graph(), estimator=kind)
    with pytest.raises(scg.ScgError, match=r"'z'"):
        _compile_quiet(_normal_graph(), estimator={"default": "reinforce", "z": kind})


@pytest.mark.parametrize("kind", ["arm", "disarm"])
def test_coupled_estimators_print_their_pairs(kind):
    g, _, _ = GRAPHS["bandit"]()
    text = str(scg.compile(g, estimator=kind).ir)
    assert f"# {kind} for h1: pair 1[u < s], 1[1-u < s]" in text
    assert f"# {kind} for a: stick-breaking pair from v and 1-v" in text
    assert "noise_uniform[site=h1" in text and "coupled=" in text


def test_vimco_needs_the_iwae_objective_and_two_draws():
    g, params, inputs = GRAPHS["bandit"]()
    with pytest.raises(scg.ScgError, match=r"objective='iwae'"):
        scg.compile(g, estimator="vimco")
    with pytest.raises(scg.ScgError, match=r"node 'h1' uses 'hnca'"):
        scg.compile(g, estimator={"default": "vimco", "h1": "hnca"}, objective="iwae")
    with pytest.raises(scg.ScgError, match=r"unknown objective 'elbo'"):
        scg.compile(g, estimator="reinforce", objective="elbo")
    with pytest.raises(scg.ScgError, match=r"estimator 'vimco' with objective='iwae'.*n_samples=K >= 2"):
        scg.compile(g, estimator="vimco", objective="iwae", n_samples=1)
    est = scg.compile(g, estimator="vimco", objective="iwae")
    with pytest.raises(scg.ScgError, match=r"n_samples=K >= 2"):
        est(params, inputs, seed=0)  # no K given anywhere
    assert scg.compile(g, estimator="vimco", objective="iwae", n_samples=4)(params, inputs).n_samples == 4
    with pytest.raises(scg.ScgError, match=r"n_samples=K >= 2"):
        est(params, inputs, seed=0, n_samples=1)
    with pytest.raises(scg.ScgError, match=r"n_samples=K >= 2"):
        est.sample(params, inputs, seed=0, n_samples=1)
    assert est.unbiased and est(params, inputs, seed=0, n_samples=2).objective is not None


def test_options_are_checked():
    g, _, _ = GRAPHS["coin"]()
    with pytest.raises(scg.ScgError, match=r"unknown option 'temprature'"):
        _compile_quiet(g, estimator="concrete", options={"temprature": 0.5})
    with pytest.raises(scg.ScgError, match=r"estimator\(s\) reinforce takes no options, got 'temperature'"):
        scg.compile(g, estimator="reinforce", options={"temperature": 0.5})
    with pytest.raises(scg.ScgError, match=r"option 'max_hessian_size' is read by dice, and no node uses them"):
        _compile_quiet(g, estimator="concrete", options={"max_hessian_size": 3})
    for bad in (0.0, -1.0, float("nan"), "hot", True):
        with pytest.raises(scg.ScgError, match=r"positive finite"):
            _compile_quiet(g, estimator="concrete", options={"temperature": bad})
    with pytest.raises(scg.ScgError, match=r"options must be a dict"):
        scg.compile(g, estimator="reinforce", options=[("temperature", 1.0)])


def test_relaxed_estimators_refuse_blackbox_costs_and_ops_without_relaxation():
    g, _, _ = GRAPHS["blackbox"]()
    with pytest.raises(scg.ScgError, match=r"black-box cost '(reward|size)' downstream of 'h'"):
        _compile_quiet(g, estimator="concrete")
    g = scg.Graph("cmp")
    with g:
        phi = scg.param("phi", shape=(2,))
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", scg.equal(b, 1.0).sum())
    with pytest.raises(scg.ScgError, match=r"equal of the Bernoulli sample 'b' has no continuous relaxation"):
        _compile_quiet(g, estimator="concrete")
    g = scg.Graph("idx")
    with g:
        logits = scg.param("l", shape=(3,))
        a = scg.sample("a", scg.Categorical(logits=logits))
        scg.cost("c", scg.to_float(a) * 2.0)
    with pytest.raises(scg.ScgError, match=r"to_float of the categorical sample 'a' has no continuous relaxation"):
        _compile_quiet(g, estimator="gumbel_st")


# -- unbiased flag and the compile-time warning ---------------------------------------------

@pytest.mark.parametrize("kind,unbiased", [("reinforce", True), ("hnca", True), ("disarm", True), ("arm", True),
                                           ("concrete", False), ("gumbel_st", False)])
def test_unbiased_flag_and_warning(kind, unbiased):
    g, _, _ = GRAPHS["two_layers"]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = scg.compile(g, estimator=kind, options={"temperature": 0.3} if not unbiased else None)
    assert est.unbiased is unbiased
    msgs = [str(w.message) for w in caught if issubclass(w.category, scg.ScgWarning)]
    if unbiased:
        assert not msgs
    else:
        assert len(msgs) == 1 and "unbiased for" in msgs[0] and "relaxed objective" in msgs[0] and "0.3" in msgs[0]


def test_mixed_relaxed_assignment_is_biased():
    g, _, _ = GRAPHS["two_layers"]()
    est = _compile_quiet(g, estimator={"default": "disarm", "h2": "concrete"})
    assert est.assignment == {"h1": "disarm", "h2": "concrete"} and est.unbiased is False


# -- relaxed estimators -----------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("graph", ["coin", "bandit", "two_layers", "categorical_parent", "vae"])
def test_concrete_is_the_pathwise_gradient_of_its_relaxed_forward_pass(graph, backend):
    """At a fixed seed the relaxed cost is smooth in the params: grads equal its finite differences."""
    g, params, inputs = GRAPHS[graph]()
    est = _compile_quiet(g, estimator="concrete", backend=backend, options={"temperature": 0.7})
    out = est(params, inputs, seed=3, n_samples=4)
    for name, value in params.items():
        for idx in list(np.ndindex(value.shape))[:4]:
            up = {k: v.copy() for k, v in params.items()}
            down = {k: v.copy() for k, v in params.items()}
            up[name][idx] += 1e-6
            down[name][idx] -= 1e-6
            fd = (est(up, inputs, seed=3, n_samples=4).cost - est(down, inputs, seed=3, n_samples=4).cost) / 2e-6
            assert out.grads[name][idx] == pytest.approx(fd, abs=1e-7), (name, idx)


@pytest.mark.parametrize("tau", [0.3, 1.0])
def test_gumbel_st_on_one_unit_matches_the_hand_formula(tau):
    """Forward: the realised sample; backward: f'(b) dz/dphi with z = sigmoid((phi + log(1-u) - log u)/tau)."""
    g, _, _ = GRAPHS["coin"]()
    phi, n, seed = 0.4, 64, 9
    out = _compile_quiet(g, estimator="gumbel_st", options={"temperature": tau})({"phi": np.array(phi)}, {},
                                                                                  seed=seed, n_samples=n)
    u = rng._row_uniforms(n, 1, seed, 0, np.arange(n), np.zeros(n, np.int64))[0][:, 0]
    b = (u < 1 / (1 + np.exp(-phi))).astype(float)
    z = 1 / (1 + np.exp(-(phi + np.log1p(-u) - np.log(u)) / tau))
    assert np.array_equal(out.samples["b"][:, 0], b) and np.array_equal(z > 0.5, b == 1.0)
    assert out.cost == pytest.approx(np.mean((b - 0.45) ** 2), abs=1e-15)
    assert float(out.grads["phi"]) == pytest.approx(np.mean(2 * (b - 0.45) * z * (1 - z) / tau), rel=1e-12)


def test_gumbel_st_categorical_forward_is_one_hot():
    g, params, inputs = GRAPHS["bandit"]()
    est = _compile_quiet(g, estimator="gumbel_st")
    out = est(params, inputs, seed=2, n_samples=50)
    # neg_reward = -take(hard one-hot, y) is 0 or -1 per row: the forward pass is discrete
    vals = out.costs["neg_reward"] * 100
    assert np.isclose(vals, np.round(vals)) and -100 <= vals <= 0


def test_low_temperature_concrete_approaches_the_true_gradient():
    g, params, inputs = GRAPHS["decoder"]()
    ex = scg.exact(g, params, inputs)
    est = _compile_quiet(g, estimator="concrete", options={"temperature": 0.05})
    out = est(params, inputs, seed=1, n_samples=4000)
    rel = np.linalg.norm(out.grads["Wd"] - ex.grads["Wd"]) / np.linalg.norm(ex.grads["Wd"])
    assert rel < 0.1, rel


def test_relaxed_ir_prints_the_relaxation():
    g, _, _ = GRAPHS["coin"]()
    text = str(_compile_quiet(g, estimator="gumbel_st", options={"temperature": 0.5}).ir)
    assert "noise_uniform[site=b" in text and "straight_through b" in text
    assert "# gumbel_st for b (temperature 0.5)" in text


# -- exact K-sample objective ---------------------------------------------------------------------

def test_exact_iwae_with_one_draw_is_the_mean_objective():
    g, params, inputs = GRAPHS["two_layers"]()
    a, b = scg.exact(g, params, inputs), scg.exact(g, params, inputs, objective="iwae", n_samples=1)
    assert a.cost == pytest.approx(b.cost, abs=1e-12)
    for k in params:
        np.testing.assert_allclose(a.grads[k], b.grads[k], atol=1e-12)


def test_exact_iwae_coin_by_hand_and_finite_differences():
    g, _, _ = GRAPHS["coin"]()
    phi = 0.3

    f0, f1 = 0.45 ** 2, 0.55 ** 2

    def j2(p):
        q = 1 / (1 + np.exp(-p))
        mix = -np.log(0.5 * (np.exp(-f0) + np.exp(-f1)))
        return (1 - q) ** 2 * f0 + q ** 2 * f1 + 2 * q * (1 - q) * mix

    ex = scg.exact(g, {"phi": np.array(phi)}, {}, objective="iwae", n_samples=2)
    assert ex.n_configs == 4 and ex.cost == pytest.approx(j2(phi), abs=1e-14)
    assert float(ex.grads["phi"]) == pytest.approx((j2(phi + 1e-6) - j2(phi - 1e-6)) / 2e-6, abs=1e-8)
    assert ex.cost < scg.exact(g, {"phi": np.array(phi)}, {}).cost  # the K-sample bound is tighter


def test_exact_iwae_refuses_too_many_tuples_and_bad_input():
    g, params, inputs = GRAPHS["vae"]()
    with pytest.raises(scg.ScgError, match=r"K-tuples"):
        scg.exact(g, params, inputs, objective="iwae", n_samples=8)
    with pytest.raises(scg.ScgError, match=r"n_samples=K >= 1"):
        scg.exact(g, params, inputs, objective="iwae", n_samples=0)
    with pytest.raises(scg.ScgError, match=r"unknown objective"):
        scg.exact(g, params, inputs, objective="elbo")


def test_cli_inspects_the_zoo(capsys):
    from scg import cli

    assert cli.main(["inspect", "examples/rebar_toy.py", "-e", "vimco", "--objective", "iwae"]) == 0
    assert "# vimco for b: learning signal" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scg.ScgWarning)
        assert cli.main(["inspect", "examples/rebar_toy.py", "-e", "concrete", "--temperature", "0.2"]) == 0
    assert "# concrete for b (temperature 0.2)" in capsys.readouterr().out
    assert cli.main(["inspect", "examples/rebar_toy.py", "-e", "vimco"]) == 1
    assert "objective='iwae'" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["arm", "disarm", "vimco", "concrete", "gumbel_st"])
def test_zoo_ir_golden(kind):
    """Golden text (rewrite with SCG_UPDATE_GOLDEN=1): the coin under each zoo estimator."""
    from tests.ir.test_printer import check_golden

    g, _, _ = GRAPHS["coin"]()
    kw = {"objective": "iwae"} if kind == "vimco" else {}
    check_golden(f"estimator_coin_{kind}", str(_compile_quiet(g, kind, **kw).ir))


def test_disarm_two_layers_ir_golden():
    """The coupled copy of the layer below: ``bernoulli[site=h2, coupled=...]`` re-drawn from h2's noise."""
    from tests.ir.test_printer import check_golden

    g, _, _ = GRAPHS["two_layers"]()
    text = str(scg.compile(g, "disarm").ir)
    assert 'bernoulli[site=h2, coupled="h2 re-drawn for h1"]' in text
    check_golden("estimator_two_layers_disarm", text)
