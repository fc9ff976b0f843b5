"""Estimator zoo on the sigmoid-belief-net VAE (binarised MNIST-5k): one comparison table.

Model (Mnih & Gregor 2014; the "linear" SBN of the ARM/DisARM papers): x -> 200 Bernoulli
latents z -> Bernoulli pixels, a learned factorised prior, and the sampled log q(z|x) in
the cost, so every estimator sees the same per-draw -ELBO and VIMCO's K-sample objective
is the IWAE bound:

    cost(x, z) = -log p(x|z) - log p(z) + log q(z|x)

Estimators (each at the same number of optimiser steps, batch 50, Adam):
rloo (reinforce + leave-one-out baseline, K=2 draws), muprop, hnca, arm, disarm,
vimco (objective="iwae", K=5) with rloo5 (RLOO at the same K=5) beside it, concrete and
gumbel_st (temperature 0.5; biased). Reported per estimator, mean +- std over seeds:
test ELBO (single-sample, fixed binarisation), test IWAE bound with --iwae-k samples,
the DisARM/CARMS gradient-variance metric at the end of training (EMAs of g and g^2 over
the encoder parameters, averaged over components), and the median time per step.

    python examples/sbn_zoo.py --quick                 # smoke test
    python examples/sbn_zoo.py --backend numba --no-progress   # the committed table

Our runs are short (thousands of steps on 4,000 images); the published numbers are full
MNIST, >= 1e6 steps: they are held beside ours for orientation, not comparison.
"""

from __future__ import annotations

import csv
import time
import warnings
from pathlib import Path

import _common  # before numpy: pins BLAS to one thread (see _common.py)
import numpy as np

import scg
from scg.training import dataset_batches

# label -> (estimator, compile kwargs, draws per row K)
ESTIMATORS = {
    "rloo": ("reinforce", {"baseline": "loo"}, 2),
    "muprop": ("muprop", {}, 1),
    "hnca": ("hnca", {}, 1),
    "arm": ("arm", {}, 1),
    "disarm": ("disarm", {}, 1),
    "vimco": ("vimco", {"objective": "iwae"}, 5),
    "rloo5": ("reinforce", {"baseline": "loo"}, 5),
    "concrete": ("concrete", {"options": {"temperature": 0.5}}, 1),
    "gumbel_st": ("gumbel_st", {"options": {"temperature": 0.5}}, 1),
}
# ARM paper (Yin & Zhou 2019), Table 2, test -log p(x) on full MNIST, linear one-layer SBN (lower is better)
PUBLISHED = {"REINFORCE": 164.0, "NVIL": 113.1, "MuProp": "<= 113.0", "REBAR": 107.7, "ARM": 107.2}


def build_graph(hidden: int, data_mean: np.ndarray) -> scg.Graph:
    n = data_mean.size
    m = np.clip(data_mean.astype(np.float64), 1e-3, 1 - 1e-3)
    g = scg.Graph(f"sbn_zoo_{hidden}")
    with g:
        x = scg.input("x", shape=(n,))
        q = scg.Bernoulli(logits=x @ scg.param("enc_W", shape=(n, hidden), init="glorot")
                          + scg.param("enc_b", shape=(hidden,)))
        z = scg.sample("z", q)
        x_logits = z @ scg.param("dec_W", shape=(hidden, n), init="glorot") \
            + scg.param("dec_b", shape=(n,), init=np.log(m / (1 - m)))
        prior = scg.Bernoulli(logits=scg.param("prior_logits", shape=(hidden,)))
        scg.cost("neg_elbo", -scg.Bernoulli(logits=x_logits).log_prob(x).sum() - prior.log_prob(z).sum()
                 + q.log_prob(z).sum())
    return g


# module-level, for `scg inspect examples/sbn_zoo.py:graph`
graph = build_graph(200, np.full(784, 0.5))


class Evaluator:
    """Test ELBO (one draw per image) and the K-sample IWAE bound, on fixed binarised test images."""

    def __init__(self, g, x_test, backend, precision, iwae_k):
        self.x = scg.datasets.binarize(x_test, np.random.default_rng(2024))
        self.iwae_k = iwae_k
        self.elbo_est = scg.compile(g, estimator="reinforce", backend=backend, precision=precision)
        self.iwae_est = scg.compile(g, estimator="vimco", objective="iwae", backend=backend, precision=precision)

    def __call__(self, params, step):
        out = {"test_elbo": -self.elbo_est(params, {"x": self.x}, seed=1).cost}
        if self.iwae_k >= 2:
            out["test_iwae"] = -self.iwae_est(params, {"x": self.x}, seed=2, n_samples=self.iwae_k).objective
        return out


