"""Summaries of a sweep's results: mean ± std over seeds per setting, and learning curves with seed bands.

``scg report results.csv`` (or ``scg sweep ... --plot``) groups the rows by
every grid value except the seed column (``seed`` unless told otherwise),
and writes

* ``results.summary.md``: one row per group, each metric as mean ± std over
  its successful seeds (sample standard deviation, ddof=1; ``n`` counts them);
* ``results_<curve>.png``: for every list-valued output in
  ``results.curves.jsonl``, the mean over seeds per group with a ±1 std band.
  A list named ``step`` (same length) is the x axis; otherwise the index is.

The grid names come from ``results.sweep.json``; without it, the text columns
(and the seed column) are taken as the grid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scg.sweeps.errors import SweepError
from scg.sweeps.grid import RESERVED, config_key, format_value
from scg.sweeps.store import read_csv, read_curves, sidecar


def _grid_names(out: Path, header: list[str], rows: list[dict], seed_column: str) -> list[str]:
    meta = sidecar(out, ".sweep.json")
    if meta.is_file():
        try:
            names = json.loads(meta.read_text())["names"]
            if all(n in header for n in names):
                return list(names)
        except (ValueError, KeyError, TypeError):
            pass
    text = [c for c in header if c not in RESERVED and any(isinstance(r.get(c), str) for r in rows)]
    return text + ([seed_column] if seed_column in header and seed_column not in text else [])


def summarize(out: str | Path, seed_column: str = "seed") -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """(group columns, metric columns, one dict per group with ``n``, ``failed`` and per-metric value lists)."""
    out = Path(out)
    if not out.is_file():
        raise SweepError(f"no such results file: {out}")
    header, rows = read_csv(out)
    names = _grid_names(out, header, rows, seed_column)
    group_cols = [n for n in names if n != seed_column]
    metrics = [c for c in header if c not in names and c not in RESERVED
               and any(isinstance(r.get(c), (int, float)) for r in rows)]
    metrics += ["wall_s"] if "wall_s" in header else []
    groups: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        key = tuple(format_value(r.get(c)) for c in group_cols)
        g = groups.setdefault(key, {"group": dict(zip(group_cols, key, strict=True)), "n": 0, "failed": 0,
                                    "values": {m: [] for m in metrics}, "rows": []})
        if r.get("error"):
            g["failed"] += 1
            continue
        g["n"] += 1
        g["rows"].append(r)
        for m in metrics:
            v = r.get(m)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                g["values"][m].append(float(v))
    return group_cols, metrics, list(groups.values())


def _cell(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean = float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {float(np.std(values, ddof=1)):.2g}"


def table(out: str | Path, seed_column: str = "seed") -> str:
    """The markdown table of mean ± std over seeds (see the module docstring)."""
    group_cols, metrics, groups = summarize(out, seed_column)
    head = group_cols + ["n"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        n = str(g["n"]) + (f" ({g['failed']} failed)" if g["failed"] else "")
        cells = [g["group"][c] for c in group_cols] + [n] + [_cell(g["values"][m]) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_curves(out: str | Path, seed_column: str = "seed") -> list[Path]:
    """One PNG per list-valued output: mean over seeds per group with a ±1 std band; returns the files written."""
    out = Path(out)
    group_cols, _, groups = summarize(out, seed_column)
    header, rows = read_csv(out)
    names = _grid_names(out, header, rows, seed_column)
    curves = read_curves(sidecar(out, ".curves.jsonl"))
    per_curve: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    varying = [c for c in group_cols if len({g["group"][c] for g in groups}) > 1] or group_cols
    for g in groups:
        label = ", ".join(f"{c}={g['group'][c]}" for c in varying) or "all"
        for r in g["rows"]:
            rec = curves.get(config_key(r, names), {})
            for cname, ys in rec.items():
                y = _numeric(ys)
                if cname == "step" or y is None:
                    continue
                x = _numeric(rec.get("step"))
                x = x if x is not None and len(x) == len(y) else np.arange(len(y), dtype=float)
                per_curve.setdefault(cname, {}).setdefault(label, []).append((x, y))
    if not per_curve:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SweepError("plots need matplotlib: pip install matplotlib (or the scg[examples] extra)") from None
    written = []
    for cname, by_label in per_curve.items():
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, runs in by_label.items():
            n = min(len(y) for _, y in runs)
            x = runs[0][0][:n]
            ys = np.stack([y[:n] for _, y in runs])
            mean = ys.mean(axis=0)
            (line,) = ax.plot(x, mean, label=f"{label} (n={len(runs)})")
            if len(runs) > 1:
                sd = ys.std(axis=0, ddof=1)
                ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2, linewidth=0)
        ax.set_xlabel("step" if any("step" in curves.get(k, {}) for k in curves) else "index")
        ax.set_ylabel(cname)
        ax.set_title(f"{out.stem}: {cname} (mean ± std over {seed_column})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = out.with_name(f"{out.stem}_{_safe(cname)}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _numeric(values: Any) -> np.ndarray | None:
    if not isinstance(values, list) or not values:
        return None
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.ndim == 1 else None


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def report(out: str | Path, seed_column: str = "seed", plots: bool = True) -> tuple[str, list[Path]]:
    """Write ``<stem>.summary.md`` (and the curve PNGs); returns (the table text, the files written)."""
    out = Path(out)
    text = table(out, seed_column)
    md = sidecar(out, ".summary.md")
    md.write_text(f"Mean ± std over `{seed_column}` (sample std, ddof=1) of `{out.name}`; "
                  "n = successful runs.\n\n" + text)
    return text, [md] + (plot_curves(out, seed_column) if plots else [])
