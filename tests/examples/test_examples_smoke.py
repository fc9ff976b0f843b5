"""Each example's --quick mode runs end to end (the CI smoke test; ~1 minute in all on 2 cores)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HAVE_EXTRA = all(importlib.util.find_spec(m) is not None for m in ("mlxtend", "matplotlib"))
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason='needs the examples extra (pip install -e ".[examples]")')


def run(script, *args, timeout=150):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, check=False)
    assert proc.returncode == 0, f"{script} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_quickstart():
    out = run("quickstart.py")
    assert "step 200" in out and "mean reward" in out
    assert len((EXAMPLES / "quickstart.py").read_text().splitlines()) < 40


@needs_extra
def test_bandit_quick(tmp_path):
    out = run("bandit_mnist.py", "--quick", "--no-progress", "--out", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["summary"]["depth1"]) == {"reinforce", "reinforce+ema", "hnca", "hnca+ema"}
    assert (tmp_path / "curves.csv").is_file() and (tmp_path / "test_accuracy.png").stat().st_size > 1000
    assert "final test accuracy" in out


@needs_extra
def test_sbn_vae_quick(tmp_path):
    out = run("sbn_vae.py", "--quick", "--no-progress", "--out", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    assert {"1/hnca", "1/muprop", "2/hnca+ema", "2/reinforce"} <= set(res["table"])
    assert all(v["test_elbo"] < 0 for v in res["table"].values())
    assert (tmp_path / "elbo.png").is_file() and "encoder gradient variance" in out


@needs_extra
def test_rebar_toy_quick(tmp_path):
    run("rebar_toy.py", "--quick", "--no-progress", "--out", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["exact_gradient"] == pytest.approx(0.025)
    rows = res["estimates_at_phi0"]
    assert rows["hnca (f-HNCA)"]["mean"] == pytest.approx(0.025) and rows["hnca (f-HNCA)"]["std"] < 1e-9
    for r in rows.values():  # unbiased: within 5 standard errors of the exact value
        assert r["z_vs_exact"] is None or abs(r["z_vs_exact"]) < 5
    assert {"disarm", "rebar eta=1 lambda=0.5 (start)"} <= set(rows)
    assert any(k.startswith("relax adapted") for k in rows)
    assert set(res["optimisation"]) == {"0.45", "0.499", "0.501"}
    assert {"rebar", "relax", "disarm", "rloo (K=2)"} <= set(res["optimisation"]["0.45"])
    assert (tmp_path / "rebar_toy.png").is_file()


def test_dice_hessian_quick():
    out = run("dice_hessian.py", "--quick")
    assert "exact (scg.exact, order=2)   2.438959" in out
    assert "stop-gradient surrogate" in out and "est.hvp vs the Hessian" in out
