"""Numba's cache files under the kernel cache are signed and verified before they are unpickled.

Every scenario runs in fresh processes (the cache is only read by a new process), sharing one cache
dir and one signing key (``SCG_CACHE_KEY``) the way sweep workers do.
"""

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from scg.backends import cache_trust, kernel_cache
from scg.errors import ScgWarning

_CHILD = textwrap.dedent("""
    import json, sys, warnings, numpy as np
    from scg.backends import cache_trust, kernel_cache
    if "--stock-numba" in sys.argv:
        cache_trust.uninstall()       # the pre-fix behaviour: Numba unpickles whatever it finds
    import scg
    warnings.simplefilter("always")
    g = scg.Graph("coin")
    with g:
        x = scg.input("x", shape=(2,))
        w = scg.param("w", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=x * w))
        scg.cost("c", (h - 0.3).sum())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = scg.compile(g, estimator="hnca", backend="numba")
        out = est({"w": np.ones(2)}, {"x": np.ones((3, 2))}, seed=1)
    mod = est.program._base.module
    # the step drivers (which compile the kernels they call) and the kernels
    kernels = [k.name for k in est.plan.kernels if k.kind == "rows"] + list(est.program._base.drivers)
    misses = sum(sum(getattr(mod, k).stats.cache_misses.values()) for k in kernels)
    hits = sum(sum(getattr(mod, k).stats.cache_hits.values()) for k in kernels)
    print(json.dumps({"untrusted": list(kernel_cache.STATS.untrusted), "numba_misses": misses,
                      "numba_hits": hits, "grads": out.grads["w"].tolist(),
                      "warnings": [str(w.message) for w in caught]}))
""")


def _run(cache, *args, key="test-key", extra_env=None):
    env = {**os.environ, "SCG_CACHE_DIR": str(cache), "SCG_CACHE_KEY": key, **(extra_env or {})}
    res = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, env=env,
                         timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


class _Marker:
    """Unpickling this creates ``path``: stands for arbitrary code in a crafted cache file."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """A cache dir filled by one process, and that process's result."""
    cache = tmp_path_factory.mktemp("trust")
    first = _run(cache)
    assert first["numba_misses"] > 0 and first["untrusted"] == []
    return cache, first


def _kernel_files(cache, ext):
    files = sorted(p for p in (cache / "__pycache__").glob(f"scg_k_*.{ext}"))
    assert files, f"no {ext} files of the generated kernel module in the cache"
    return files


def test_signed_files_give_a_warm_hit_in_a_new_process(warm):
    cache, first = warm
    blob = _kernel_files(cache, "nbi")[0].read_bytes()
    assert blob.startswith(cache_trust.MAGIC)
    second = _run(cache)
    assert second["numba_misses"] == 0 and second["numba_hits"] > 0 and second["untrusted"] == []
    assert second["grads"] == first["grads"] and second["warnings"] == []


def test_crafted_pickles_never_run(warm, tmp_path):
    cache, first = warm
    index, data = _kernel_files(cache, "nbi")[0], _kernel_files(cache, "nbc")[-1]
    markers = [tmp_path / "pwned_index", tmp_path / "pwned_data"]
    for target, marker in zip((index, data), markers, strict=True):
        target.write_bytes(pickle.dumps(_Marker(marker)))
    out = _run(cache)
    assert not any(m.exists() for m in markers), "a crafted pickle in the cache was executed"
    assert index.name in out["untrusted"] and out["numba_misses"] > 0
    assert any("failed its signature check" in w for w in out["warnings"])
    assert out["grads"] == first["grads"]
    assert index.read_bytes().startswith(cache_trust.MAGIC)  # rebuilt, signed
    again = _run(cache)
    assert again["numba_misses"] == 0 and again["untrusted"] == []


def test_the_attack_is_real_without_signing(tmp_path):
    """The broken variant: with Numba's own cache files, the same crafted pickle runs."""
    cache = tmp_path / "stock"
    _run(cache, "--stock-numba")
    marker = tmp_path / "pwned"
    _kernel_files(cache, "nbi")[0].write_bytes(pickle.dumps(_Marker(marker)))
    _run(cache, "--stock-numba")
    assert marker.exists()


