"""The `scg` command line: inspect, dot, bench."""

import subprocess
import sys
import textwrap

import pytest

from scg import cli

MODEL = textwrap.dedent("""
    import scg
    g = scg.Graph("coin")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        scg.cost("c", (b - 0.45) ** 2)
    if __name__ == "__main__":
        raise SystemExit("the __main__ block must not run")
""")

TWO = MODEL.replace('if __name__', 'h = scg.Graph("empty")\nalias = g\nif __name__')


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


def test_inspect_prints_model_estimator_and_plan(model, capsys):
    assert cli.main(["inspect", str(model), "--estimator", "hnca"]) == 0
    out = capsys.readouterr().out
    assert "=== model IR: coin ===" in out and "graph coin(" in out
    assert "graph coin.hnca(" in out and "# b: hnca" in out and "f-HNCA" in out
    assert "=== fused plan (numpy) ===" in out and "(none:" in out


def test_inspect_by_name_per_node_estimator_and_baseline(tmp_path, capsys):
    path = tmp_path / "two.py"
    path.write_text(TWO)
    assert cli.main(["inspect", f"{path}:g", "-e", "default=reinforce", "--baseline", "ema"]) == 0
    out = capsys.readouterr().out
    assert "# b: reinforce" in out and "ema_b" in out
    assert cli.main(["inspect", str(path)]) == 1
    assert "several graphs" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [
    ("missing.py", "no such file"),
    ("{model}:nope", "no module-level variable 'nope'"),
    ("{model}:phi", "not an scg.Graph"),
])
def test_inspect_errors(model, capsys, spec, message):
    assert cli.main(["inspect", spec.format(model=model)]) == 1
    assert message in capsys.readouterr().err


def test_inspect_bad_estimator(model, capsys):
    assert cli.main(["inspect", str(model), "-e", "bogus"]) == 1
    assert "bogus" in capsys.readouterr().err


def test_no_graph_in_file(tmp_path, capsys):
    path = tmp_path / "empty.py"
    path.write_text("x = 1\n")
    assert cli.main(["inspect", str(path)]) == 1
    assert "no module-level scg.Graph" in capsys.readouterr().err


def test_dot_text_and_missing_graphviz(model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "g.dot"
    assert cli.main(["dot", str(model), "-o", str(out)]) == 0
    assert out.read_text().lstrip().startswith("digraph")
    monkeypatch.setattr(cli.shutil, "which", lambda name: None)
    svg = tmp_path / "g.svg"
    assert cli.main(["dot", str(model), "-o", str(svg), "--estimator", "reinforce"]) == 0
    said = capsys.readouterr().out
    assert "not installed" in said and not svg.exists()
    assert "digraph" in (tmp_path / "g.dot").read_text()


def test_dot_with_graphviz(model, tmp_path, monkeypatch):
    fake = tmp_path / "dot"
    fake.write_text(f"#!{sys.executable}\nimport sys\nopen(sys.argv[-1], 'w').write('<svg>' + sys.stdin.read())\n")
    fake.chmod(0o755)
    monkeypatch.setattr(cli.shutil, "which", lambda name: str(fake))
    svg = tmp_path / "g.svg"
    assert cli.main(["dot", str(model), "-o", str(svg)]) == 0
    assert svg.read_text().startswith("<svg>digraph")


def test_bench_missing_and_present(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "find_bench_script", lambda: None)
    assert cli.main(["bench"]) == 2
    assert "benchmarks/bandit_step.py" in capsys.readouterr().err
    script = tmp_path / "benchmarks" / "bandit_step.py"
    script.parent.mkdir()
    script.write_text("import sys\nprint('BENCH', sys.argv[1:])\nsys.exit(3)\n")
    monkeypatch.setattr(cli, "find_bench_script", lambda: script)
    assert cli.main(["bench", "--quick"]) == 3


def test_help_and_console_entry_point():
    parser = cli.build_parser()
    text = parser.format_help()
    for word in ("inspect", "dot", "bench"):
        assert word in text
    proc = subprocess.run([sys.executable, "-m", "scg.cli", "inspect", "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "--estimator" in proc.stdout and "FILE.py[:graph]" in proc.stdout
    assert cli.main([]) == 2
