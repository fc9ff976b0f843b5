"""Grids, the results store and the report: no cluster needed."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scg import cli
from scg.sweeps.errors import SweepError
from scg.sweeps.grid import config_key, expand, format_value, parse_grid, parse_value, validate_grid
from scg.sweeps.report import report, summarize
from scg.sweeps.store import ResultStore, read_csv

ROOT = Path(__file__).resolve().parents[2]


def test_values_parse_as_int_then_float_then_str():
    assert [parse_value(v) for v in ["3", "-2", "1e-3", "0.5", "inf", "hnca", "1.2.3", "0x10"]] == \
        [3, -2, 0.001, 0.5, float("inf"), "hnca", "1.2.3", "0x10"]
    for v in [3, 0.1, 1e-300, -2.5e17, "hnca", "3x"]:
        assert parse_value(format_value(v)) == v  # the CSV round trip is exact


def test_grid_expands_first_name_slowest():
    cfgs = expand(parse_grid(["estimator=hnca,muprop", "seed=0,1,2", "lr=1e-3"]))
    assert len(cfgs) == 6 and cfgs[0] == {"estimator": "hnca", "seed": 0, "lr": 0.001}
    assert [c["seed"] for c in cfgs] == [0, 1, 2, 0, 1, 2]
    assert config_key({"seed": 2}, ["seed"]) == config_key({"seed": "2"}, ["seed"])  # as read back from the CSV


@pytest.mark.parametrize("items, message", [
    ([], "at least one"),
    (["seed"], "malformed --grid item 'seed'"),
    (["=1,2"], "malformed"),
    (["seed=0,,1"], "empty value"),
    (["seed="], "empty value"),
    (["1x=2"], "not a Python identifier"),
    (["seed=0", "seed=1"], "twice"),
    (["seed=0,0"], "repeats 0"),
    (["error=1"], "reserved"),
])
def test_malformed_grid(items, message):
    with pytest.raises(SweepError, match=message):
        parse_grid(items)


def test_validate_grid_api():
    assert validate_grid({"seed": 3, "lr": (0.1, 0.2)}) == {"seed": [3], "lr": [0.1, 0.2]}
    for bad in [{}, [], {"seed": []}, {"a b": [1]}]:
        with pytest.raises(SweepError):
            validate_grid(bad)


def test_store_mirrors_every_row_and_resumes(tmp_path):
    out = tmp_path / "r.csv"
    store = ResultStore(out, ["est", "seed"])
    store.set_order([{"est": "a", "seed": 0}, {"est": "a", "seed": 1}])
    store.add({"est": "a", "seed": 1}, {"m": 0.25}, {"curve": [1.0, 2.0]}, worker="w", wall_s=1.5)
    assert read_csv(out)[1] == [{"est": "a", "seed": 1, "m": 0.25, "error": "", "worker": "w", "wall_s": 1.5}]
    store.add({"est": "a", "seed": 0}, {}, {}, error="ValueError: x", traceback="Traceback ...\nValueError: x")
    header, rows = read_csv(out)
    assert header == ["est", "seed", "m", "error", "worker", "wall_s"] and [r["seed"] for r in rows] == [0, 1]
    with pytest.raises(SweepError, match="exists"):
        ResultStore(out, ["est", "seed"])
    again = ResultStore(out, ["est", "seed"], resume=True)
    assert again.done({"est": "a", "seed": 1}) and not again.done({"est": "a", "seed": 0})  # failures rerun
    assert again.row({"est": "a", "seed": 1})["curve"] == [1.0, 2.0]
    with pytest.raises(SweepError, match="no column for grid name"):
        ResultStore(out, ["est", "lr"], resume=True)
    fresh = ResultStore(out, ["est", "seed"], overwrite=True)
    assert len(read_csv(out)[1]) == 2  # nothing is touched until the sweep starts
    fresh.start()
    assert read_csv(out)[1] == [] and not out.with_name("r.curves.jsonl").exists()


def _write_sweep(tmp_path):
    out = tmp_path / "r.csv"
    store = ResultStore(out, ["estimator", "seed"], meta={"names": ["estimator", "seed"]})
    rng = np.random.default_rng(0)
    values = {}
    for est in ["hnca", "muprop"]:
        for seed in range(3):
            v = float(rng.normal())
            values.setdefault(est, []).append(v)
            store.add({"estimator": est, "seed": seed}, {"elbo": v}, {"step": [0, 10, 20], "elbo_curve": [v, v, v]})
    store.add({"estimator": "bad", "seed": 0}, {}, {}, error="ValueError: no")
    return out, values


def test_report_mean_std_over_seeds_and_plots(tmp_path):
    out, values = _write_sweep(tmp_path)
    groups, metrics, rows = summarize(out)
    assert groups == ["estimator"] and metrics == ["elbo", "wall_s"]
    hnca = next(r for r in rows if r["group"]["estimator"] == "hnca")
    assert hnca["n"] == 3 and hnca["values"]["elbo"] == values["hnca"]
    text, files = report(out)
    want = f"{np.mean(values['muprop']):.4g} ± {np.std(values['muprop'], ddof=1):.2g}"
    assert f"| muprop | 3 | {want} |" in text and "| bad | 0 (1 failed) |" in text
    png = tmp_path / "r_elbo_curve.png"
    assert files == [tmp_path / "r.summary.md", png] and png.stat().st_size > 5000


def test_scg_report_command(tmp_path, capsys):
    out, _ = _write_sweep(tmp_path)
    assert cli.main(["report", str(out), "--no-plots"]) == 0
    assert "| hnca | 3 |" in capsys.readouterr().out
    assert cli.main(["report", str(tmp_path / "missing.csv")]) == 2
    assert "no such results file" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["missing.py:f", "--grid", "seed=0"], "no such file: 'missing.py'"),
    (["{model}", "--grid", "seed=0"], "expected FILE.py:function"),
    (["{model}:nope", "--grid", "seed=0"], "defines no function 'nope' (functions there: f)"),
    (["{model}:f", "--grid", "seed"], "malformed --grid item 'seed'"),
    (["{model}:f", "--grid", "seed=0,,1"], "empty value"),
    (["{model}:f", "--grid", "seed=0", "--workers", "0"], "--workers must be at least 1"),
    (["{broken}:f", "--grid", "seed=0"], "importing"),
    (["{model}:f", "--grid", "seed=0", "--scheduler", "notanaddress"], "bad scheduler address 'notanaddress'"),
    (["{model}:f", "--grid", "seed=0", "--warmup", "nope"], "defines no function 'nope'"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, argv, message):
    model = tmp_path / "m.py"
    model.write_text("def f(seed):\n    return {'x': seed}\n")
    broken = tmp_path / "broken.py"
    broken.write_text("import not_a_module_anywhere\n")
    argv = [a.format(model=model, broken=broken) for a in argv]
    assert cli.main(["sweep", *argv, "--out", str(tmp_path / "r.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "r.csv").exists()


def test_argparse_errors_are_one_line_and_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", "m.py:f", "--workers", "2", "--scheduler", "tcp://x:1", "--grid", "seed=0", "--out", "r.csv"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "not allowed with argument" in err[0]


def test_import_scg_does_not_import_dask():
    code = ("import sys, scg, scg.cli; scg.cli.build_parser(); "  # nor does any `scg` command until a sweep runs
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules; print(scg.sweep)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "function sweep" in proc.stdout and json  # scg.sweep resolves lazily to the function


def test_load_function_bundles_helper_modules_of_its_own_folder(tmp_path):
    from scg.sweeps.shipping import load_function

    fns = []
    for i in (1, 2):  # two folders, each with its own helper_mod: neither may see the other's
        folder = tmp_path / f"m{i}"
        folder.mkdir()
        (folder / "helper_mod.py").write_text(f"VALUE = {i}\n")
        (folder / "model.py").write_text("import helper_mod\n\ndef f():\n    return {'v': helper_mod.VALUE}\n")
        fn, bundle = load_function(f"{folder / 'model.py'}:f")
        assert bundle.siblings == ["helper_mod"] and bundle.files["helper_mod.py"] == f"VALUE = {i}\n".encode()
        assert bundle.module in bundle.files or f"{bundle.module}.py" in bundle.files
        fns.append(fn)
    assert fns[1]() == {"v": 2}


@pytest.mark.skipif(any(__import__("importlib").util.find_spec(m) is None for m in ("mlxtend", "matplotlib")),
                    reason='needs the examples extra (pip install -e ".[examples]")')
def test_sbn_sweep_function_is_deterministic(monkeypatch):
    """examples/sweep_sbn.py:run, tiny: the metrics and the curve, identical on a second call (what a worker gets)."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    import sweep_sbn

    kw = {"steps": 4, "hidden": 8, "eval_every": 2, "n_eval": 20, "n_train": 200, "backend": "numpy"}
    a = sweep_sbn.run("reinforce_loo", 1, **kw)
    assert a["step"] == [0, 2, 4] and len(a["test_elbo_curve"]) == 3 and a["test_elbo"] < 0
    b = sweep_sbn.run("reinforce_loo", 1, **kw)
    assert {k: v for k, v in a.items() if k not in ("step_ms", "train_s")} == \
        {k: v for k, v in b.items() if k not in ("step_ms", "train_s")}
    with pytest.raises(ValueError, match="unknown estimator"):
        sweep_sbn.run("bogus", 0, **kw)
