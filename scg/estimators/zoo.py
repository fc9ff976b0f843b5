"""Compile-time rules of the coupled and relaxed estimators: applicability, options, objective, bias.

``check`` runs before any derivation and refuses, naming the node and the reason:
ARM/DisARM on a continuous node, ``"vimco"`` without ``objective="iwae"``, any other score-function estimator under
``objective="iwae"``, unknown option keys, options no node's estimator reads, and bad option values.
``relax_sites`` applies the relaxation pass (``relaxed.relax``) to the Concrete and
straight-through Gumbel nodes. ``unbiased`` / ``warn_biased`` say which estimators are
unbiased for ``J`` and what the biased ones are unbiased for.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

from scg.errors import EstimatorError, ScgWarning
from scg.estimators.relaxed import relax
from scg.ir.graph import Graph
from scg.ir.node import Node
from scg.ir.ops import Op
from scg.passes.dependencies import analyse

OBJECTIVES = ("mean", "iwae")
RELAXED = ("concrete", "gumbel_st")
COUPLED = ("arm", "disarm")
LEARNED = ("rebar", "relax")   # learned control variates (scg.estimators.learned_cv)
DEFAULT_TEMPERATURE = 0.5
# option -> the estimators that read it
OPTIONS = {"temperature": RELAXED, "cv_lr": LEARNED, "eta": LEARNED, "lambda": LEARNED, "cv_hidden": ("relax",)}
DICE_OPTIONS = ("max_hessian_size", "loaded_lambda")  # read by scg.compiled_dice, which checks them itself

UNBIASED_FOR = {
    "concrete": "it is unbiased for the relaxed objective E[f(z)], z the Concrete relaxation of the sample at "
                "temperature {tau:g} (Maddison et al. 2017), not for E[f(b)]",
    "gumbel_st": "forward it uses the discrete sample, backward the Concrete gradient at temperature {tau:g}; it is "
                 "unbiased for the relaxed objective E[f(z)] only when the costs are affine in the sample",
}


def check(model: Graph, assignment: Mapping[str, str], objective: str, options) -> dict:
    """Validate the zoo's compile-time inputs; return the resolved options."""
    if objective not in OBJECTIVES:
        raise EstimatorError(f"unknown objective {objective!r}; expected 'mean' (E[sum of costs]) or 'iwae' "
                             "(the K-sample bound, with estimator='vimco')")
    used = set(assignment.values())
    opts = _options(options, used)
    samples = model.samples
    for name, est in assignment.items():
        node = samples[name]
        if est in COUPLED and node.op not in (Op.BERNOULLI, Op.CATEGORICAL):
            raise EstimatorError(
                f"{est} cannot apply to node {name!r}: it is a {node.op.pretty} node, and {est} is built for "
                f"discrete units. Use e.g. estimator={{'default': {est!r}, {name!r}: 'scg'}}")
        if est == "vimco" and objective != "iwae":
            raise EstimatorError(
                f"vimco (node {name!r}) estimates the gradient of the K-sample objective: compile with "
                f"objective='iwae' and call with n_samples=K >= 2")
        if objective == "iwae" and est not in ("vimco", "pathwise"):
            raise EstimatorError(
                f"objective='iwae' is estimated by 'vimco' (and pathwise for reparameterised Normal nodes); "
                f"node {name!r} uses {est!r}, whose terms estimate the mean objective")
    return opts


def check_routing(routing, objective: str) -> None:
    """Under ``objective="iwae"`` a Normal node must be served pathwise alone (a score term of the mean
    objective, which routing adds for opaque costs, would be biased for the K-sample bound)."""
    if objective != "iwae":
        return
    for name, why in routing.reasons.items():
        raise EstimatorError(f"objective='iwae': the Normal node {name!r} cannot be served pathwise ({why}); name it "
                             f"for 'vimco' (estimator={{'default': 'vimco', {name!r}: 'vimco'}})")
    for name, costs in routing.score_costs.items():
        raise EstimatorError(f"objective='iwae': the Normal node {name!r} reaches the opaque cost(s) "
                             f"{', '.join(map(repr, costs))}, which need a score term; name it for 'vimco' "
                             f"(estimator={{'default': 'vimco', {name!r}: 'vimco'}})")


