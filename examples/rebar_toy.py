"""The REBAR toy problem (Tucker et al. 2017): minimise E[(b - t)^2], b ~ Bernoulli(sigmoid(phi)), t = 0.45.

The exact gradient at phi = 0 is sigmoid'(0) * ((1 - t)^2 - t^2) = 0.25 * 0.1 = 0.025,
small next to the cost's size (~0.25): a hard case for the score function. For
each estimator this prints the mean and standard deviation of single-sample
gradient estimates at phi = 0 against ``scg.exact``, then optimises phi with
each estimator (SGD) and tracks the exact expected cost.

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

ESTIMATORS = {  # label -> (estimator, baseline, n_samples)
    "reinforce": ("reinforce", None, 1),
    "reinforce+ema": ("reinforce", "ema", 1),
    "reinforce+loo (K=2)": ("reinforce", "loo", 2),
    "muprop": ("muprop", None, 1),
    "hnca (f-HNCA)": ("hnca", None, 1),
}


def build_graph(target: float) -> scg.Graph:
    g = scg.Graph("rebar_toy")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - target) ** 2)
    return g

graph = build_graph(0.45)  # module-level, for `scg inspect examples/rebar_toy.py`



def gradient_table(g, args, phi0):
    params = {"phi": np.array(phi0)}
    exact = scg.exact(g, params, {})
    rows = {}
    for label, (estimator, baseline, k) in ESTIMATORS.items():
        est = scg.compile(g, estimator=estimator, baseline=baseline, backend=args.backend, precision="float64")
        if baseline == "ema":
            for i in range(20):  # warm the baseline at this point
                est(params, {}, seed=10_000_000 + i)
        t0 = time.perf_counter()
        st = scg.diagnostics.gradient_stats(est, params, {}, n=args.draws, seed=1, n_samples=k)["phi"]
        us = 1e6 * (time.perf_counter() - t0) / args.draws
        mean, var = float(st.mean), float(st.variance)
        se = float(np.sqrt(var / args.draws))
        noiseless = var <= 1e-24 * max(1.0, mean * mean)
        rows[label] = {"mean": mean, "std": float(np.sqrt(var)), "variance": var, "std_error": se,
                       "abs_error": abs(mean - exact.grads["phi"].item()),
                       "z_vs_exact": None if noiseless else (mean - exact.grads["phi"].item()) / se,
                       "samples_per_estimate": k, "us_per_call": us}
    return float(exact.grads["phi"]), float(exact.cost), rows


def optimise(g, args):
    curves = {}
    for label, (estimator, baseline, k) in ESTIMATORS.items():
        est = scg.compile(g, estimator=estimator, baseline=baseline, backend=args.backend, precision="float64")
        params = {"phi": np.array(0.0)}
        opt = scg.optim.SGD(args.lr)
        curve = []
        for step in range(args.steps + 1):
            if step % args.log_every == 0:
                probe = scg.compile(g, estimator=estimator, baseline=baseline, backend=args.backend)
                if baseline == "ema":
                    probe.load_state(est.state)  # continue from the training run's baseline
                var = scg.diagnostics.gradient_stats(probe, dict(params), {}, n=args.var_draws, seed=10**9 + step,
                                                     n_samples=k)["phi"].variance
                curve.append({"step": step, "phi": float(params["phi"]), "grad_variance": float(var),
                              "exact_cost": float(scg.exact(g, params, {}).cost)})
            if step < args.steps:
                opt.step(params, est(params, {}, seed=step, n_samples=k).grads)
        curves[label] = curve
    return curves


def main(argv=None):
    p = _common.base_parser(__doc__.split("\n")[0], "rebar_toy")
    p.add_argument("--target", type=float, default=0.45)
    p.add_argument("--draws", type=int, default=20000, help="single-sample estimates per estimator at phi = 0")
    p.add_argument("--steps", type=int, default=2000, help="SGD steps in the optimisation comparison")
    p.add_argument("--lr", type=float, default=1.0, help="SGD learning rate")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--var-draws", type=int, default=500, help="estimates per variance point along training")
    args = p.parse_args(argv)
    if args.quick:
        args.draws, args.steps, args.log_every, args.var_draws = 2000, 200, 50, 100
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    g = build_graph(args.target)

    exact_grad, exact_cost, rows = gradient_table(g, args, 0.0)
    print(f"E[(b - {args.target})^2] at phi = 0: exact cost {exact_cost:.4f}, exact gradient {exact_grad:.6f}")
    print(f"single-sample estimates at phi = 0 ({args.draws} draws each):")
    print(f"  {'estimator':22s} {'mean':>10s} {'std':>9s} {'std err':>9s} {'z vs exact':>10s} {'us/call':>8s}")
    for label, r in rows.items():
        z = "no noise" if r["z_vs_exact"] is None else f"{r['z_vs_exact']:.2f}"
        print(f"  {label:22s} {r['mean']:10.5f} {r['std']:9.4f} {r['std_error']:9.5f} {z:>10s} "
              f"{r['us_per_call']:8.0f}")

    curves = optimise(g, args)
    print(f"\nSGD (lr {args.lr:g}) from phi = 0, {args.steps} steps; optimum phi -> -inf, min cost {args.target ** 2:.4f}:")
    for label, c in curves.items():
        print(f"  {label:22s} final phi {c[-1]['phi']:8.3f}   exact cost {c[-1]['exact_cost']:.5f}   "
              f"mean gradient variance along the run {np.mean([r['grad_variance'] for r in c]):.3g}")

    with open(out / "gradients.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["estimator", "mean", "std", "std_error", "z_vs_exact", "exact"])
        for label, r in rows.items():
            w.writerow([label, r["mean"], r["std"], r["std_error"], r["z_vs_exact"], exact_grad])
    _common.write_json(out / "results.json", {
        "command": _common.command_line(), "config": {**vars(args), "out": _common.shown(args.out)}, "exact_gradient": exact_grad,
        "exact_cost": exact_cost, "estimates_at_phi0": rows, "optimisation": curves,
        "environment": _common.environment()})
    if not args.no_plot:
        plot(rows, curves, exact_grad, args, out / "rebar_toy.png")
    print(f"wrote {_common.shown(out)}/results.json, gradients.csv" + ("" if args.no_plot else ", rebar_toy.png"))


def plot(rows, curves, exact_grad, args, path):
    plt = _common.pyplot()
    if plt is None:
        return
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(16, 4.2))
    labels = list(rows)
    y = np.arange(len(labels))
    a1.errorbar([rows[lb]["mean"] for lb in labels], y, xerr=[rows[lb]["std"] for lb in labels], fmt="o",
                capsize=4, label="mean +- 1 std of one estimate")
    a1.axvline(exact_grad, color="k", ls="--", label=f"exact {exact_grad:.3f} (scg.exact)")
    a1.set_yticks(y, labels)
    a1.set_xlabel("d/dphi E[(b - t)^2] at phi = 0")
    a1.legend(fontsize=8)
    a1.grid(alpha=0.3)
    for label, c in curves.items():
        a2.plot([r["step"] for r in c], [r["exact_cost"] - args.target ** 2 for r in c], label=label)
        a3.plot([r["step"] for r in c], [max(r["grad_variance"], 1e-20) for r in c], label=label)
    for ax, name in ((a2, "exact E[cost] - min (scg.exact)"), (a3, "variance of one gradient estimate")):
        ax.set_yscale("log")
        ax.set_xlabel(f"SGD step (lr {args.lr:g})")
        ax.set_ylabel(name)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"REBAR toy: b ~ Bernoulli(sigmoid(phi)), t = {args.target}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
