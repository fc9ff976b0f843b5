"""The REBAR toy problem (Tucker et al. 2017): minimise E[(b - t)^2], b ~ Bernoulli(sigmoid(phi)).

At phi = 0 and t = 0.45 the exact gradient is sigmoid'(0) * ((1 - t)^2 - t^2) = 0.025,
small next to the cost's size (~0.25): a hard case for the score function. For
each estimator this prints the mean and standard deviation of single-sample
gradient estimates at phi = 0 against ``scg.exact`` (REBAR at its start
eta = 1, lambda = 0.5, at the issue's best fixed eta = 99, lambda = 100, and after
adapting its control variate at phi = 0), then optimises phi with each estimator
(SGD) for t in {0.45, 0.499, 0.501} and tracks the exact expected cost and the
variance of one gradient estimate along training (REBAR and RELAX adapt their
control variates online, one Adam step per call, ``options={"cv_lr": ...}``).

    python examples/rebar_toy.py --quick
    python examples/rebar_toy.py               # full run (see examples/README.md)
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import _common  # before numpy: pins BLAS to one thread (see _common.py)
import numpy as np

import scg

ESTIMATORS = {  # label -> (estimator, baseline, n_samples, learned control variate?)
    "reinforce": ("reinforce", None, 1, False),
    "reinforce+ema": ("reinforce", "ema", 1, False),
    "rloo (K=2)": ("reinforce", "loo", 2, False),
    "muprop": ("muprop", None, 1, False),
    "hnca (f-HNCA)": ("hnca", None, 1, False),
    "disarm": ("disarm", None, 1, False),
    "rebar": ("rebar", None, 1, True),
    "relax": ("relax", None, 1, True),
}
TARGETS = (0.45, 0.499, 0.501)
FLOOR = 1e-12  # the plot's floor: f-HNCA and DisARM are exact (zero variance) here


def build_graph(target: float) -> scg.Graph:
    g = scg.Graph("rebar_toy")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - target) ** 2)
    return g

graph = build_graph(0.45)  # module-level, for `scg inspect examples/rebar_toy.py`



def _compile(g, label, args, cv_lr=None, **options):
    estimator, baseline, _k, learned = ESTIMATORS[label]
    if learned:
        default = args.cv_lr if estimator == "rebar" else args.relax_cv_lr
        options = {"cv_lr": default if cv_lr is None else cv_lr, **options}
    return scg.compile(g, estimator=estimator, baseline=baseline, backend=args.backend, precision="float64",
                       options=options or None)


def _stats_row(est, params, exact, args, k, seed=1):
    t0 = time.perf_counter()
    st = scg.diagnostics.gradient_stats(est, params, {}, n=args.draws, seed=seed, n_samples=k)["phi"]
    us = 1e6 * (time.perf_counter() - t0) / args.draws
    mean, var = float(st.mean), float(st.variance)
    se = float(np.sqrt(var / args.draws))
    noiseless = var <= 1e-24 * max(1.0, mean * mean)
    return {"mean": mean, "std": float(np.sqrt(var)), "variance": var, "std_error": se,
            "abs_error": abs(mean - exact), "z_vs_exact": None if noiseless else (mean - exact) / se,
            "samples_per_estimate": k, "us_per_call": us}


def gradient_table(g, args, phi0):
    params = {"phi": np.array(phi0)}
    exact = float(scg.exact(g, params, {}).grads["phi"])
    rows, adapted = {}, {}
    for label, (_e, baseline, k, learned) in ESTIMATORS.items():
        if learned:
            continue
        est = _compile(g, label, args)
        if baseline == "ema":
            for i in range(20):  # warm the baseline at this point
                est(params, {}, seed=10_000_000 + i)
        rows[label] = _stats_row(est, params, exact, args, k)
    for label in ("rebar", "relax"):
        if label == "rebar":
            for eta, lam, what in ((1.0, 0.5, "start"), (99.0, 100.0, "best fixed of the issue")):
                est = _compile(g, label, args, cv_lr=0.0, eta=eta, **{"lambda": lam})
                rows[f"rebar eta={eta:g} lambda={lam:g} ({what})"] = _stats_row(est, params, exact, args, 1)
        lr = args.cv_lr if label == "rebar" else args.relax_cv_lr
        est = _compile(g, label, args)
        for i in range(args.adapt_steps):   # adapt the control variate at phi = 0 (phi itself fixed)
            est(params, {}, seed=20_000_000 + i)
        fine = _compile(g, label, args, cv_lr=lr / 10)   # then a tenth of the step, from the same state
        fine.load_state(est.state)
        for i in range(args.adapt_steps // 2):
            fine(params, {}, seed=30_000_000 + i)
        for what, state, steps in (("", est.state, f"{args.adapt_steps} Adam steps, cv_lr {lr:g}"),
                                   (" fine", fine.state, f"+ {args.adapt_steps // 2} at cv_lr {lr / 10:g}")):
            frozen = _compile(g, label, args, cv_lr=0.0)
            frozen.load_state(state)
            name = f"{label} adapted ({steps})"
            rows[name] = _stats_row(frozen, params, exact, args, 1)
            adapted[label + what] = {"eta": float(np.sinh(state["asinh_eta.b"])),
                                     "lambda": float(np.exp(state["log_lambda.b"])), "variance": rows[name]["variance"]}
    return exact, float(scg.exact(g, params, {}).cost), rows, adapted


def optimise(g, args, target):
    curves = {}
    for label, (_e, baseline, k, learned) in ESTIMATORS.items():
        est = _compile(g, label, args)
        params = {"phi": np.array(0.0)}
        opt = scg.optim.SGD(args.lr)
        probe = _compile(g, label, args, cv_lr=0.0)   # a frozen copy: measuring must not train the control variate
        curve = []
        for step in range(args.steps + 1):
            if step % args.log_every == 0:
                if baseline == "ema" or learned:
                    probe.load_state(est.state)  # continue from the training run's baseline / control variate
                var = scg.diagnostics.gradient_stats(probe, dict(params), {}, n=args.var_draws, seed=10**9 + step,
                                                     n_samples=k)["phi"].variance
                row = {"step": step, "phi": float(params["phi"]), "grad_variance": float(var),
                       "exact_cost": float(scg.exact(g, params, {}).cost)}
                if learned:
                    row.update(eta=float(np.sinh(est.state["asinh_eta.b"])),
                               **{"lambda": float(np.exp(est.state["log_lambda.b"]))})
                curve.append(row)
            if step < args.steps:
                opt.step(params, est(params, {}, seed=step, n_samples=k).grads)
        curves[label] = curve
        print(f"  t={target}: {label:16s} final phi {curve[-1]['phi']:8.3f}   exact cost {curve[-1]['exact_cost']:.5f}"
              f"   mean log10 variance along the run "
              f"{np.mean([np.log10(max(r['grad_variance'], 1e-20)) for r in curve]):.2f}", flush=True)
    return curves


def main(argv=None):
    p = _common.base_parser(__doc__.split("\n")[0], "rebar_toy")
    p.add_argument("--targets", type=float, nargs="+", default=list(TARGETS))
    p.add_argument("--draws", type=int, default=20000, help="single-sample estimates per estimator at phi = 0")
    p.add_argument("--steps", type=int, default=2000, help="SGD steps in the optimisation comparison")
    p.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    p.add_argument("--cv-lr", type=float, default=0.1, help="Adam step of REBAR's control variate (eta, lambda)")
    p.add_argument("--relax-cv-lr", type=float, default=0.01, help="Adam step of RELAX's (eta, lambda and the MLP r)")
    p.add_argument("--adapt-steps", type=int, default=2000, help="control-variate steps at phi = 0 for the table")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--var-draws", type=int, default=300, help="estimates per variance point along training")
    args = p.parse_args(argv)
    if args.quick:
        args.draws, args.steps, args.log_every, args.var_draws, args.adapt_steps = 2000, 200, 50, 100, 300
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = build_graph(args.targets[0])

    exact_grad, exact_cost, rows, adapted = gradient_table(g, args, 0.0)
    print(f"E[(b - {args.targets[0]})^2] at phi = 0: exact cost {exact_cost:.4f}, exact gradient {exact_grad:.6f}")
    print(f"single-sample estimates at phi = 0 ({args.draws} draws each):")
    print(f"  {'estimator':58s} {'mean':>10s} {'variance':>10s} {'std err':>9s} {'z vs exact':>10s} {'us/call':>8s}")
    for label, r in rows.items():
        z = "no noise" if r["z_vs_exact"] is None else f"{r['z_vs_exact']:.2f}"
        print(f"  {label:58s} {r['mean']:10.5f} {r['variance']:10.3g} {r['std_error']:9.5f} {z:>10s} "
              f"{r['us_per_call']:8.0f}")
    for label, a in adapted.items():
        print(f"  {label} adapted to eta = {a['eta']:.4g}, lambda = {a['lambda']:.4g}: variance {a['variance']:.3g} "
              f"({a['variance'] / 3.2e-4:.2g} x the issue's best fixed 3.2e-4)")

    curves = {}
    for target in args.targets:
        print(f"\nSGD (lr {args.lr:g}) from phi = 0, {args.steps} steps, t = {target}:")
        curves[str(target)] = optimise(build_graph(target), args, target)

    with open(out / "gradients.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["estimator", "mean", "variance", "std_error", "z_vs_exact", "exact"])
        for label, r in rows.items():
            w.writerow([label, r["mean"], r["variance"], r["std_error"], r["z_vs_exact"], exact_grad])
    _common.write_json(out / "results.json", {
        "command": _common.command_line(), "config": {**vars(args), "out": _common.shown(args.out)},
        "exact_gradient": exact_grad, "exact_cost": exact_cost, "estimates_at_phi0": rows,
        "adapted_at_phi0": adapted, "optimisation": curves, "environment": _common.environment()})
    if not args.no_plot:
        plot(rows, curves, exact_grad, args, out / "rebar_toy.png")
    print(f"wrote {_common.shown(out)}/results.json, gradients.csv" + ("" if args.no_plot else ", rebar_toy.png"))


def plot(rows, curves, exact_grad, args, path):
    plt = _common.pyplot()
    if plt is None:
        return
    n = len(curves)
    fig, axes = plt.subplots(1, n + 1, figsize=(5.2 * (n + 1), 4.6))
    a1 = axes[0]
    labels = list(rows)
    y = np.arange(len(labels))
    a1.errorbar([rows[lb]["mean"] for lb in labels], y, xerr=[rows[lb]["std"] for lb in labels], fmt="o",
                capsize=4, label="mean +- 1 std of one estimate")
    a1.axvline(exact_grad, color="k", ls="--", label=f"exact {exact_grad:.3f} (scg.exact)")
    a1.set_yticks(y, [lb.replace(" Adam steps", "").replace("best fixed of the issue", "issue's best") for lb in labels],
                  fontsize=7)
    a1.set_xlabel(f"d/dphi E[(b - {args.targets[0]})^2] at phi = 0")
    a1.legend(fontsize=7)
    a1.grid(alpha=0.3)
    for ax, (target, by_label) in zip(axes[1:], curves.items(), strict=True):
        for label, c in by_label.items():
            ax.plot([r["step"] for r in c], [np.log10(max(r["grad_variance"], FLOOR)) for r in c], label=label)
        ax.set_ylim(np.log10(FLOOR) - 0.5, 0)
        ax.set_xlabel(f"SGD step (lr {args.lr:g})")
        ax.set_ylabel("log10 variance of one gradient estimate")
        ax.set_title(f"t = {target}")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle("REBAR toy: b ~ Bernoulli(sigmoid(phi)), cost (b - t)^2; variance along training "
                 f"(REBAR/RELAX adapt online, cv_lr {args.cv_lr:g}/{args.relax_cv_lr:g}; zero variance drawn at {FLOOR:g})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
