"""Functions the sweep tests run in Dask workers (shipped by value: the workers never import this file).

Every call appends its process id to ``<log>/<estimator>-<seed>.log``, so a test
can count where and how often each configuration ran.
"""

import os
import signal
from pathlib import Path

import numpy as np

import scg


def coin_graph():
    g = scg.Graph("coin")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - 0.45) ** 2)
    return g


def train_coin(estimator, seed, log, steps=15):
    """A short training run of the coin graph. ``bogus`` raises; ``die_once`` kills its worker the first time."""
    log = Path(log)
    with open(log / f"{estimator}-{seed}.log", "a") as fh:
        fh.write(f"{os.getpid()}\n")
    if estimator == "die_once":
        marker = log / f"died-{seed}"
        if not marker.exists():
            marker.write_text("x")
            os.kill(os.getpid(), signal.SIGKILL)  # a worker lost mid-task
        estimator = "hnca"
    est = scg.compile(coin_graph(), estimator=estimator)  # "bogus": scg raises EstimatorError
    params = {"phi": np.array(0.0)}
    hist = scg.train(est, params, [{}], scg.optim.SGD(0.5), steps=steps, seed=seed, progress=False)
    return {"phi": float(params["phi"]), "last_cost": hist.steps[-1]["cost"], "pid": os.getpid(),
            "numba_threads": int(os.environ.get("NUMBA_NUM_THREADS", "0")), "cost_curve": hist.column("cost")}


def warm(grid):
    """The warm-up hook: records where it ran and what it was given."""
    log = Path(grid["log"][0])
    with open(log / "warmup.log", "a") as fh:
        fh.write(f"{os.getpid()} {','.join(grid['estimator'])}\n")


def runs(log, estimator, seed):
    """Process ids that ran one configuration, in order."""
    path = Path(log) / f"{estimator}-{seed}.log"
    return [int(x) for x in path.read_text().split()] if path.exists() else []
