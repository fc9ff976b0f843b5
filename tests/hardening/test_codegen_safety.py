"""Issue 7.5: user strings (node, graph, cost and external-cost names; string attributes) never reach
generated kernel text, and the kernel cache never executes a file whose hash does not match its
content. Extends tests/backends/test_numba_program.py and test_numba_cache.py (not repeated here)."""

import os
import sys

import numpy as np
import pytest

import scg
from scg.backends import kernel_cache

EVIL = [
    "a'\"\"\"\nimport os; os._exit(3)\n\"\"\"",
    "__import__('subprocess').call('touch scg_pwned', shell=True)",
    "\\x00\r\n\tb",
    "{0.__class__}%s{k0}",
    "# noqa\n@njit\ndef k1(): pass",
]


def _graph():
    g = scg.Graph(EVIL[0] + EVIL[4])
    with g:
        x = scg.input(EVIL[1], shape=(3,))
        y = scg.input(EVIL[2], dtype="int64")
        w = scg.param(EVIL[3], shape=(3, 4))
        h = scg.sample(EVIL[4], scg.Bernoulli(logits=x @ w))
        v = scg.param("v'", shape=(4, 3))
        a = scg.sample("a\"", scg.Categorical(logits=h @ v))
        scg.cost("c\n)", -scg.equal(a, y) + 0.1 * h.sum())
        scg.cost("d'''", scg.take(scg.softmax(x), y))
    return g


def test_names_cannot_inject_code_into_kernels(tmp_path):
    g = _graph()
    est = scg.compile(g, "hnca", backend="numba", baseline="loo")
    src = est.source
    for bad in EVIL + ["__import__", "subprocess", "os._exit", "pwned", "v'", "a\""]:
        assert bad not in src
    compile(src, "<generated>", "exec")  # still valid Python
    gen = np.random.default_rng(0)
    params = g.init_params(0)
    inputs = {EVIL[1]: gen.normal(size=(5, 3)), EVIL[2]: np.arange(5) % 3}
    out = est(params, inputs, seed=2, n_samples=2)
    ref = scg.compile(g, "hnca", backend="numpy", baseline="loo")(params, inputs, seed=2, n_samples=2)
    assert sorted(out.samples) == sorted([EVIL[4], "a\""]) and set(out.grads) == {EVIL[3], "v'"}
    assert all(np.array_equal(out.samples[k], ref.samples[k]) for k in ref.samples)
    assert not os.path.exists("scg_pwned")  # the payload would touch it in the working directory
    # the names are still shown to the user where they belong: the printed IR, with escapes
    assert repr(EVIL[4]) in str(est.ir) or EVIL[4].split("\n")[0] in str(est.ir)


def test_external_cost_and_error_messages_quote_names_safely():
    g = scg.Graph("env")
    with g:
        x = scg.input("x", shape=(2,))
        a = scg.sample("a", scg.Categorical(logits=x @ scg.param("w", shape=(2, 3))))
        scg.external_cost(EVIL[1], depends_on=[a])
    est = scg.compile(g, "reinforce", backend="numba")
    assert EVIL[1] not in est.source
    run = est.sample({"w": np.zeros((2, 3))}, {"x": np.ones((4, 2))}, seed=1)
    with pytest.raises(scg.ScgError) as info:
        run.grads(external={})
    assert repr(EVIL[1]) in str(info.value)  # quoted with repr, so it cannot break the message either
    out = run.grads(external={EVIL[1]: np.ones(4)})
    assert out.grads["w"].shape == (2, 3)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SCG_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_cache_never_executes_a_file_that_fails_its_hash(cache, monkeypatch):
    source = "VALUE = 7\n"
    name = kernel_cache.module_name("scg_safe", source)
    path = cache / f"{name}.py"
    marker = cache / "executed"
    path.write_text(f"open({str(marker)!r}, 'w').write('x')\nVALUE = 666\n")  # planted under the right name
    sys.modules.pop(name, None)
    mod = kernel_cache.load("scg_safe", source)
    assert mod.VALUE == 7 and not marker.exists() and name in kernel_cache.STATS.rebuilt
    assert path.read_text() == source


def test_cache_runs_the_verified_text_even_if_the_file_changes_after_the_check(cache, monkeypatch):
    source = "VALUE = 8\n"
    name = kernel_cache.module_name("scg_race", source)
    marker = cache / "executed"
    real = kernel_cache._verified

    def swap_after_check(path, data):  # an attacker swaps the file right after the hash check
        ok = real(path, data)
        path.write_text(f"open({str(marker)!r}, 'w').write('x')\nVALUE = 666\n")
        return ok

    monkeypatch.setattr(kernel_cache, "_verified", swap_after_check)
    sys.modules.pop(name, None)
    mod = kernel_cache.load("scg_race", source)
    assert mod.VALUE == 8 and not marker.exists()
