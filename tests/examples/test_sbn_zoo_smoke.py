"""examples/sbn_zoo.py --quick runs end to end for a few of the zoo's estimators."""

import json
import os
import subprocess
import sys

from tests.examples.test_examples_smoke import EXAMPLES, ROOT, needs_extra


@needs_extra
def test_sbn_zoo_quick(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))  # this checkout's scg, whatever is installed
    proc = subprocess.run([sys.executable, str(EXAMPLES / "sbn_zoo.py"), "--quick", "--no-progress", "--estimators",
                           "disarm,vimco,gumbel_st", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=200, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["table"]) == {"disarm", "vimco", "gumbel_st"}
    assert all(row["test_elbo"][0] < 0 and row["grad_variance"][0] > 0 for row in res["table"].values())
    assert (tmp_path / "variance.png").stat().st_size > 1000 and "| vimco | 5 |" in proc.stdout


@needs_extra
def test_sbn_zoo_quick_nonlinear_records_a_refusal(tmp_path):
    """The nonlinear model runs; HNCA is refused by scg.compile (no closed form, 200 units) and the table says so."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, str(EXAMPLES / "sbn_zoo.py"), "--no-progress", "--no-plot", "--model", "nonlinear",
                           "--steps", "4", "--eval-every", "2", "--n-eval", "20", "--iwae-k", "3", "--seeds", "1", "--estimators", "hnca,arm",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["model"] == "nonlinear" and set(res["table"]) == {"arm"}
    assert "hnca" in res["refused"] and "'z' has 200 units" in res["refused"]["hnca"]
    assert "| hnca | 1 | refused: EstimatorError" in proc.stdout
