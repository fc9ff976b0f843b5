"""The dependency analysis: downstream costs, direct costs, children and parents."""

import scg
from scg.passes.dependencies import analyse
from tests.estimators.graphs import GRAPHS


def _names(nodes):
    return [n.name for n in nodes]


def test_bandit_dependencies():
    g, _, _ = GRAPHS["bandit"]()
    d = analyse(g)
    assert list(d.sites) == ["h1", "a"]
    assert _names(d["h1"].downstream_costs) == ["neg_reward", "sparsity"]
    assert _names(d["h1"].direct_costs) == ["sparsity"]       # neg_reward only through a
    assert _names(d["h1"].children) == ["a"] and _names(d["a"].parents) == ["h1"]
    assert _names(d["a"].downstream_costs) == ["neg_reward"]  # sparsity is upstream of a
    assert d["h1"].discrete and not d["h1"].reparameterisable


def test_children_stop_at_the_first_stochastic_node():
    g, _, _ = GRAPHS["two_layers"]()
    d = analyse(g)
    assert _names(d["h1"].children) == ["h2"]
    assert _names(d["h1"].downstream_costs) == ["fit", "l1"]
    assert _names(d["h1"].direct_costs) == ["l1"]
    assert _names(d["h2"].parents) == ["h1"] and d["h2"].children == ()


def test_external_costs_follow_depends_on():
    g = scg.Graph("ext")
    with g:
        p = scg.param("p", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=p))
        a = scg.sample("a", scg.Bernoulli(logits=h * 2.0))
        scg.sample("z", scg.Bernoulli(logits=p))
        scg.external_cost("r", depends_on=[a])
        scg.external_cost("anything")
    d = analyse(g)
    assert _names(d["h"].downstream_costs) == ["r", "anything"]
    assert _names(d["h"].direct_costs) == ["anything"]           # r reaches h only through a
    assert _names(d["a"].direct_costs) == ["r", "anything"]
    assert _names(d["z"].downstream_costs) == ["anything"]       # r does not depend on z
    assert d["z"].reparameterisable is False


def test_normal_nodes_are_reparameterisable():
    g = scg.Graph("n")
    with g:
        z = scg.sample("z", scg.Normal(scg.param("m", shape=()), 1.0))
        scg.cost("c", z * z)
    assert analyse(g)["z"].reparameterisable
