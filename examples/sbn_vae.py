"""Discrete VAE / sigmoid belief net on binarised MNIST, trained with scg.

Encoder q(z|x): 200 Bernoulli latents (``--layers 1``) or two stochastic layers
of 200 (``--layers 2``: x -> z1 -> z2). Decoder p(x|z) (and p(z1|z2)) with
Bernoulli outputs, and a learned factorised prior on the top layer. The cost
per image is the negative ELBO

    -ELBO = -log p(x|z1) [- log p(z1|z2)] - log p(z_top) + log q(z|x)

where log q of the FIRST layer enters through its analytic entropy
(``-q1.entropy().sum()``: no sampling for that part). For two layers the
second layer's log q(z2|z1) is the sampled log-density: scg's HNCA rejects the
analytic entropy of z2 (its dependence on z1 has no closed form; see
examples/README.md), and every estimator optimises the same objective.

Estimators: reinforce, reinforce+ema baseline, muprop, hnca (f-HNCA: the costs
are known to the program, so each latent's decoder/prior terms are re-evaluated
with the latent flipped, in closed form) and, for two layers, hnca+ema (z1's
credit then also carries z2's downstream costs, which a baseline centres; with
one layer every cost depends on z1 directly and hnca+ema is the same
estimator as hnca, so it is skipped). Reports train/test ELBO (nats per
image, higher is better), curves, and the variance of each estimator's encoder
gradient at shared parameter points.

    python examples/sbn_vae.py --quick      # smoke test, well under a minute
    python examples/sbn_vae.py              # full run (see examples/README.md)
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import _common  # before numpy: pins BLAS to one thread (see _common.py)
import numpy as np

import scg
from scg.training import dataset_batches

ESTIMATORS = {  # label -> (estimator, baseline)
    "reinforce": ("reinforce", None),
    "reinforce+ema": ("reinforce", "ema"),
    "muprop": ("muprop", None),
    "hnca": ("hnca", None),
    "hnca+ema": ("hnca", "ema"),
}


def build_graph(layers: int, hidden: int, data_mean: np.ndarray) -> scg.Graph:
    """The SBN VAE; the output bias starts at the logit of the training-set mean (Mnih and Gregor 2014)."""
    n = data_mean.size
    m = np.clip(data_mean.astype(np.float64), 1e-3, 1 - 1e-3)
    g = scg.Graph(f"sbn_vae_{layers}x{hidden}")
    with g:
        x = scg.input("x", shape=(n,))
        q1 = scg.Bernoulli(logits=x @ scg.param("enc_W1", shape=(n, hidden), init="glorot")
                           + scg.param("enc_b1", shape=(hidden,)))
        z1 = scg.sample("z1", q1)
        x_logits = z1 @ scg.param("dec_W1", shape=(hidden, n), init="glorot") \
            + scg.param("dec_b1", shape=(n,), init=np.log(m / (1 - m)))
        scg.cost("neg_log_px", -scg.Bernoulli(logits=x_logits).log_prob(x).sum())
        scg.cost("neg_entropy_q1", -q1.entropy().sum())
        top = z1
        if layers == 2:
            q2 = scg.Bernoulli(logits=z1 @ scg.param("enc_W2", shape=(hidden, hidden), init="glorot")
                               + scg.param("enc_b2", shape=(hidden,)))
            z2 = scg.sample("z2", q2)
            z1_logits = z2 @ scg.param("dec_W2", shape=(hidden, hidden), init="glorot") \
                + scg.param("dec_b2", shape=(hidden,))
            scg.cost("neg_log_pz1", -scg.Bernoulli(logits=z1_logits).log_prob(z1).sum())
            scg.cost("log_qz2", q2.log_prob(z2).sum())
            top = z2
        prior = scg.param("prior_logits", shape=(hidden,))
        scg.cost("neg_log_prior", -scg.Bernoulli(logits=prior).log_prob(top).sum())
    return g


class Evaluator:
    """-ELBO on fixed binarisations of the test set and of a train subset (single-sample estimate per image)."""

    def __init__(self, graph, data, backend, precision, n_eval):
        rng = np.random.default_rng(2024)
        bin_ = scg.datasets.binarize
        self.test = bin_(data.x_test[:n_eval], rng)
        self.train = bin_(data.x_train[:n_eval], rng)
        self.est = scg.compile(graph, estimator="reinforce", backend=backend, precision=precision)

    def elbo(self, params, x, seed):
        return -self.est(params, {"x": x}, seed=seed).cost

    def __call__(self, params, step):
        return {"test_elbo": self.elbo(params, self.test, 1), "train_elbo": self.elbo(params, self.train, 2)}

# module-level, for `scg inspect examples/sbn_vae.py:graph` (a flat 0.5 data mean stands in for MNIST's)
graph = build_graph(1, 200, np.full(784, 0.5))



def encoder_variance(est, params, x, n_calls):
    """Trace of the covariance of the encoder gradient (sum of per-element variances), and its mean."""
    est.reset_baseline()
    for i in range(10):  # warm the EMA baseline at this point
        est(params, {"x": x}, seed=900_000 + i)
    stats = scg.diagnostics.gradient_stats(est, params, {"x": x}, n=n_calls, seed=500_000)
    enc = [k for k in stats if k.startswith("enc_")]
    total = float(sum(stats[k].variance.sum() for k in enc))
    size = sum(stats[k].variance.size for k in enc)
    return {"encoder_total_variance": total, "encoder_mean_variance": total / size,
            "enc_W1_mean_variance": float(stats["enc_W1"].variance.mean())}


def main(argv=None):
    p = _common.base_parser(__doc__.split("\n")[0], "vae")
    p.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated: " + ", ".join(ESTIMATORS))
    p.add_argument("--layers", default="1,2", help="stochastic layers to run: 1, 2 or 1,2")
    p.add_argument("--hidden", type=int, default=200, help="Bernoulli latents per layer")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=3000, help="training steps per run (80 steps = 1 epoch)")
    p.add_argument("--eval-every", type=int, default=150)
    p.add_argument("--n-eval", type=int, default=1000, help="test (and train-subset) images per evaluation")
    p.add_argument("--var-calls", type=int, default=50, help="estimator calls per gradient-variance point")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-params", action="store_true", help="also write each run's final params (.npz)")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.eval_every, args.n_eval, args.var_calls, args.hidden = 60, 30, 200, 5, 50
    labels = [s.strip() for s in args.estimators.split(",") if s.strip()]
    unknown = [s for s in labels if s not in ESTIMATORS]
    if unknown:
        raise SystemExit(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
    depths = [int(s) for s in args.layers.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = scg.datasets.load_mnist()
    if args.quick:
        data = scg.datasets.Dataset(data.name, data.x_train[:1000], data.y_train[:1000], data.x_test[:200],
                                    data.y_test[:200], data.image_shape)
    var_x = scg.datasets.binarize(data.x_test[:args.batch], np.random.default_rng(7))
    print(f"{data}; layers {depths}; {len(labels)} estimators x {args.steps} steps; backend={args.backend}, "
          f"precision={args.precision}")
    runs, table, variance, t_start = {}, {}, {}, time.perf_counter()
    for layers in depths:
        graph = build_graph(layers, args.hidden, data.x_train.mean(axis=0))
        evaluator = Evaluator(graph, data, args.backend, args.precision, args.n_eval)
        init = _common.cast_params(graph.init_params(seed=args.seed), args.precision)
        finals, compiled = {}, {}
        layer_labels = [lb for lb in labels if not (layers == 1 and lb == "hnca+ema")]
        for label in layer_labels:
            estimator, baseline = ESTIMATORS[label]
            est = scg.compile(graph, estimator=estimator, baseline=baseline, backend=args.backend,
                              precision=args.precision)
            compiled[label] = est
            params = {k: v.copy() for k, v in init.items()}
            t0 = time.perf_counter()
            hist = scg.train(est, params, dataset_batches(data, args.batch, seed=args.seed),
                             scg.optim.Adam(args.lr), steps=args.steps, seed=args.seed, evaluate=evaluator,
                             eval_every=args.eval_every, progress=_common.progress_flag(args),
                             desc=f"{layers} layer(s) {label}")
            seconds = time.perf_counter() - t0
            finals[label] = params
            if args.save_params:
                scg.training.save_checkpoint(out / f"params_{layers}layer_{label}.npz", params, estimator=est,
                                             step=args.steps, estimator_name=label, layers=layers)
            last = hist.evals[-1]
            n_tail = max(1, len(hist) // 10)
            row = {"test_elbo": last["test_elbo"], "train_elbo": last["train_elbo"],
                   "train_elbo_running": -float(np.mean(hist.column("cost")[-n_tail:])),
                   "best_test_elbo": max(e["test_elbo"] for e in hist.evals),
                   "seconds": seconds, "step_ms": 1e3 * float(np.median(hist.column("seconds")))}
            table[f"{layers}/{label}"] = row
            runs[f"{layers}/{label}"] = hist.evals
            print(f"  {layers} layer(s) {label:14s}: test ELBO {row['test_elbo']:8.2f}  train ELBO "
                  f"{row['train_elbo']:8.2f}  ({seconds:.0f} s, {row['step_ms']:.1f} ms/step)", flush=True)
        # gradient variance at shared points: the initial params and the best run's final params
        best = max(layer_labels, key=lambda lb: table[f"{layers}/{lb}"]["test_elbo"])
        for point, prm in (("init", init), (f"trained ({best})", finals[best])):
            for label in layer_labels:
                variance[f"{layers}/{point}/{label}"] = encoder_variance(compiled[label], prm, var_x,
                                                                          args.var_calls)
    print(f"\nELBO (nats per image, higher is better) after {args.steps} steps of batch {args.batch}:")
    print(f"  {'layers':6s} {'estimator':14s} {'test ELBO':>10s} {'train ELBO':>11s} {'ms/step':>8s}")
    for key, row in table.items():
        layers, label = key.split("/")
        print(f"  {layers:6s} {label:14s} {row['test_elbo']:10.2f} {row['train_elbo']:11.2f} {row['step_ms']:8.1f}")
    print("\nencoder gradient variance (sum over encoder params of per-element variance, batch of "
          f"{args.batch} test images, {args.var_calls} calls):")
    for key, v in variance.items():
        print(f"  {key:40s} {v['encoder_total_variance']:12.4g}")

    with open(out / "curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["layers", "estimator", "step", "test_elbo", "train_elbo"])
        for key, evals in runs.items():
            layers, label = key.split("/")
            for e in evals:
                w.writerow([layers, label, e["step"], e["test_elbo"], e["train_elbo"]])
    _common.write_json(out / "results.json", {
        "command": _common.command_line(), "config": {**vars(args), "out": _common.shown(args.out)}, "dataset": repr(data), "table": table,
        "encoder_gradient_variance": variance, "curves": runs,
        "total_seconds": time.perf_counter() - t_start, "environment": _common.environment(),
        "elbo": "single-sample ELBO estimate (analytic entropy for layer 1) averaged over fixed binarised images",
    })
    if not args.no_plot:
        plot(runs, depths, labels, out / "elbo.png", args)
    print(f"wrote {_common.shown(out)}/results.json, curves.csv" + ("" if args.no_plot else ", elbo.png"))


def plot(runs, depths, labels, path, args):
    plt = _common.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(depths), figsize=(6 * len(depths), 4.2), squeeze=False)
    for ax, layers in zip(axes[0], depths, strict=True):
        lows = []
        for label in labels:
            if f"{layers}/{label}" not in runs:
                continue
            evals = runs[f"{layers}/{label}"]
            ys = [e["test_elbo"] for e in evals]
            ax.plot([e["step"] for e in evals], ys, label=label)
            lows.append(ys[len(ys) // 4])
        ax.set_ylim(bottom=min(lows) - 5)
        ax.set_title(f"{layers} stochastic layer(s) of {args.hidden}")
        ax.set_xlabel("training step (batch of 50)")
        ax.set_ylabel("test ELBO (nats)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"SBN VAE on binarised MNIST-5k, Adam {args.lr:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
