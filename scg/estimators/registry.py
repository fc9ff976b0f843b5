"""Estimators by name, and the per-node assignment ``{"default": ..., "<node>": ...}``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from scg.errors import EstimatorError
from scg.estimators import hnca, muprop, score_function
from scg.ir.graph import Graph
from scg.ir.ops import Op

# name -> per-site derivation; pathwise sites are handled by the rewrite, not here
SITE_RULES: dict[str, Callable] = {
    "reinforce": score_function.derive_site,
    "scg": score_function.derive_site,
    "muprop": muprop.derive_site,
    "hnca": hnca.derive_site,
}
ESTIMATORS = tuple(SITE_RULES)


def _check_name(name: object, where: str) -> str:
    if name == "dice":  # scg.compile routes estimator="dice" to scg.compiled_dice
        raise EstimatorError(f"'dice' cannot be chosen for {where}: it differentiates one objective of the whole "
                             "graph (Foerster et al. 2018), so it does not mix per node; use estimator='dice'")
    if name not in SITE_RULES:
        raise EstimatorError(f"unknown estimator {name!r} for {where}; expected one of {', '.join(ESTIMATORS)}")
    return name


def assign(graph: Graph, estimator: str | Mapping[str, str]) -> dict[str, str]:
    """Estimator name for each stochastic node; ``"pathwise"`` for reparameterised ones.

    ``"reinforce"`` gives every node the score function. Under ``"scg"``,
    ``"muprop"`` and ``"hnca"`` a Normal node is reparameterised (these
    estimators are for discrete units); naming a Normal node explicitly for
    ``"hnca"`` or ``"muprop"`` is an error, since neither applies to it.
    """
    if isinstance(estimator, str):
        default, per_node = _check_name(estimator, "the graph"), {}
    elif isinstance(estimator, Mapping):
        per_node = dict(estimator)
        default = _check_name(per_node.pop("default", "scg"), "'default'")
        samples = graph.samples
        for name, est in per_node.items():
            if name not in samples:
                known = ", ".join(samples) or "none"
                raise EstimatorError(f"estimator given for {name!r}, which is not a stochastic node "
                                     f"(stochastic nodes: {known})")
            _check_name(est, f"node {name!r}")
    else:
        raise EstimatorError(f"estimator must be a name or a dict, got {estimator!r}")
    out = {}
    for name, node in graph.samples.items():
        est = per_node.get(name, default)
        if node.op is Op.NORMAL:
            if name in per_node and est in ("hnca", "muprop"):
                raise EstimatorError(
                    f"{est} cannot apply to the Normal node {name!r}: it is defined for discrete units "
                    f"(Bernoulli, Categorical). Use 'scg' (pathwise) or 'reinforce' for it")
            est = "reinforce" if est == "reinforce" else "pathwise"
        out[name] = est
    return out