def test_truncated_data_file_is_rebuilt(warm):
    cache, first = warm
    target = _kernel_files(cache, "nbc")[0]
    blob = target.read_bytes()
    target.write_bytes(blob[: len(blob) // 2])
    out = _run(cache)
    assert target.name in out["untrusted"] and out["numba_misses"] > 0 and out["grads"] == first["grads"]
    assert target.read_bytes().startswith(cache_trust.MAGIC)


@pytest.mark.parametrize("damage", ["none", "truncate", "flip", "swap", "unsigned", "other_key"])
def test_verified_payload_rejects_every_damage(tmp_path, monkeypatch, damage):
    monkeypatch.setattr(cache_trust, "_key", (b"k" * 32, True))
    payload = pickle.dumps(("stamp", {"sig": "data"}))
    path, other = tmp_path / "f.1.nbc", tmp_path / "g.1.nbc"
    blob = cache_trust.sign(path.name, payload)
    blob = {"none": blob, "truncate": blob[:-3], "flip": blob[:-1] + bytes([blob[-1] ^ 1]),
            "swap": cache_trust.sign(other.name, payload), "unsigned": payload, "other_key": blob}[damage]
    path.write_bytes(blob)
    if damage == "other_key":
        monkeypatch.setattr(cache_trust, "_key", (b"j" * 32, True))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = cache_trust.verified_payload(path)
    if damage == "none":
        assert got == payload and path.exists() and not caught
    else:
        assert got is None and not path.exists() and any(issubclass(w.category, ScgWarning) for w in caught)


def test_files_signed_with_another_key_are_rebuilt(warm):
    cache, first = warm
    out = _run(cache, key="another-users-key")
    assert out["untrusted"] and out["numba_misses"] > 0 and out["grads"] == first["grads"]
    assert _run(cache)["untrusted"]  # ... and back: each key distrusts the other's files


def _fresh_load(source):
    name = kernel_cache.module_name("scg_trust_test", source)
    sys.modules.pop(name, None)
    return kernel_cache.load("scg_trust_test", source)


@pytest.fixture
def no_private_dir(monkeypatch):
    monkeypatch.setattr(kernel_cache, "_private", None)


def test_cache_dir_that_is_a_file_falls_back_with_a_warning(tmp_path, monkeypatch, no_private_dir):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("SCG_CACHE_DIR", str(not_a_dir))
    with pytest.warns(ScgWarning, match="unusable"):
        mod = _fresh_load("VALUE = 7\n")
    assert mod.VALUE == 7 and not_a_dir.read_text() == "x"
    assert kernel_cache._private is not None and (kernel_cache._private / f"{mod.__name__}.py").exists()


def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path, monkeypatch, no_private_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    monkeypatch.setenv("SCG_CACHE_DIR", str(ro))
    real = kernel_cache.atomic_write

    def refuse(path, data):  # a read-only directory, also when the tests run as root
        if path.parent == ro:
            raise PermissionError(13, "Permission denied", str(path))
        real(path, data)

    monkeypatch.setattr(kernel_cache, "atomic_write", refuse)
    with pytest.warns(ScgWarning, match="cannot write to the cache dir"):
        mod = _fresh_load("VALUE = 8\n")
    assert mod.VALUE == 8 and list(ro.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores directory modes")
def test_read_only_empty_dir_really(tmp_path, monkeypatch, no_private_dir):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    monkeypatch.setenv("SCG_CACHE_DIR", str(ro))
    with pytest.warns(ScgWarning):
        assert _fresh_load("VALUE = 9\n").VALUE == 9


def test_numba_compile_with_unusable_cache_dir(tmp_path):
    """End to end: SCG_CACHE_DIR is a file; the numba estimator still compiles and runs (a warning, no raw error)."""
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    out = _run(not_a_dir)
    assert any("unusable" in w for w in out["warnings"])
    assert np.all(np.isfinite(out["grads"]))


def test_key_file_is_private_and_loose_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("SCG_CACHE_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setattr(cache_trust, "_key", None)
    monkeypatch.setattr(cache_trust, "_warned", set())
    key, persistent = cache_trust.signing_key()
    path = tmp_path / "scg" / "cache-key"
    assert persistent and path.read_bytes() == key and (os.name != "posix" or path.stat().st_mode & 0o777 == 0o600)
    monkeypatch.setattr(cache_trust, "_key", None)
    assert cache_trust.signing_key() == (key, True)  # the same key next time
    os.chmod(path, 0o666)
    monkeypatch.setattr(cache_trust, "_key", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        key2, persistent2 = cache_trust.signing_key()
    assert not persistent2 and key2 != key and any("accessible to other users" in str(w.message) for w in caught)
