"""Grids: expansion into configurations, CLI parsing, and the canonical text of a value.

A grid maps each argument name to a list of values; the configurations are
their Cartesian product, the first name varying slowest::

    >>> expand({"estimator": ["hnca", "muprop"], "seed": [0, 1]})
    [{'estimator': 'hnca', 'seed': 0}, {'estimator': 'hnca', 'seed': 1}, \
{'estimator': 'muprop', 'seed': 0}, {'estimator': 'muprop', 'seed': 1}]
    >>> parse_grid(["estimator=hnca,muprop", "seed=0,1", "lr=1e-3"])
    {'estimator': ['hnca', 'muprop'], 'seed': [0, 1], 'lr': [0.001]}
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from scg.sweeps.errors import SweepError

# columns the sweep writes besides the grid values and the metrics
RESERVED = ("error", "worker", "wall_s")


def parse_value(text: str) -> Any:
    """Command-line value: ``int`` if it parses as one, else ``float``, else the string itself."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def format_value(value: Any) -> str:
    """The text a value gets in the CSV; :func:`parse_value` reads ints, floats and strings back exactly."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else str(value)
    return str(value)


def config_key(config: Mapping[str, Any], names: Sequence[str]) -> tuple[str, ...]:
    """Identity of a configuration for resume: the canonical text of each grid value (2 == 2.0 != "2x")."""
    return tuple(format_value(_canonical(config[n])) for n in names)


def _canonical(value: Any) -> Any:
    # a value read back from the CSV is int/float/str: fold the grid's value onto the same type
    return parse_value(format_value(value)) if isinstance(value, (int, float, str)) else value


def validate_grid(grid: Any) -> dict[str, list[Any]]:
    """Check a grid (non-empty mapping of identifier -> non-empty list) and return it as a plain dict of lists."""
    if not isinstance(grid, Mapping) or not grid:
        raise SweepError(f"grid must be a non-empty dict of name -> list of values, got {grid!r}")
    out: dict[str, list[Any]] = {}
    for name, values in grid.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise SweepError(f"grid name {name!r} is not a Python identifier (each name becomes a keyword argument)")
        if name in RESERVED:
            raise SweepError(f"grid name {name!r} is reserved for the sweep's own column ({', '.join(RESERVED)})")
        if values is None or isinstance(values, (str, bytes, int, float)):
            values = [values]  # a single value is a one-value axis
        try:
            values = list(values)
        except TypeError:
            raise SweepError(f"grid[{name!r}] must be a list of values, got {values!r}") from None
        if not values:
            raise SweepError(f"grid[{name!r}] is empty: give at least one value")
        keys = [format_value(_canonical(v)) for v in values]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise SweepError(f"grid[{name!r}] repeats {', '.join(dup)}: each configuration must be distinct")
        out[name] = values
    return out


def expand(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All configurations of a grid, the first name varying slowest."""
    names = list(grid)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(grid[n] for n in names))]


def parse_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    """``["name=v1,v2", "name2=v3"]`` -> ``{"name": [v1, v2], "name2": [v3]}`` with :func:`parse_value` values."""
    if not items:
        raise SweepError("--grid needs at least one name=v1,v2 item")
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, eq, rest = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise SweepError(f"malformed --grid item {item!r}: expected name=v1,v2,... (e.g. seed=0,1,2)")
        if not name.isidentifier():
            raise SweepError(f"malformed --grid item {item!r}: {name!r} is not a Python identifier")
        if name in grid:
            raise SweepError(f"--grid names {name!r} twice: give all its values in one item, e.g. {name}=a,b")
        values = [v.strip() for v in rest.split(",")]
        if any(v == "" for v in values):
            raise SweepError(f"malformed --grid item {item!r}: empty value (expected name=v1,v2,...)")
        grid[name] = [parse_value(v) for v in values]
    return validate_grid(grid)
