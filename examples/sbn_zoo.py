"""Estimator zoo on the sigmoid-belief-net VAE (binarised MNIST-5k): one comparison table.

Models (Mnih & Gregor 2014; the SBN VAEs of the ARM and DisARM papers), ``--model``:

* ``linear``: x -> 200 Bernoulli latents z -> Bernoulli pixels, a learned factorised prior;
* ``two_layer``: encoder x -> 200 Bernoulli z1 -> 200 Bernoulli z2, decoder z2 -> z1 -> x
  mirroring it (p(z1|z2) and p(x|z1) linear-logit Bernoullis), the prior on z2;
* ``nonlinear``: one stochastic layer of 200, with two deterministic hidden layers of 200
  leaky_relu units (negative_slope 0.01) in the encoder and in the decoder.

The sampled log q(z|x) is in the cost, so every estimator sees the same per-draw -ELBO and
VIMCO's K-sample objective is the IWAE bound:

    cost(x, z) = -log p(x|z) - log p(z) + log q(z|x)     (two_layer: every layer's terms)

Estimators (each at the same number of optimiser steps, batch 50, Adam):
rloo (reinforce + leave-one-out baseline, K=2 draws), muprop, hnca, arm, disarm,
vimco (objective="iwae", K=5) with rloo5 (RLOO at the same K=5) beside it, concrete and
gumbel_st (temperature 0.5; biased). Reported per estimator, mean +- std over seeds:
test ELBO (single-sample, fixed binarisation), test IWAE bound with --iwae-k samples (on
the first --iwae-images test images, in chunks of --iwae-chunk images), the DisARM/CARMS
gradient-variance metric at the end of training (EMAs of g and g^2 over the encoder
parameters, averaged over components), and the median time per step. An estimator that
cannot apply to a model is refused by scg.compile with an ScgError; the table records it.

    python examples/sbn_zoo.py --quick                 # smoke test
    python examples/sbn_zoo.py --backend numba --no-progress --model two_layer   # a committed table

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


def _out_bias(n: int, data_mean: np.ndarray):
    """Initialise the pixel logits' bias at the data's mean (as the ARM/DisARM code does)."""
    m = np.clip(data_mean.astype(np.float64), 1e-3, 1 - 1e-3)
    return scg.param("dec_b", shape=(n,), init=np.log(m / (1 - m)))


def _layer(h, name: str, n_in: int, n_out: int):
    return h @ scg.param(f"{name}_W", shape=(n_in, n_out), init="glorot") + scg.param(f"{name}_b", shape=(n_out,))


def build_linear(hidden: int, data_mean: np.ndarray) -> scg.Graph:
    n = data_mean.size
    g = scg.Graph(f"sbn_zoo_{hidden}")
    with g:
        x = scg.input("x", shape=(n,))
        q = scg.Bernoulli(logits=_layer(x, "enc", n, hidden))
        z = scg.sample("z", q)
        x_logits = z @ scg.param("dec_W", shape=(hidden, n), init="glorot") + _out_bias(n, data_mean)
        prior = scg.Bernoulli(logits=scg.param("prior_logits", shape=(hidden,)))
        scg.cost("neg_elbo", -scg.Bernoulli(logits=x_logits).log_prob(x).sum() - prior.log_prob(z).sum()
                 + q.log_prob(z).sum())
    return g


def build_two_layer(hidden: int, data_mean: np.ndarray) -> scg.Graph:
    n = data_mean.size
    g = scg.Graph(f"sbn_zoo_two_layer_{hidden}")
    with g:
        x = scg.input("x", shape=(n,))
        q1 = scg.Bernoulli(logits=_layer(x, "enc", n, hidden))
        z1 = scg.sample("z1", q1)
        q2 = scg.Bernoulli(logits=_layer(z1, "enc2", hidden, hidden))
        z2 = scg.sample("z2", q2)
        prior = scg.Bernoulli(logits=scg.param("prior_logits", shape=(hidden,)))
        p1 = scg.Bernoulli(logits=_layer(z2, "dec2", hidden, hidden))
        x_logits = z1 @ scg.param("dec_W", shape=(hidden, n), init="glorot") + _out_bias(n, data_mean)
        scg.cost("neg_elbo", -scg.Bernoulli(logits=x_logits).log_prob(x).sum() - p1.log_prob(z1).sum()
                 - prior.log_prob(z2).sum() + q1.log_prob(z1).sum() + q2.log_prob(z2).sum())
    return g


def build_nonlinear(hidden: int, data_mean: np.ndarray, slope: float = 0.01) -> scg.Graph:
    n = data_mean.size
    g = scg.Graph(f"sbn_zoo_nonlinear_{hidden}")
    with g:
        x = scg.input("x", shape=(n,))
        h = scg.leaky_relu(_layer(x, "enc1", n, hidden), slope)
        h = scg.leaky_relu(_layer(h, "enc2", hidden, hidden), slope)
        q = scg.Bernoulli(logits=_layer(h, "enc", hidden, hidden))
        z = scg.sample("z", q)
        d = scg.leaky_relu(_layer(z, "dec1", hidden, hidden), slope)
        d = scg.leaky_relu(_layer(d, "dec2", hidden, hidden), slope)
        x_logits = d @ scg.param("dec_W", shape=(hidden, n), init="glorot") + _out_bias(n, data_mean)
        prior = scg.Bernoulli(logits=scg.param("prior_logits", shape=(hidden,)))
        scg.cost("neg_elbo", -scg.Bernoulli(logits=x_logits).log_prob(x).sum() - prior.log_prob(z).sum()
                 + q.log_prob(z).sum())
    return g


MODELS = {"linear": build_linear, "two_layer": build_two_layer, "nonlinear": build_nonlinear}
build_graph = build_linear  # the original name


# module-level, for `scg inspect examples/sbn_zoo.py:graph` (and :two_layer_graph, :nonlinear_graph)
graph = build_linear(200, np.full(784, 0.5))
two_layer_graph = build_two_layer(200, np.full(784, 0.5))
nonlinear_graph = build_nonlinear(200, np.full(784, 0.5))


class Evaluator:
    """Test ELBO (one draw per image) and the K-sample IWAE bound, on fixed binarised test images.

    The IWAE bound runs on the first ``iwae_images`` images, ``chunk`` images per call
    (K x chunk rows at a time: K=5000 over all images at once would not fit in memory).
    """

    def __init__(self, g, x_test, backend, precision, iwae_k, iwae_images=None, chunk=10):
        self.x = scg.datasets.binarize(x_test, np.random.default_rng(2024))
        self.iwae_k, self.chunk = iwae_k, chunk
        self.iwae_x = self.x[:iwae_images]
        self.elbo_est = scg.compile(g, estimator="reinforce", backend=backend, precision=precision)
        self.iwae_est = scg.compile(g, estimator="vimco", objective="iwae", backend=backend, precision=precision)

    def iwae(self, params, seed=2):
        total = 0.0
        for i in range(0, len(self.iwae_x), self.chunk):
            xs = self.iwae_x[i:i + self.chunk]
            total += len(xs) * self.iwae_est(params, {"x": xs}, seed=seed + i, n_samples=self.iwae_k).objective
        return -total / len(self.iwae_x)

    def __call__(self, params, step):
        out = {"test_elbo": -self.elbo_est(params, {"x": self.x}, seed=1).cost}
        if self.iwae_k >= 2:
            t0 = time.perf_counter()
            out["test_iwae"] = self.iwae(params)
            out["iwae_seconds"] = time.perf_counter() - t0
        return out


def compile_or_refusal(g, label, backend, precision):
    """The compiled estimator, or the ScgError text when scg refuses it for this model."""
    name, kwargs, _k = ESTIMATORS[label]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scg.ScgWarning)  # the relaxed ones say they are biased: we know
            return scg.compile(g, estimator=name, backend=backend, precision=precision, **kwargs), None
    except scg.ScgError as e:
        return None, f"{type(e).__name__}: {e}"


def main(argv=None):
    p = _common.base_parser(__doc__.split("\n")[0], "sbn_zoo")
    p.add_argument("--model", default="linear", choices=list(MODELS))
    p.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated: " + ", ".join(ESTIMATORS))
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--n-eval", type=int, default=500, help="test images per evaluation")
    p.add_argument("--iwae-k", type=int, default=100, help="samples of the final IWAE bound (0: skip)")
    p.add_argument("--iwae-images", type=int, default=None, help="test images of the final IWAE bound (default: --n-eval)")
    p.add_argument("--iwae-chunk", type=int, default=10, help="images per IWAE call (K x chunk rows)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--var-decay", type=float, default=0.99, help="EMA decay of the variance metric")
    p.add_argument("--save-params", default=None, help="folder for each run's final parameters (.npz)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.eval_every, args.n_eval, args.hidden, args.iwae_k, args.seeds = 40, 20, 100, 20, 10, 1
    if args.out == p.get_default("out"):
        args.out = str(Path(args.out) / args.model)
    labels = [s.strip() for s in args.estimators.split(",") if s.strip()]
    unknown = [s for s in labels if s not in ESTIMATORS]
    if unknown:
        raise SystemExit(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = scg.datasets.load_mnist()
    g = MODELS[args.model](args.hidden, data.x_train.mean(axis=0))
    encoder = [name for name in g.init_params(seed=0) if name.startswith("enc")]
    evaluator = Evaluator(g, data.x_test[:args.n_eval], args.backend, args.precision, 0)
    final_eval = Evaluator(g, data.x_test[:args.n_eval], args.backend, args.precision, args.iwae_k,
                           args.iwae_images, args.iwae_chunk)
    print(f"{data}; model {args.model}; {len(labels)} estimators x {args.seeds} seeds x {args.steps} steps; "
          f"backend={args.backend}, precision={args.precision}", flush=True)
    runs, trackers, refused, diverged, t_start = {}, {}, {}, {}, time.perf_counter()
    for label in labels:
        est, refusal = compile_or_refusal(g, label, args.backend, args.precision)
        if refusal is not None:
            refused[label] = refusal
            print(f"  {label:10s} refused: {refusal}", flush=True)
            continue
        k = ESTIMATORS[label][2]
        for seed in range(args.seeds):
            params = _common.cast_params(g.init_params(seed=seed), args.precision)
            tracker = scg.diagnostics.VarianceTracker(decay=args.var_decay, params=encoder)
            t0 = time.perf_counter()
            try:
                hist = scg.train(est, params, dataset_batches(data, args.batch, seed=seed), scg.optim.Adam(args.lr),
                                 steps=args.steps, seed=seed, n_samples=k, evaluate=evaluator,
                                 eval_every=args.eval_every, progress=_common.progress_flag(args),
                                 desc=f"{label} seed {seed}",
                                 callback=lambda step, res, t=tracker: t.update(res.grads))
            except scg.training.TrainingDiverged as e:  # recorded, like a refusal; the other seeds still run
                diverged.setdefault(label, {})[seed] = str(e).split(";")[0]
                print(f"  {label:10s} seed {seed}: {diverged[label][seed]}", flush=True)
                continue
            seconds = time.perf_counter() - t0
            final = final_eval(params, args.steps)
            if args.save_params:
                Path(args.save_params).mkdir(parents=True, exist_ok=True)
                np.savez(Path(args.save_params) / f"{args.model}_{label}_{seed}.npz", **params)
            runs[(label, seed)] = {"evals": hist.evals, **final, "grad_variance": tracker.variance,
                                   "step_ms": 1e3 * float(np.median(hist.column("seconds"))), "seconds": seconds,
                                   "variance_curve": tracker.history[::10]}
            trackers[(label, seed)] = tracker
            print(f"  {label:10s} seed {seed}: test ELBO {final['test_elbo']:8.2f}  IWAE-{args.iwae_k} "
                  f"{final.get('test_iwae', float('nan')):8.2f}  var {tracker.variance:9.3g}  "
                  f"{runs[(label, seed)]['step_ms']:.1f} ms/step  ({seconds:.0f} s)", flush=True)

    done = {label: [s for s in range(args.seeds) if (label, s) in runs] for label in labels}
    ran = [label for label in labels if done[label]]
    table = {}
    for label in ran:
        rows = [runs[(label, s)] for s in done[label]]
        table[label] = {m: _common.mean_std([r[m] for r in rows if m in r])
                        for m in ("test_elbo", "test_iwae", "grad_variance", "step_ms") if m in rows[0]}
    print(f"\n| estimator | K | test ELBO | test IWAE-{args.iwae_k} | encoder grad variance | ms/step |")
    print("|---|---|---|---|---|---|")
    for label in labels:
        if label in refused:
            print(f"| {label} | {ESTIMATORS[label][2]} | refused: {refused[label]} | | | |")
            continue
        if label not in table:
            print(f"| {label} | {ESTIMATORS[label][2]} | diverged in every seed: {diverged[label]} | | | |")
            continue
        row = table[label]
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
        "dataset": repr(data), "model": args.model, "table": table, "refused": refused,
        "diverged": {label: {str(s): m for s, m in d.items()} for label, d in diverged.items()},
        "seeds_completed": done,
        "published_arm_paper": PUBLISHED,
        "runs": {f"{label}/{seed}": r for (label, seed), r in runs.items()},
        "total_seconds": time.perf_counter() - t_start, "environment": _common.environment(),
    })
    if not args.no_plot and ran:
        plot(runs, trackers, {label: done[label] for label in ran}, args, out)
    print(f"wrote {_common.shown(out)}/results.json, curves.csv" + ("" if args.no_plot else ", elbo.png, variance.png"))


def plot(runs, trackers, labels, args, out):
    plt = _common.pyplot()
    if plt is None:
        return
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label in labels:
        curves = [[e["test_elbo"] for e in runs[(label, s)]["evals"]] for s in labels[label]]
        steps = [e["step"] for e in runs[(label, labels[label][0])]["evals"]]
        ax.plot(steps, np.mean(curves, axis=0), label=label)
    ax.set_xlabel(f"training step (batch {args.batch})")
    ax.set_ylabel("test ELBO (nats)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{args.model} SBN VAE ({args.hidden} latents), MNIST-5k, mean of {args.seeds} seeds")
    fig.tight_layout()
    fig.savefig(out / "elbo.png", dpi=120)
    plt.close(fig)
    scg.diagnostics.plot_variance({label: trackers[(label, seeds[0])] for label, seeds in labels.items()},
                                  str(out / "variance.png"),
                                  title=f"{args.model}: encoder gradient variance over training (seed 0)")


if __name__ == "__main__":
    main()
