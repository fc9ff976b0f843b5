"""HNCA's contextual bandit on real MNIST (Young 2022, sec. 6.1), trained with scg.

A network of Bernoulli units (784-200-200-200 by default, depth 1-3) sees a
dynamically binarised MNIST digit and picks one of 10 actions from a softmax;
the reward is 1 for the right class. The reward is an EXTERNAL cost: the
learner only sees its sampled value (``scg.external_cost``, two-phase call), as
in the paper. Estimators: reinforce, reinforce+ema baseline, hnca, hnca+ema.
HNCA credits each hidden unit from its children's likelihoods (closed form for
affine logits); the output unit gets the score function in both.

    python examples/bandit_mnist.py --quick          # smoke test, ~15 s
    python examples/bandit_mnist.py                  # full run (see examples/README.md)

Test accuracy = fraction of the 1,000 held-out images (binarised once, fixed)
on which the GREEDY action is right: argmax of the output softmax, with the
hidden units sampled. Also reported: the expected reward of the stochastic
policy (mean softmax probability of the right class, hidden units sampled).
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
    "hnca": ("hnca", None),
    "hnca+ema": ("hnca", "ema"),
}


def build_graph(depth: int = 3, hidden: int = 200, n_in: int = 784, n_actions: int = 10) -> scg.Graph:
    if not 1 <= depth <= 3:
        raise SystemExit(f"--depth must be 1, 2 or 3 (got {depth})")
    g = scg.Graph(f"bandit_mnist_{depth}x{hidden}")
    with g:
        h = scg.input("x", shape=(n_in,))
        width = n_in
        for i in range(1, depth + 1):
            W = scg.param(f"W{i}", shape=(width, hidden), init="glorot")
            b = scg.param(f"b{i}", shape=(hidden,))
            h = scg.sample(f"h{i}", scg.Bernoulli(logits=h @ W + b))
            width = hidden
        Wo = scg.param("Wo", shape=(width, n_actions), init="glorot")
        bo = scg.param("bo", shape=(n_actions,))
        a = scg.sample("a", scg.Categorical(logits=h @ Wo + bo))
        scg.external_cost("neg_reward", depends_on=[a])   # -1 when the action is the right class
    return g

graph = build_graph(3, 200)  # module-level, for `scg inspect examples/bandit_mnist.py`



def neg_reward(batch, samples) -> dict[str, np.ndarray]:
    """The environment: the learner never sees this function, only its value."""
    return {"neg_reward": -(samples["a"] == batch["y"]).astype(np.float64)}


class Evaluator:
    """Greedy test accuracy and expected reward, with the hidden units sampled by scg."""

    def __init__(self, fwd, depth, x_test, y_test, seed):
        self.depth, self.y, self.fwd = depth, y_test, fwd
        self.x = (np.random.default_rng(10_000 + seed).random(x_test.shape) < x_test).astype(np.float32)

    def __call__(self, params, step):
        run = self.fwd.sample(params, {"x": self.x}, seed=123_456 + step)
        h = run.samples[f"h{self.depth}"]
        logits = h @ params["Wo"] + params["bo"]
        logits = logits - logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(self.y.size)
        return {"test_acc": float(np.mean(np.argmax(logits, axis=1) == self.y)),
                "test_reward": float(np.mean(p[rows, self.y]))}


def run_one(label, seed, est, graph, data, args, evaluator):
    est.reset_baseline()  # one compiled estimator per (depth, estimator), reused across seeds
    params = _common.cast_params(graph.init_params(seed=seed), args.precision)
    opt = scg.optim.Adam(args.lr)
    t0 = time.perf_counter()
    hist = scg.train(est, params, dataset_batches(data, args.batch, seed=seed), opt, steps=args.steps,
                     external=neg_reward, seed=seed, evaluate=evaluator, eval_every=args.eval_every,
                     progress=_common.progress_flag(args), desc=f"{label} seed {seed}")
    seconds = time.perf_counter() - t0
    step_s = float(np.median(hist.column("seconds")))
    return hist, seconds, step_s


def summarise(results, labels, seeds):
    table = {}
    for label in labels:
        runs = [results[(label, s)] for s in seeds]
        finals = [r["evals"][-1]["test_acc"] for r in runs]
        rewards = [r["evals"][-1]["test_reward"] for r in runs]
        auc = [np.mean([e["test_acc"] for e in r["evals"]]) for r in runs]
        train_reward = [-np.mean([s["cost"] for s in r["steps"][-max(1, len(r["steps"]) // 10):]]) for r in runs]
        table[label] = {
            "final_test_acc": _common.mean_std(finals), "final_test_reward": _common.mean_std(rewards),
            "mean_test_acc_over_training": _common.mean_std(auc),
            "train_reward_last_10pct": _common.mean_std(train_reward),
            "final_test_acc_per_seed": finals,
            "step_ms_median": float(np.median([r["step_ms"] for r in runs])),
        }
    return table


def plot(results, depths, labels, seeds, path, args):
    plt = _common.pyplot()
    if plt is None:
        return
    fig, axes = plt.subplots(1, len(depths), figsize=(6.5 * len(depths), 4.5), squeeze=False)
    for ax, depth in zip(axes[0], depths, strict=True):
        for label in labels:
            curves = np.array([[e["test_acc"] for e in results[depth][(label, s)]["evals"]] for s in seeds])
            steps = [e["step"] for e in results[depth][(label, seeds[0])]["evals"]]
            m = curves.mean(axis=0)
            line, = ax.plot(steps, m, label=label)
            if len(seeds) > 1:
                sd = curves.std(axis=0, ddof=1)
                ax.fill_between(steps, m - sd, m + sd, color=line.get_color(), alpha=0.2)
        ax.set_xlabel(f"training step (batch of {args.batch}; 80 steps = 1 epoch)")
        ax.set_ylabel("test accuracy (greedy action)")
        ax.set_title(f"{depth} hidden layer(s) of {args.hidden} Bernoulli units")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"MNIST-5k contextual bandit, Adam {args.lr:g}; mean +- 1 std over {len(seeds)} seed(s)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    p = _common.base_parser(__doc__.split("\n")[0], "bandit")
    p.add_argument("--estimators", default=",".join(ESTIMATORS), help="comma-separated: " + ", ".join(ESTIMATORS))
    p.add_argument("--seeds", type=int, default=3, help="independent runs per estimator (seeds 0..N-1)")
    p.add_argument("--depth", default="1,3", help="hidden Bernoulli layers, 1-3; a comma list runs several")
    p.add_argument("--hidden", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (the paper: 1e-4; see README)")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--steps", type=int, default=4000, help="training steps per run (80 steps = 1 epoch)")
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--ema-decay", type=float, default=0.9)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.steps, args.eval_every, args.depth = 1, 150, 50, "1"
    labels = [s.strip() for s in args.estimators.split(",") if s.strip()]
    unknown = [s for s in labels if s not in ESTIMATORS]
    if unknown:
        raise SystemExit(f"unknown estimator(s) {unknown}; choose from {list(ESTIMATORS)}")
    depths = [int(d) for d in str(args.depth).split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    data = scg.datasets.load_mnist()
    if args.quick:
        data = scg.datasets.Dataset(data.name, data.x_train[:1000], data.y_train[:1000], data.x_test[:300],
                                    data.y_test[:300], data.image_shape)
    seeds = list(range(args.seeds))
    print(f"{data}; depths {depths}; {len(labels)} estimators x {len(seeds)} seeds x {args.steps} steps; "
          f"Adam {args.lr:g}, batch {args.batch}; backend={args.backend}, precision={args.precision}", flush=True)
    results, tables, t_start = {}, {}, time.perf_counter()
    for depth in depths:
        graph = build_graph(depth, args.hidden)
        results[depth] = {}
        compiled = {label: scg.compile(graph, estimator=ESTIMATORS[label][0], baseline=ESTIMATORS[label][1],
                                       backend=args.backend, precision=args.precision, ema_decay=args.ema_decay)
                    for label in labels}
        fwd = scg.compile(graph, estimator="reinforce", backend=args.backend, precision=args.precision)
        for seed in seeds:
            evaluator = Evaluator(fwd, depth, data.x_test, data.y_test, seed)
            for label in labels:
                hist, seconds, step_s = run_one(label, seed, compiled[label], graph, data, args, evaluator)
                results[depth][(label, seed)] = {"evals": hist.evals, "steps": hist.steps, "seconds": seconds,
                                                 "step_ms": 1e3 * step_s}
                e = hist.evals[-1]
                print(f"  depth {depth} {label:14s} seed {seed}: test acc {e['test_acc']:.3f}, expected reward "
                      f"{e['test_reward']:.3f}  ({seconds:.0f} s, {1e3 * step_s:.1f} ms/step)", flush=True)
        tables[depth] = summarise(results[depth], labels, seeds)

    for depth, table in tables.items():
        print(f"\ndepth {depth}: final test accuracy (greedy), mean +- std over {len(seeds)} seed(s), "
              f"after {args.steps} steps:")
        for label, row in table.items():
            (m, s), (am, asd) = row["final_test_acc"], row["mean_test_acc_over_training"]
            print(f"  {label:14s} {m:.3f} +- {s:.3f}   (mean over the curve {am:.3f} +- {asd:.3f}; "
                  f"{row['step_ms_median']:.1f} ms/step)")

    with open(out / "curves.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["depth", "estimator", "seed", "step", "test_acc", "test_reward"])
        for depth, res in results.items():
            for (label, seed), r in res.items():
                for e in r["evals"]:
                    w.writerow([depth, label, seed, e["step"], e["test_acc"], e["test_reward"]])
    _common.write_json(out / "results.json", {
        "command": _common.command_line(), "config": {**vars(args), "out": _common.shown(args.out)}, "seeds": seeds, "dataset": repr(data),
        "summary": {f"depth{d}": t for d, t in tables.items()},
        "total_seconds": time.perf_counter() - t_start, "environment": _common.environment(),
        "accuracy": "greedy action (argmax of output softmax) with sampled hidden units, on the fixed binarised test set",
        "curves": {f"depth{d}/{label}/seed{seed}": [{k: e[k] for k in ("step", "test_acc", "test_reward")}
                                                    for e in r["evals"]]
                   for d, res in results.items() for (label, seed), r in res.items()},
    })
    if not args.no_plot:
        plot(results, depths, labels, seeds, out / "test_accuracy.png", args)
    print(f"wrote {_common.shown(out)}/results.json, curves.csv" + ("" if args.no_plot else ", test_accuracy.png"))


if __name__ == "__main__":
    main()