def main(argv=None):
    p = _common.base_parser(__doc__.split("\n")[0], "sbn_zoo")
    p.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated: " + ", ".join(ESTIMATORS))
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--n-eval", type=int, default=500, help="test images per evaluation")
    p.add_argument("--iwae-k", type=int, default=100, help="samples of the final IWAE bound (0: skip)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--var-decay", type=float, default=0.99, help="EMA decay of the variance metric")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.eval_every, args.n_eval, args.hidden, args.iwae_k, args.seeds = 40, 20, 100, 20, 10, 1
    labels = [s.strip() for s in args.estimators.split(",") if s.strip()]
    unknown = [s for s in labels if s not in ESTIMATORS]
    if unknown:
        raise SystemExit(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = scg.datasets.load_mnist()
    g = build_graph(args.hidden, data.x_train.mean(axis=0))
    evaluator = Evaluator(g, data.x_test[:args.n_eval], args.backend, args.precision, 0)
    final_eval = Evaluator(g, data.x_test[:args.n_eval], args.backend, args.precision, args.iwae_k)
    print(f"{data}; {len(labels)} estimators x {args.seeds} seeds x {args.steps} steps; backend={args.backend}, "
          f"precision={args.precision}", flush=True)
    runs, trackers, t_start = {}, {}, time.perf_counter()
    for label in labels:
        name, kwargs, k = ESTIMATORS[label]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scg.ScgWarning)  # the relaxed ones say they are biased: we know
            est = scg.compile(g, estimator=name, backend=args.backend, precision=args.precision, **kwargs)
        for seed in range(args.seeds):
            params = _common.cast_params(g.init_params(seed=seed), args.precision)
            tracker = scg.diagnostics.VarianceTracker(decay=args.var_decay, params=["enc_W", "enc_b"])
            t0 = time.perf_counter()
            hist = scg.train(est, params, dataset_batches(data, args.batch, seed=seed), scg.optim.Adam(args.lr),
                             steps=args.steps, seed=seed, n_samples=k, evaluate=evaluator,
                             eval_every=args.eval_every, progress=_common.progress_flag(args),
                             desc=f"{label} seed {seed}", callback=lambda step, res, t=tracker: t.update(res.grads))
            seconds = time.perf_counter() - t0
            final = final_eval(params, args.steps)
            runs[(label, seed)] = {"evals": hist.evals, **final, "grad_variance": tracker.variance,
                                   "step_ms": 1e3 * float(np.median(hist.column("seconds"))), "seconds": seconds,
                                   "variance_curve": tracker.history[::10]}
            trackers[(label, seed)] = tracker
            print(f"  {label:10s} seed {seed}: test ELBO {final['test_elbo']:8.2f}  IWAE-{args.iwae_k} "
                  f"{final.get('test_iwae', float('nan')):8.2f}  var {tracker.variance:9.3g}  "
                  f"{runs[(label, seed)]['step_ms']:.1f} ms/step", flush=True)

    table = {}
    for label in labels:
        rows = [runs[(label, s)] for s in range(args.seeds)]
        table[label] = {m: _common.mean_std([r[m] for r in rows if m in r])
                        for m in ("test_elbo", "test_iwae", "grad_variance", "step_ms") if m in rows[0]}
    print(f"\n| estimator | K | test ELBO | test IWAE-{args.iwae_k} | encoder grad variance | ms/step |")
    print("|---|---|---|---|---|---|")
    for label, row in table.items():
        cells = [f"{row[m][0]:.2f} ± {row[m][1]:.2f}" if m in row else "-" for m in ("test_elbo", "test_iwae")]
        var = f"{row['grad_variance'][0]:.3g} ± {row['grad_variance'][1]:.2g}"
        print(f"| {label} | {ESTIMATORS[label][2]} | {cells[0]} | {cells[1]} | {var} | {row['step_ms'][0]:.1f} |")
    print("published (ARM paper, full MNIST, linear SBN, test -log p(x), >= 1e6 steps): "
          + ", ".join(f"{k} {v}" for k, v in PUBLISHED.items()))

    with open(out / "curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["estimator", "seed", "step", "test_elbo"])
        for (label, seed), r in runs.items():
            for e in r["evals"]:
                w.writerow([label, seed, e["step"], e["test_elbo"]])
    _common.write_json(out / "results.json", {
        "command": _common.command_line(), "config": {**vars(args), "out": _common.shown(args.out)},
        "dataset": repr(data), "table": table, "published_arm_paper": PUBLISHED,
        "runs": {f"{label}/{seed}": r for (label, seed), r in runs.items()},
        "total_seconds": time.perf_counter() - t_start, "environment": _common.environment(),
    })
    if not args.no_plot:
        plot(runs, trackers, labels, args, out)
    print(f"wrote {_common.shown(out)}/results.json, curves.csv" + ("" if args.no_plot else ", elbo.png, variance.png"))


def plot(runs, trackers, labels, args, out):
    plt = _common.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in labels:
        curves = [[e["test_elbo"] for e in runs[(label, s)]["evals"]] for s in range(args.seeds)]
        steps = [e["step"] for e in runs[(label, 0)]["evals"]]
        ax.plot(steps, np.mean(curves, axis=0), label=label)
    ax.set_xlabel(f"training step (batch {args.batch})")
    ax.set_ylabel("test ELBO (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"SBN VAE ({args.hidden} latents), MNIST-5k, mean of {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "elbo.png", dpi=120)
    plt.close(fig)
    scg.diagnostics.plot_variance({label: trackers[(label, 0)] for label in labels}, str(out / "variance.png"),
                                  title="encoder gradient variance over training (seed 0)")


if __name__ == "__main__":
    main()
