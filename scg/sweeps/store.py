"""The results of a sweep on disk: a CSV rewritten atomically as each configuration completes.

``results.csv`` has one row per configuration: the grid values, the scalar
metrics, then ``error`` (empty on success), ``worker`` (the Dask worker that
ran it) and ``wall_s`` (its seconds in that worker). Beside it:

* ``results.curves.jsonl``: one JSON line per configuration with every
  non-scalar value the function returned (learning curves, histories), appended
  as results arrive;
* ``results.errors.txt``: the full traceback of every configuration that raised;
* ``results.sweep.json``: the grid and the function, for ``scg report``.

The CSV is replaced atomically (temporary file + ``os.replace``) after every
configuration, so at any moment (Ctrl-C, a crash) it holds every completed
configuration and parses. On resume, rows without an error are kept and not
run again; rows with an error are run again.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from scg.sweeps.errors import SweepError
from scg.sweeps.grid import RESERVED, config_key, format_value, parse_value


def sidecar(out: Path, suffix: str) -> Path:
    """``results.csv`` -> ``results<suffix>`` (e.g. ``.curves.jsonl``)."""
    return out.with_name(out.stem + suffix)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, Any]]]:
    """Header and rows of a results CSV, cells parsed back to int/float/str (``error``/``worker`` stay text)."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = [{k: (v if k in ("error", "worker") else _cell(v)) for k, v in r.items() if k is not None}
                    for r in reader]
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise SweepError(f"cannot read results file {path}: {e}") from None
    return header, rows


def _cell(text: str | None) -> Any:
    return None if text in (None, "") else parse_value(text)


def read_curves(path: Path) -> dict[tuple[str, ...], dict[str, Any]]:
    """``{config key: {name: value}}`` from a curves file (the last line per configuration wins)."""
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            out[tuple(rec["key"])] = rec["curves"]
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by an interrupted write
    return out


class ResultStore:
    """Rows of one sweep, kept in memory and mirrored to ``out`` (when given) after every change."""

    def __init__(self, out: str | os.PathLike | None, names: Sequence[str], *, resume: bool = False,
                 overwrite: bool = False, meta: Mapping[str, Any] | None = None):
        self.names = list(names)
        self.out = Path(out) if out is not None else None
        self.rows: dict[tuple[str, ...], dict[str, Any]] = {}
        self.curves: dict[tuple[str, ...], dict[str, Any]] = {}
        self.metric_columns: list[str] = []
        self.order: dict[tuple[str, ...], int] = {}
        if self.out is None:
            if resume:
                raise SweepError("resume=True needs out=... (the results file to continue)")
            return
        if self.out.suffix.lower() != ".csv":
            raise SweepError(f"--out {self.out}: expected a .csv file name")
        if self.out.is_dir():
            raise SweepError(f"--out {self.out} is a directory; expected a .csv file name")
        if self.out.exists() and resume:
            self._load()
        elif self.out.exists() and not overwrite:
            raise SweepError(f"{self.out} exists: pass --resume to skip its finished configurations, "
                             "or --overwrite to start again")
        self._fresh = not self.rows
        self._meta = meta
        self._started = False

    def start(self) -> None:
        """Create the files (once the cluster is up: a sweep that cannot start leaves nothing behind)."""
        if self.out is None or self._started:
            return
        self._started = True
        if self._fresh:
            for suffix in (".curves.jsonl", ".errors.txt"):
                sidecar(self.out, suffix).unlink(missing_ok=True)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self._meta is not None:
            sidecar(self.out, ".sweep.json").write_text(json.dumps(dict(self._meta), indent=1, default=str) + "\n")
        self._write_csv()

    def _load(self) -> None:
        header, rows = read_csv(self.out)
        missing = [n for n in self.names if n not in header]
        if missing:
            raise SweepError(f"cannot resume {self.out}: it has no column for grid name(s) {', '.join(missing)} "
                             f"(its columns: {', '.join(header) or 'none'})")
        self.metric_columns = [c for c in header if c not in self.names and c not in RESERVED]
        curves = read_curves(sidecar(self.out, ".curves.jsonl"))
        for row in rows:
            key = config_key(row, self.names)
            self.rows[key] = {**row, "error": row.get("error") or ""}
            if key in curves:
                self.curves[key] = curves[key]

    def set_order(self, configs: Sequence[Mapping[str, Any]]) -> None:
        """Write rows in this (grid) order rather than completion order; rows not in it go last."""
        self.order = {config_key(c, self.names): i for i, c in enumerate(configs)}

    def done(self, config: Mapping[str, Any]) -> bool:
        """True when the configuration already has a row without an error."""
        row = self.rows.get(config_key(config, self.names))
        return row is not None and not row["error"]

    def add(self, config: Mapping[str, Any], metrics: Mapping[str, Any], curves: Mapping[str, Any], *,
            error: str = "", worker: str = "", wall_s: float | None = None, traceback: str = "") -> dict[str, Any]:
        """Record one finished (or failed) configuration and mirror it to disk; returns its row."""
        key = config_key(config, self.names)
        for name in metrics:
            if name not in self.metric_columns:
                self.metric_columns.append(name)
        row = {**dict(config), **dict(metrics), "error": error, "worker": worker, "wall_s": wall_s}
        self.rows[key] = row
        if curves:
            self.curves[key] = dict(curves)
        if self.out is not None:
            self.start()
            if curves:
                _append(sidecar(self.out, ".curves.jsonl"),
                        json.dumps({"key": list(key), "config": {n: format_value(config[n]) for n in self.names},
                                    "curves": curves}, default=_jsonable) + "\n")
            if traceback:
                label = ", ".join(f"{n}={format_value(config[n])}" for n in self.names)
                _append(sidecar(self.out, ".errors.txt"), f"=== {label}\n{traceback.rstrip()}\n\n")
            self._write_csv()
        return row

    def row(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The row of a configuration, with its curves merged in and its grid values as given in ``config``."""
        key = config_key(config, self.names)
        row = {**{c: None for c in self.metric_columns}, **self.rows[key]}
        return {**row, **dict(config), **self.curves.get(key, {})}

    def _write_csv(self) -> None:
        columns = self.names + self.metric_columns + list(RESERVED)
        tmp = self.out.with_name(f".{self.out.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(columns)
            last = len(self.order)
            for _, row in sorted(self.rows.items(), key=lambda kv: self.order.get(kv[0], last)):
                w.writerow([format_value(row.get(c)) for c in columns])
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.out)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)
        fh.flush()


def _jsonable(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return str(x)
