"""``scg.sweep``: one Dask task per configuration, on an embedded LocalCluster or a running scheduler.

Dask does the scheduling, the retries of tasks whose worker died and the
transport; this module chooses the cluster, ships the function, warms the
kernel cache, submits one task per configuration under a key of its own, and
streams each result into a :class:`~scg.sweeps.store.ResultStore` as it arrives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from scg.sweeps.errors import SweepError
from scg.sweeps.grid import config_key, expand, format_value, validate_grid
from scg.sweeps.shipping import load_function, pickle_function
from scg.sweeps.store import ResultStore
from scg.sweeps.tasks import run_config, run_warmup


def sweep(fn: Callable[..., Mapping[str, Any]] | str, grid: Mapping[str, Sequence[Any]], workers: int | None = None,
          scheduler: str | None = None, *, out: str | os.PathLike | None = None, resume: bool = False,
          overwrite: bool = False, warmup: Callable[[dict], Any] | str | None = None, numba_threads: int = 1,
          progress: bool | None = None, connect_timeout: float = 10.0) -> list[dict[str, Any]]:
    """Run ``fn(**config)`` once per configuration of ``grid`` on Dask workers and return one row per configuration.

    * ``fn``: a module-level function, or ``"FILE.py:function"`` (the file and the
      helper modules it imports from its folder are sent to the workers). It gets
      one keyword argument per grid name and returns a dict: scalar values are
      metrics (CSV columns); lists, arrays and dicts (learning curves) go to
      ``<out>.curves.jsonl``. Give seeds as grid values: every configuration is
      its own task (never merged with another by Dask's caching).
    * ``grid``: ``{name: [values]}``; configurations are the Cartesian product,
      the first name varying slowest.
    * ``workers``: size of the embedded ``distributed.LocalCluster`` (processes,
      one thread each, bound to 127.0.0.1, no dashboard; default: one per CPU
      core, at most one per configuration), shut down at the end. ``scheduler``:
      the address of a running Dask scheduler (``tcp://host:port``) instead.
    * ``out``: a CSV rewritten atomically after every configuration (so nothing
      finished is lost on Ctrl-C or a crash); ``resume=True`` skips the
      configurations that already have a row without an error there and reruns
      the failed ones; ``overwrite=True`` starts an existing file again.
    * ``warmup(grid)``: called once per worker host before the configurations are
      fanned out, e.g. to compile the Numba kernels into that host's disk cache so
      the workers load instead of each compiling them. A name when ``fn`` is
      ``"FILE.py:function"``.
    * ``numba_threads``: ``NUMBA_NUM_THREADS`` in each worker (one configuration
      per Dask thread, so 1 keeps a machine's cores busy without oversubscribing).

    Returns rows in grid order: the grid values, the metrics and curves, then
    ``"error"`` (``""`` on success, else ``"ExceptionType: message"``; the
    traceback is in ``<out>.errors.txt``), ``"worker"`` (the address of the
    worker that ran it) and ``"wall_s"`` (seconds in that worker). A function
    that raises fails only its own configuration; a worker that dies has its
    task retried on another worker by Dask. Raises :class:`SweepError` for bad
    arguments or an unreachable scheduler.

    Example (code that starts a LocalCluster belongs under
    ``if __name__ == "__main__":``, since Dask starts the workers as new processes)::

        rows = scg.sweep("examples/sweep_sbn.py:run", {"estimator": ["hnca", "muprop"], "seed": [0, 1, 2]},
                         workers=2, out="results.csv")
        scg.sweeps.report.report("results.csv")   # mean ± std table and learning-curve plots
    """
    grid = validate_grid(grid)
    names = list(grid)
    configs = expand(grid)
    if workers is not None and scheduler is not None:
        raise SweepError("give workers=N (embedded LocalCluster) or scheduler=ADDRESS, not both")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise SweepError(f"workers must be a positive integer, got {workers!r}")
    if not isinstance(numba_threads, int) or numba_threads < 1:
        raise SweepError(f"numba_threads must be a positive integer, got {numba_threads!r}")
    bundle = None
    if isinstance(fn, str):
        _, bundle = load_function(fn)
        payload = ("file", replace(bundle, files={}))
        label = fn
    elif callable(fn):
        payload = ("pickle", pickle_function(fn))
        label = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    else:
        raise SweepError(f"fn must be a function or 'FILE.py:function', got {type(fn).__name__}")
    warm_payload = _warmup_payload(warmup, fn, bundle)
    meta = {"function": label, "grid": {n: [format_value(v) for v in vs] for n, vs in grid.items()},
            "names": names, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    store = ResultStore(out, names, resume=resume, overwrite=overwrite, meta=meta)
    store.set_order(configs)
    todo = [c for c in configs if not store.done(c)]
    if todo:
        with _client(workers, scheduler, len(todo), numba_threads, connect_timeout) as client:
            store.start()
            if bundle is not None:
                from scg.sweeps.plugin import ShipFiles

                client.register_plugin(ShipFiles(bundle))
            if warm_payload is not None:
                _warm(client, warm_payload, grid, numba_threads)
            _run(client, payload, todo, store, numba_threads, progress)
    return [store.row(c) for c in configs]


def task_key(config: Mapping[str, Any], index: int, token: str) -> str:
    """The Dask key of one configuration's task: distinct per configuration and per sweep, never shared."""
    return f"scg-sweep-{token}-{index}"


def _warmup_payload(warmup, fn, bundle) -> tuple | None:
    if warmup is None:
        return None
    if isinstance(warmup, str):
        if bundle is None:
            raise SweepError("warmup given by name needs fn='FILE.py:function' (the name is looked up in FILE.py)")
        module = sys.modules[bundle.module]  # FILE.py, imported by load_function
        if not callable(getattr(module, warmup, None)):
            raise SweepError(f"{fn.rpartition(':')[0]} defines no function {warmup!r} (given as the warm-up)")
        return ("file", replace(bundle, function=warmup, files={}))
    if callable(warmup):
        return ("pickle", pickle_function(warmup))
    raise SweepError(f"warmup must be a function (or its name in FILE.py), got {type(warmup).__name__}")


@contextlib.contextmanager
def _client(workers: int | None, scheduler: str | None, n_tasks: int, numba_threads: int,
            connect_timeout: float) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError("sweeps need Dask: pip install 'dask[distributed]'") from None
    cluster = None
    if scheduler is not None:
        _check_address(scheduler)
        try:
            client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as e:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler!r} within {connect_timeout:g} s: "
                             f"{type(e).__name__}: {' '.join(str(e).split())}") from None
        try:
            client.wait_for_workers(1, timeout=connect_timeout)
        except (OSError, TimeoutError) as e:
            client.close()
            raise SweepError(f"the Dask scheduler at {scheduler!r} has no workers (waited {connect_timeout:g} s; "
                             f"start some with `dask worker {scheduler}`)") from e
    else:
        n = workers if workers is not None else max(1, min(os.cpu_count() or 1, n_tasks))
        try:
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address=None, silence_logs=logging.CRITICAL,
                                   env={"NUMBA_NUM_THREADS": str(numba_threads)},
                                   # no dashboard; its health/metrics HTTP routes on a free loopback port
                                   scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                                   preload=["scg.sweeps.worker_setup"])  # workers leave Ctrl-C to the client
        except Exception as e:  # noqa: BLE001 (startup failures come in many types)
            raise SweepError(f"could not start a local Dask cluster of {n} worker(s): {type(e).__name__}: {e}. "
                             "A script that calls scg.sweep must do so under `if __name__ == \"__main__\":` "
                             "(Dask starts the workers as new Python processes that import the script)") from None
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        with contextlib.suppress(Exception):
            client.close()
        if cluster is not None:
            with contextlib.suppress(Exception):
                cluster.close()


