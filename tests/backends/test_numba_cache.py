"""The content-addressed kernel cache: cross-process hits, tamper detection, atomic writes."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from scg.backends import kernel_cache


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCG_CACHE_DIR", str(tmp_path))
    return tmp_path


def _fresh(name):
    sys.modules.pop(name, None)


def test_cache_dir_env_override(cache):
    assert kernel_cache.cache_dir() == cache


def test_tampered_entry_is_detected_and_rebuilt(cache):
    source = "VALUE = 41 + 1\n"
    mod = kernel_cache.load("scg_test", source)
    assert mod.VALUE == 42
    path = cache / f"{mod.__name__}.py"
    assert path.read_text() == source
    path.write_text("VALUE = __import__('os').getpid()\n")  # tampered: hash no longer matches the name
    _fresh(mod.__name__)
    mod2 = kernel_cache.load("scg_test", source)
    assert mod2.VALUE == 42 and mod.__name__ in kernel_cache.STATS.rebuilt
    assert path.read_text() == source
    _fresh(mod.__name__)
    hits = len(kernel_cache.STATS.hits)
    kernel_cache.load("scg_test", source)
    assert len(kernel_cache.STATS.hits) == hits + 1


def test_atomic_write_uses_a_temp_file_and_replace(cache, monkeypatch):
    calls = []
    real = os.replace

    def spy(src, dst):
        calls.append((src, dst))
        assert os.path.dirname(src) == os.path.dirname(str(dst)) and os.path.exists(src)
        real(src, dst)

    monkeypatch.setattr(kernel_cache.os, "replace", spy)
    kernel_cache.atomic_write(cache / "x.py", b"A = 1\n")
    assert len(calls) == 1 and (cache / "x.py").read_bytes() == b"A = 1\n"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(kernel_cache.os, "replace", boom)
    with pytest.raises(OSError):
        kernel_cache.atomic_write(cache / "y.py", b"B = 2\n")
    assert not (cache / "y.py").exists() and not list(cache.glob(".y.py.*"))


_CHILD = textwrap.dedent("""
    import json, sys, numpy as np
    import scg
    from scg.backends import kernel_cache
    g = scg.Graph("coin")
    with g:
        x = scg.input("x", shape=(2,))
        w = scg.param("w", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=x * w))
        scg.cost("c", (h - 0.3).sum())
    est = scg.compile(g, estimator="hnca", backend="numba")
    out = est({"w": np.ones(2)}, {"x": np.ones((3, 2))}, seed=1)
    mod = est.program._base.module
    # the step drivers (which compile the kernels they call) and the kernels
    kernels = [k.name for k in est.plan.kernels if k.kind == "rows"] + list(est.program._base.drivers)
    misses = sum(sum(getattr(mod, k).stats.cache_misses.values()) for k in kernels)
    hits = sum(sum(getattr(mod, k).stats.cache_hits.values()) for k in kernels)
    print(json.dumps({"written": kernel_cache.STATS.written, "hits": kernel_cache.STATS.hits,
                      "numba_misses": misses, "numba_hits": hits, "h": out.samples["h"].tolist()}))
""")


def test_second_process_compiles_nothing(cache):
    env = {**os.environ, "SCG_CACHE_DIR": str(cache)}
    runs = []
    for _ in range(2):
        res = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, timeout=300, check=False)
        assert res.returncode == 0, res.stderr[-3000:]
        runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["written"] and first["numba_misses"] > 0
    assert second["written"] == [] and set(second["hits"]) == set(first["written"])
    assert second["numba_misses"] == 0 and second["numba_hits"] > 0
    assert first["h"] == second["h"]
    assert list(cache.glob("__pycache__/*.nbi"))  # numba's own index sits next to our sources
