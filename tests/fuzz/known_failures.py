"""Classes of generated graphs known to fail on the current estimators (issue 10), by predicate.

The construct fuzz test asserts the right behaviour on every other graph and
leaves these out, so a class can be listed here only together with a strict
xfail test that reproduces it (tests/fuzz/test_fuzz_constructs.py): when a fix
lands, that test XPASSes, fails, and the class must be deleted from this table.
"""

from __future__ import annotations

from scg.ir.ops import DISCRETE_OPS, Op
from tests.fuzz.construct_graphs import blackbox_param_reads, build


def node_estimator(config, name: str) -> str:
    if isinstance(config, str):
        return config
    return config.get(name, config.get("default", "scg"))


def _pathwise_normals_read_by_blackbox(oracle_graph, config) -> list[str]:
    """Normal samples served pathwise that a blackbox (or external) cost reads through
    deterministic ops or other Normals (no discrete sample in between)."""
    hits = set()
    for c in oracle_graph.costs.values():
        if not c.attrs.get("blackbox"):
            continue
        seen, stack = set(), [c]
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if n.op in DISCRETE_OPS:
                continue
            if n.op is Op.NORMAL and node_estimator(config, n.name) != "reinforce":
                hits.add(n.name)
            stack.extend(n.inputs)
    return sorted(hits)


def _muprop_categorical_crash(spec, config) -> bool:
    """MuProp on a graph with a categorical read through to_float, a one_hot deeper than K, or
    one_hot of a categorical with elements (observed: IndexError from compile)."""
    if not any(node_estimator(config, f"u{i}") == "muprop" for i in range(len(spec["layers"]))):
        return False
    for i, layer in enumerate(spec["layers"]):
        if layer["kind"] != "categorical":
            continue
        if layer["use"] == "to_float" or layer["use"] == "one_hot_wide":
            return True
        if layer["use"] == "one_hot" and layer["width"] > 0:
            return True
        if "onehot_reward" in spec["costs"] and i == min(
                j for j, la in enumerate(spec["layers"]) if la["kind"] == "categorical"):
            return True
    return False


def _hnca_scalar_observed(spec, config) -> bool:
    last = len(spec["layers"]) - 1
    return ("scalar_likelihood" in spec["costs"] and "scalar_likelihood" not in spec["blackbox"]
            and spec["layers"][last]["kind"] != "normal" and node_estimator(config, f"u{last}") == "hnca")


def _external_lists_pathwise_normal(spec, config) -> bool:
    return ("external" in spec["costs"] and spec["external_depends_on"] == "listed" and any(
        spec["layers"][i]["kind"] == "normal" and node_estimator(config, f"u{i}") != "reinforce"
        for i in spec["external_reads"]))


def _ancestors(node, through_discrete: bool) -> list:
    seen, stack, out = set(), [node], []
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        out.append(n)
        if n.op in DISCRETE_OPS and not through_discrete and n is not node:
            continue
        stack.extend(n.inputs)
    return out


def _comparison_on_discrete_sample_of_normal(graph) -> bool:
    """A comparison (equal/greater/where) that reads a Normal and a param only through a discrete sample."""
    for n in graph.nodes:
        if n.op not in (Op.EQUAL, Op.GREATER, Op.WHERE):
            continue
        wide = _ancestors(n, through_discrete=True)
        cut = _ancestors(n, through_discrete=False)
        if (any(a.op is Op.NORMAL for a in wide) and any(a.op is Op.PARAM for a in wide)
                and not any(a.op is Op.NORMAL for a in cut)):
            return True
    return False


def known_failure(spec, config) -> str | None:
    """The known class this (graph, estimator configuration) falls in, or None."""
    for cls in KNOWN_CLASSES:
        if PREDICATES[cls](spec, config):
            return cls
    return None


# every class the fuzzer has found, by predicate (the classes fixed since stay, for the survey tool)
PREDICATES = {
    "blackbox-reads-param": lambda spec, config: bool(blackbox_param_reads(build(spec)[0])),
    "piecewise-check-walks-through-discrete-samples":
        lambda spec, config: _comparison_on_discrete_sample_of_normal(build(spec)[0]),
    "muprop-categorical-raw-exception": _muprop_categorical_crash,
    "hnca-scalar-observed-call-failure": _hnca_scalar_observed,
    "external-lists-normal-internal-error": _external_lists_pathwise_normal,
    "normal-blackbox-zero-credit":
        lambda spec, config: bool(_pathwise_normals_read_by_blackbox(build(spec, oracle=True)[0], config)),
}


def classify(spec, config) -> str | None:
    """The first class (known failing or fixed) whose predicate holds, for grouping survey results."""
    return next((cls for cls, pred in PREDICATES.items() if pred(spec, config)), None)


# the classes failing now: each has a strict xfail reproducer in test_fuzz_constructs.py
KNOWN_CLASSES: dict[str, str] = {}
# found by this fuzzer on main@757f0d7 (issue 10 items 1, 3, 4, 5, 6) or after 5b3af5b (the last), fixed since
FIXED_CLASSES = {
    "piecewise-check-walks-through-discrete-samples":
        "equal/greater on a discrete sample whose logits read a Normal refused under every estimator as if it "
        "were piecewise in the Normal (false refusal)",
    "blackbox-reads-param": "a blackbox cost reading a param directly: its direct gradient silently dropped",
    "muprop-categorical-raw-exception": "MuProp with a categorical read through to_float, one_hot of depth > K or "
                                        "of several elements: IndexError from compile",
    "hnca-scalar-observed-call-failure": "HNCA on a unit whose child likelihood observes a broadcast scalar "
                                         "(log_prob(1.0)): BackendError at the first call",
    "external-lists-normal-internal-error": "external_cost(depends_on=[z]), z a pathwise Normal: \"graph has no "
                                            "node named 'z'\" at compile",
    "normal-blackbox-zero-credit": "a pathwise Normal read by a blackbox or external cost: zero credit",
}