def _options(options, used: set[str]) -> dict:
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise EstimatorError(f"options must be a dict of estimator settings, got {options!r}")
    readers = {key: set(OPTIONS.get(key, ())) | ({"dice"} if key in DICE_OPTIONS else set()) for key in options}
    for key, who in readers.items():
        if not who:
            known = ", ".join(f"{k!r} ({'/'.join(v)})" for k, v in OPTIONS.items())
            raise EstimatorError(f"unknown option {key!r}; known options: {known}; dice reads "
                                 f"{', '.join(map(repr, DICE_OPTIONS))}")
        if not used & who:
            what = f"estimator(s) {', '.join(sorted(used))}"
            if not any(used & set(v) for v in OPTIONS.values()):
                raise EstimatorError(f"{what} takes no options, got {key!r} (read by {', '.join(sorted(who))})")
            raise EstimatorError(f"option {key!r} is read by {', '.join(sorted(who))}, and no node uses them "
                                 f"({what} in use)")
    tau = options.get("temperature", DEFAULT_TEMPERATURE)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise EstimatorError(f"option 'temperature' must be a positive finite number, got {tau!r}")
    out = {"temperature": float(tau)}
    if used & set(LEARNED):
        out.update(_learned_options(options))
    return out


def _number(options, key: str, default: float, ok, what: str) -> float:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise EstimatorError(f"option {key!r} must be {what}, got {value!r}")
    return float(value)


def _learned_options(options) -> dict:
    """REBAR/RELAX: the control variate's learning rate, initial eta and lambda, RELAX's hidden widths."""
    from scg.estimators import learned_cv as lc
    out = {"cv_lr": _number(options, "cv_lr", lc.DEFAULT_CV_LR, lambda x: x >= 0, "a finite number >= 0 (0 freezes "
                            "the control variate)"),
           "eta": _number(options, "eta", lc.DEFAULT_ETA, lambda x: True, "a finite number"),
           "lambda": _number(options, "lambda", lc.DEFAULT_LAMBDA, lambda x: x > 0, "a positive finite number")}
    hidden = options.get("cv_hidden", lc.DEFAULT_HIDDEN)
    if (not isinstance(hidden, (tuple, list))
            or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in hidden)):
        raise EstimatorError(f"option 'cv_hidden' must be a tuple of positive ints (RELAX's hidden widths, e.g. "
                             f"(10,) or ()), got {hidden!r}")
    out["cv_hidden"] = tuple(hidden)
    return out


def relax_sites(graph: Graph, assignment: Mapping[str, str], opts: Mapping) -> tuple[Graph, dict[str, Node]]:
    sites = {n: (e, opts["temperature"]) for n, e in assignment.items() if e in RELAXED}
    if not sites:
        return graph, {}
    deps = analyse(graph)
    for name, (est, _tau) in sites.items():
        opaque = [c for c in deps[name].downstream_costs if c.op is Op.EXTERNAL_COST or c.attrs.get("blackbox")]
        if opaque:
            kind = "external" if opaque[0].op is Op.EXTERNAL_COST else "black-box"
            raise EstimatorError(
                f"{est} differentiates the costs at the relaxed sample, but the {kind} cost {opaque[0].name!r} "
                f"downstream of {name!r} cannot be differentiated. Use an estimator that only needs its value "
                f"for {name!r}, e.g. estimator={{'default': {est!r}, {name!r}: 'disarm'}} or 'reinforce'")
    return relax(graph, sites)


def unbiased(assignment: Mapping[str, str]) -> bool:
    return not any(e in RELAXED for e in assignment.values())


def warn_biased(assignment: Mapping[str, str], opts: Mapping) -> None:
    for est in RELAXED:
        names = [n for n, e in assignment.items() if e == est]
        if names:
            what = UNBIASED_FOR[est].format(tau=opts["temperature"])
            warnings.warn(ScgWarning(f"{est} (nodes {', '.join(map(repr, names))}) is a biased estimate of the "
                                     f"gradient of E[sum of costs]: {what}"), stacklevel=5)


def no_rule(builder, info) -> None:
    """Relaxed sites need no surrogate term: their credit flows pathwise through the relaxation."""
