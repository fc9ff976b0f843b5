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


def known_failure(spec, config) -> str | None:
    """The known class this (graph, estimator configuration) falls in, or None."""
    g = build(spec)[0]
    if blackbox_param_reads(g):
        return "blackbox-reads-param"
    if _muprop_categorical_crash(spec, config):
        return "muprop-categorical-raw-exception"
    if _hnca_scalar_observed(spec, config):
        return "hnca-scalar-observed-call-failure"
    if _external_lists_pathwise_normal(spec, config):
        return "external-lists-normal-internal-error"
    if _pathwise_normals_read_by_blackbox(build(spec, oracle=True)[0], config):
        return "normal-blackbox-zero-credit"
    return None


KNOWN_CLASSES = {
    "blackbox-reads-param": "a blackbox cost that reads a param directly: its direct gradient is silently "
                            "dropped (issue 10 item 3; must be refused at compile time naming cost and param)",
    "muprop-categorical-raw-exception": "MuProp with a categorical read through to_float, one_hot of depth > K or "
                                        "of several elements: IndexError from compile (issue 10 item 4)",
    "hnca-scalar-observed-call-failure": "HNCA on a unit whose child likelihood observes a broadcast scalar "
                                         "(log_prob(1.0)): BackendError at the first call (issue 10 item 5)",
    "external-lists-normal-internal-error": "external_cost(depends_on=[z]) with z a Normal served pathwise: "
                                            "compile fails with \"graph has no node named 'z'\" (issue 10 item 6)",
    "normal-blackbox-zero-credit": "a Normal served pathwise (scg, muprop, hnca) read by a blackbox or external "
                                   "cost: that cost's credit for the Normal is zero (issue 10 item 1)",
}