def _check_address(address: str) -> None:
    """``tcp://host:port`` (or ``host:port``): checked before a Client exists (a failed Client warns at exit)."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        _, location = parse_address(address if "://" in address else f"tcp://{address}")
        parse_host_port(location)
    except (ValueError, TypeError) as e:
        raise SweepError(f"bad scheduler address {address!r} (expected tcp://host:port): {e}") from None


def _warm(client, payload: tuple, grid: dict, numba_threads: int) -> None:
    """One warm-up task per host (the kernel cache is per machine), before any configuration starts."""
    per_host: dict[str, str] = {}
    for addr, info in sorted(client.scheduler_info(n_workers=-1)["workers"].items()):
        per_host.setdefault(info.get("host", addr), addr)
    token = uuid.uuid4().hex[:8]
    futures = {client.submit(run_warmup, payload, grid, numba_threads, key=f"scg-sweep-warmup-{token}-{i}",
                             workers=[addr], allow_other_workers=False, pure=False): addr
               for i, addr in enumerate(per_host.values())}
    for f, addr in futures.items():
        try:
            f.result()
        except Exception as e:  # noqa: BLE001 (the user's warm-up may raise anything)
            raise SweepError(f"warm-up failed on worker {addr}: {type(e).__name__}: {' '.join(str(e).split())}"
                             ) from None


def _run(client, payload: tuple, todo: list[dict], store: ResultStore, numba_threads: int,
         progress: bool | None) -> None:
    from distributed import as_completed

    token = uuid.uuid4().hex[:12]
    by_key: dict[str, tuple[Any, list[dict]]] = {}  # task key -> (future, configurations submitted under it)
    for i, config in enumerate(todo):
        f = client.submit(run_config, payload, config, numba_threads, key=task_key(config, i, token), pure=False)
        by_key.setdefault(f.key, (f, []))[1].append(config)
    bar = _bar(progress, len(todo))
    failed = 0
    try:
        for f in as_completed([f for f, _ in by_key.values()], loop=client.loop):
            for config in by_key[f.key][1]:
                row = _collect(f, config, store)
                failed += bool(row["error"])
                bar.set_postfix({"failed": failed}, refresh=False)
                bar.update(1)
    except KeyboardInterrupt:
        with contextlib.suppress(Exception):
            client.cancel([f for f, _ in by_key.values()])
        raise
    finally:
        bar.close()


def _collect(f, config: dict, store: ResultStore) -> dict:
    names = store.names
    try:
        res = f.result()
    except Exception as e:  # noqa: BLE001 (worker loss, cancellation, a scheduler gone)
        return store.add(config, {}, {}, error=_describe(e))
    if config_key(res["config"], names) != config_key(config, names):
        return store.add(config, {}, {}, error="the cluster returned the result of another configuration "
                                               f"({dict(res['config'])}): task keys collided")
    return store.add(config, res["metrics"], res["curves"], error=res["error"], worker=res["worker"],
                     wall_s=res["wall_s"], traceback=res["traceback"])


def _describe(e: BaseException) -> str:
    name = type(e).__name__
    if name == "KilledWorker":
        return ("KilledWorker: the workers running this configuration died each time it was tried "
                "(Dask retries a task whose worker dies, up to distributed.scheduler.allowed-failures)")
    if name == "CancelledError":
        return "CancelledError: the task was cancelled (scheduler shut down or client disconnected)"
    return f"{name}: {' '.join(str(e).split())}"


def _bar(progress: bool | None, total: int):
    from tqdm.auto import tqdm

    disable = (not sys.stderr.isatty()) if progress is None else not progress
    return tqdm(total=total, desc="sweep", unit="config", disable=disable, dynamic_ncols=True)


