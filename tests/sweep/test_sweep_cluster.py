"""scg.sweep and `scg sweep` on real Dask clusters: an embedded LocalCluster and a `dask scheduler` + 2 workers.

Everything binds to 127.0.0.1 with dashboards off. The external cluster's
processes are stopped by process group (SIGTERM, a grace period, then SIGKILL)
even when a test fails. Each configuration logs the pid that ran it, so the
tests can check it ran exactly once and never in the client.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import scg
from scg import cli
from scg.sweeps import runner
from scg.sweeps.store import read_csv
from tests.sweep import sweep_fns

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[2]
GRID = {"estimator": ["reinforce", "hnca", "bogus"], "seed": [0, 1]}


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """One sweep on an embedded LocalCluster of 2 workers (the default path of scg.sweep)."""
    log = tmp_path_factory.mktemp("log")
    out = tmp_path_factory.mktemp("out") / "results.csv"
    rows = scg.sweep(sweep_fns.train_coin, {**GRID, "log": [str(log)]}, workers=2, out=out, progress=False,
                     warmup=sweep_fns.warm, numba_threads=1)
    return rows, log, out


def test_local_cluster_runs_each_configuration_once_in_a_worker(local_sweep):
    rows, log, _ = local_sweep
    assert [(r["estimator"], r["seed"]) for r in rows] == [(e, s) for e in GRID["estimator"] for s in GRID["seed"]]
    for r in rows:
        pids = sweep_fns.runs(log, r["estimator"], r["seed"])
        assert os.getpid() not in pids, "a configuration ran in the client"
        assert r["worker"].startswith("tcp://127.0.0.1:")
        assert len(pids) == 1, f"{r['estimator']}, seed {r['seed']} ran {len(pids)} times"
        if not r["error"]:
            assert r["pid"] == pids[0]


def test_warmup_runs_once_in_a_worker_and_numba_threads_are_set(local_sweep):
    rows, log, _ = local_sweep
    (warm,) = (log / "warmup.log").read_text().splitlines()  # one host: one warm-up
    pid, estimators = warm.split()
    assert int(pid) != os.getpid() and estimators == "reinforce,hnca,bogus"
    assert all(r["numba_threads"] == 1 for r in rows if not r["error"])


def test_failures_are_recorded_and_the_others_complete(local_sweep):
    rows, _, out = local_sweep
    bad = [r for r in rows if r["estimator"] == "bogus"]
    assert all(r["error"].startswith("EstimatorError:") and "bogus" in r["error"] for r in bad)
    assert all(r["phi"] is None for r in bad)
    good = [r for r in rows if r["estimator"] != "bogus"]
    assert all(r["error"] == "" and isinstance(r["phi"], float) for r in good)
    assert "EstimatorError" in out.with_name("results.errors.txt").read_text()


def test_results_equal_local_runs(local_sweep, tmp_path):
    rows, _, out = local_sweep
    header, disk = read_csv(out)
    assert header == ["estimator", "seed", "log", "phi", "last_cost", "pid", "numba_threads", "error", "worker",
                      "wall_s"]
    for r, d in zip(rows, disk, strict=True):
        if r["estimator"] == "bogus":
            continue
        local = sweep_fns.train_coin(r["estimator"], r["seed"], tmp_path)
        assert r["phi"] == local["phi"] == d["phi"] and r["last_cost"] == local["last_cost"] == d["last_cost"]
        assert r["cost_curve"] == local["cost_curve"].tolist()  # curves come back from the curves file too
    seeds = {r["seed"]: r["phi"] for r in rows if r["estimator"] == "reinforce"}
    assert seeds[0] != seeds[1], "two seeds collapsed into one result"


# ------------------------------------------------------------------ a real `dask scheduler` + 2 `dask worker`

def _dask(*args, cwd):
    exe = Path(sys.executable).with_name("dask")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([*cmd, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # this checkout's scg, as in the client


def _stop(procs, grace=5.0):
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for p in procs:  # the nanny's worker child is in the same process group
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes on loopback, started in a folder without the sweep files."""
    elsewhere = tmp_path_factory.mktemp("workers_cwd")
    sched_file = elsewhere / "scheduler.json"
    procs = [_dask("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                   str(sched_file), cwd=elsewhere)]
    try:
        for i in range(2):
            procs.append(_dask("worker", "--scheduler-file", str(sched_file), "--host", "127.0.0.1", "--nthreads",
                               "1", "--no-dashboard", "--local-directory", str(elsewhere / f"w{i}"), cwd=elsewhere))
        from distributed import Client

        deadline, address = time.monotonic() + 60, None
        while address is None and time.monotonic() < deadline:  # the scheduler writes the file when it is up
            try:
                address = json.loads(sched_file.read_text())["address"]
            except (OSError, ValueError, KeyError):
                time.sleep(0.1)
        assert address is not None, "dask scheduler did not start within 60 s"
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        _stop(procs)


def _worker_pids(address):
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(2, timeout=60)
        return set(client.run(os.getpid).values())


MODEL = textwrap.dedent('''
    import os
    from pathlib import Path

    import numpy as np
    import helper_mod  # a module next to this file: shipped with it

    def f(a, seed, log):
        with open(Path(log) / f"{a}-{seed}.log", "a") as fh:
            fh.write(f"{os.getpid()}\\n")
        if a == "bad":
            raise ValueError("bad configuration")
        if a == "die_once" and not (Path(log) / "died").exists():
            (Path(log) / "died").write_text("x")
            os.kill(os.getpid(), 9)  # the worker is lost mid-task
        rng = np.random.default_rng(seed)
        return {"value": helper_mod.scale(float(rng.normal())) + len(a), "pid": os.getpid(),
                "curve": rng.normal(size=4)}

    if __name__ == "__main__":
        raise SystemExit("the __main__ block must not run")
''')


@pytest.fixture
def model_file(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "helper_mod.py").write_text("def scale(x):\n    return 10.0 * x\n")
    (folder / "model.py").write_text(MODEL)
    (tmp_path / "log").mkdir()
    return folder / "model.py", tmp_path / "log"


def _local_value(a, seed):
    import numpy as np

    return 10.0 * float(np.random.default_rng(seed).normal()) + len(a)


def test_cli_on_dask_scheduler_ships_the_file_records_failures_and_resumes(dask_cluster, model_file, tmp_path,
                                                                          capsys):
    address = dask_cluster
    worker_pids = _worker_pids(address)
    model, log = model_file
    out = tmp_path / "res.csv"
    argv = ["sweep", f"{model}:f", "--grid", "a=x,bad,yy", "seed=0,1", f"log={log}", "--scheduler", address,
            "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 1  # some configurations failed
    said = capsys.readouterr().out
    assert "6 configurations: 4 ok, 2 failed" in said
    header, rows = read_csv(out)
    assert header == ["a", "seed", "log", "value", "pid", "error", "worker", "wall_s"]
    for r in rows:
        pids = [int(p) for p in (log / f"{r['a']}-{r['seed']}.log").read_text().split()]
        assert len(pids) == 1 and pids[0] in worker_pids and pids[0] != os.getpid()
        if r["a"] == "bad":
            assert r["error"] == "ValueError: bad configuration" and r["value"] is None
        else:
            assert r["error"] == "" and r["value"] == _local_value(r["a"], r["seed"]) and r["pid"] == pids[0]
    curves = [json.loads(line) for line in out.with_name("res.curves.jsonl").read_text().splitlines()]
    assert len(curves) == 4 and all(len(c["curves"]["curve"]) == 4 for c in curves)

    assert cli.main(argv) == 2  # the file exists: refuse rather than overwrite finished work
    assert "--resume" in capsys.readouterr().err

    # resume: drop one finished row; only it and the failed ones run again
    text = out.read_text().splitlines()
    out.write_text("\n".join(line for line in text if not line.startswith("yy,1,")) + "\n")
    assert cli.main([*argv, "--resume"]) == 1
    assert "resuming" in capsys.readouterr().out
    counts = {p.stem: len(p.read_text().split()) for p in log.glob("*.log")}
    assert counts == {"x-0": 1, "x-1": 1, "yy-0": 1, "yy-1": 2, "bad-0": 2, "bad-1": 2}
    _, again = read_csv(out)
    assert [(r["a"], r["seed"]) for r in again] == [(r["a"], r["seed"]) for r in rows]  # grid order kept


def test_colliding_task_keys_are_caught(dask_cluster, model_file, monkeypatch):
    """Deliberately broken: every task under one key (as Dask's pure=True caching would do). The check fires."""
    address = dask_cluster
    model, log = model_file
    monkeypatch.setattr(runner, "task_key", lambda config, index, token: f"scg-sweep-same-{token}")
    rows = scg.sweep(f"{model}:f", {"a": ["x"], "seed": [0, 1, 2], "log": [str(log)]}, scheduler=address,
                     progress=False)
    assert sum("task keys collided" in r["error"] for r in rows) == 2


def test_unreachable_scheduler_is_one_line_and_status_2(tmp_path, model_file):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    model, log = model_file
    proc = subprocess.run([sys.executable, "-m", "scg.cli", "sweep", f"{model}:f", "--grid", "a=x", "seed=0",
                           f"log={log}", "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "1",
                           "--out", str(tmp_path / "r.csv")], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, check=False)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler" in lines[0] and "Traceback" not in proc.stderr


def test_a_lost_worker_has_its_task_retried(dask_cluster, model_file):
    """The first attempt kills its worker process (SIGKILL); Dask reschedules it and the nanny restarts the worker.

    (Only one configuration here: Dask also recomputes results that lived on a lost worker and had not yet
    reached the client, so "exactly once" is checked on sweeps without a lost worker.)"""
    address = dask_cluster
    model, log = model_file
    rows = scg.sweep(f"{model}:f", {"a": ["die_once"], "seed": [3], "log": [str(log)]}, scheduler=address,
                     progress=False)
    assert rows[0]["error"] == ""
    pids = [int(p) for p in (log / "die_once-3.log").read_text().split()]
    assert len(pids) == 2 and pids[0] != pids[1] and os.getpid() not in pids
    assert rows[0]["error"] == "" and rows[0]["pid"] == pids[1]
    assert rows[0]["value"] == _local_value("die_once", 3)


def test_ctrl_c_keeps_finished_rows(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) mid-sweep: the finished rows stay in the
    CSV, the command says how to resume and exits with 130, and the workers print no tracebacks."""
    (tmp_path / "slow.py").write_text("import time\n\ndef f(seed):\n    time.sleep(0.2 if seed < 2 else 60)\n"
                                      "    return {'x': seed}\n")
    out = tmp_path / "r.csv"
    # `scg sweep` with Ctrl-C handled as in a terminal, even when pytest runs in the background (`&` ignores SIGINT)
    scg_cmd = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
               "from scg.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen([sys.executable, "-c", scg_cmd, "sweep", f"{tmp_path / 'slow.py'}:f", "--grid",
                             "seed=0,1,2,3", "--workers", "2", "--out", str(out)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not out.exists() or len(read_csv(out)[1]) < 2):
            time.sleep(0.2)
        assert out.exists() and len(read_csv(out)[1]) == 2, "the two quick configurations did not finish in 120 s"
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        _stop([proc], grace=1.0)
    assert proc.returncode == 130
    assert [(r["seed"], r["x"], r["error"]) for r in read_csv(out)[1]] == [(0, 0, ""), (1, 1, "")]
    assert "continue with --resume" in err and "Traceback" not in err
