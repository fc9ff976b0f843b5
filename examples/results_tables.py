"""Print the committed results (examples/results/*/results.json) as Markdown tables.

    python examples/results_tables.py            # the tables in examples/README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _load(name: str):
    path = RESULTS / name / "results.json"
    if not path.is_file():
        print(f"(no {path.relative_to(RESULTS.parent)}: run the example first)\n")
        return None
    return json.loads(path.read_text())


def bandit() -> None:
    r = _load("bandit")
    if r is None:
        return
    n = len(r["seeds"])
    steps = r["config"]["steps"]
    print(f"Command: `{r['command']}`  ({r['total_seconds'] / 60:.0f} min)\n")
    for depth_key, table in r["summary"].items():
        print(f"**{depth_key.replace('depth', 'depth ')}**, {n} seeds, {steps} steps; mean +- std over seeds\n")
        print("| estimator | final test acc (greedy) | mean test acc over training | final expected reward "
              "| per-seed final acc | ms/step |")
        print("|---|---|---|---|---|---|")
        for label, row in table.items():
            (m, s), (am, asd), (rm, rs) = (row["final_test_acc"], row["mean_test_acc_over_training"],
                                           row["final_test_reward"])
            seeds = ", ".join(f"{v:.3f}" for v in row["final_test_acc_per_seed"])
            print(f"| {label} | {m:.3f} +- {s:.3f} | {am:.3f} +- {asd:.3f} | {rm:.3f} +- {rs:.3f} | {seeds} "
                  f"| {row['step_ms_median']:.1f} |")
        print()


def vae() -> None:
    r = _load("vae")
    if r is None:
        return
    print(f"Command: `{r['command']}`  ({r['total_seconds'] / 60:.0f} min)\n")
    print("| layers | estimator | test ELBO | train ELBO (fixed subset) | best test ELBO | ms/step |")
    print("|---|---|---|---|---|---|")
    for key, row in r["table"].items():
        layers, label = key.split("/")
        print(f"| {layers} | {label} | {row['test_elbo']:.2f} | {row['train_elbo']:.2f} | "
              f"{row['best_test_elbo']:.2f} | {row['step_ms']:.1f} |")
    print("\nEncoder gradient variance (sum over encoder parameters of the per-element variance of one "
          f"estimate; batch of {r['config']['batch']} test images, {r['config']['var_calls']} calls):\n")
    points = ["init", "trained"]
    print("| layers | estimator | at the initial params | at trained params (final params of the run named) |")
    print("|---|---|---|---|")
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for key, v in r["encoder_gradient_variance"].items():
        layers, point, label = key.split("/")
        cell = f"{v['encoder_total_variance']:.4g}"
        if point.startswith("trained"):
            cell += " " + point.removeprefix("trained").strip()
        rows.setdefault((layers, label), {})["trained" if point.startswith("trained") else point] = cell
    for (layers, label), vals in rows.items():
        print(f"| {layers} | {label} | " + " | ".join(vals.get(p, "") for p in points) + " |")
    print()


def rebar() -> None:
    r = _load("rebar_toy")
    if r is None:
        return
    print(f"Command: `{r['command']}`\n")
    print(f"Exact gradient at phi = 0 (scg.exact): {r['exact_gradient']:.6f}; "
          f"{r['config']['draws']} single-sample estimates per estimator.\n")
    print("| estimator | mean | variance of one estimate | std error | (mean - exact) / std error |")
    print("|---|---|---|---|---|")
    for label, row in r["estimates_at_phi0"].items():
        z = "no noise (exact)" if row["z_vs_exact"] is None else f"{row['z_vs_exact']:.2f}"
        var = "0" if row["z_vs_exact"] is None else f"{row['variance']:.3g}"
        print(f"| {label} | {row['mean']:.5f} | {var} | {row['std_error']:.5f} | {z} |")
    print()
    for label, a in r.get("adapted_at_phi0", {}).items():
        print(f"- {label}: eta = {a['eta']:.4g}, lambda = {a['lambda']:.4g}, variance {a['variance']:.3g}")
    print()
    curves = r["optimisation"]
    if "0.45" in curves:  # per target: mean log10 variance of one estimate along training (zero counted as 1e-12)
        labels = list(next(iter(curves.values())))
        print("| t | " + " | ".join(labels) + " |")
        print("|---|" + "---|" * len(labels))
        for t, by in curves.items():
            cells = [np.mean([np.log10(max(p["grad_variance"], 1e-12)) for p in by[lb]]) for lb in labels]
            print(f"| {t} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
        print()


if __name__ == "__main__":
    which = sys.argv[1:] or ["bandit", "vae", "rebar"]
    for name in which:
        {"bandit": bandit, "vae": vae, "rebar": rebar}[name]()
