"""Estimators by name, and the per-node assignment ``{"default": ..., "<node>": ...}``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from scg.errors import EstimatorError
from scg.estimators import arm, hnca, learned_cv, muprop, score_function, vimco, zoo
from scg.ir.graph import Graph
from scg.ir.ops import Op

# name -> per-site derivation; pathwise sites are handled by the rewrite, not here
SITE_RULES: dict[str, Callable] = {
    "reinforce": score_function.derive_site,
    "scg": score_function.derive_site,
    "muprop": muprop.derive_site,
    "hnca": hnca.derive_site,
    "arm": arm.derive_arm,
    "disarm": arm.derive_disarm,
    "vimco": vimco.derive_site,
    "concrete": zoo.no_rule,
    "gumbel_st": zoo.no_rule,
    "rebar": learned_cv.derive_rebar,
    "relax": learned_cv.derive_relax,
}
# estimators defined for discrete units only: naming a Normal node for one is an error
DISCRETE_ONLY = ("hnca", "muprop", "arm", "disarm", "concrete", "gumbel_st", "rebar", "relax")
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
    ``"hnca"`` or ``"muprop"`` is an error, since neither applies to it. ARM, DisARM,
    Concrete and straight-through Gumbel refuse a Normal node even by default (name it
    ``"scg"`` for pathwise); ``"vimco"`` named for a Normal node gives it VIMCO's score term.
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
            if est in zoo.COUPLED + zoo.RELAXED:  # named or by default: these never reparameterise silently
                raise EstimatorError(
                    f"{est} cannot apply to the Normal node {name!r}: it is built for discrete units ("
                    f"{'Bernoulli' if est in zoo.COUPLED else 'Bernoulli, Categorical'}). Use e.g. "
                    f"estimator={{'default': {est!r}, {name!r}: 'scg'}} (pathwise for {name!r})")
            if name in per_node and est in DISCRETE_ONLY:
                raise EstimatorError(
                    f"{est} cannot apply to the Normal node {name!r}: it is defined for discrete units "
                    f"(Bernoulli, Categorical). Use 'scg' (pathwise) or 'reinforce' for it")
            explicit_vimco = est == "vimco" and name in per_node  # VIMCO's score term applies to any density
            est = est if est == "reinforce" or explicit_vimco else "pathwise"
        out[name] = est
    return out
