"""The Numba CUDA backend without a GPU.

* The parity cases (``cuda_sim_cases.py``) run in a subprocess under the CUDA
  simulator: ``NUMBA_ENABLE_CUDASIM=1`` only works if set before numba is first
  imported, and this process has imported numba already.
* Without a GPU and without the simulator, ``backend="cuda"`` says how to enable it.
* Where NVIDIA's ``numba-cuda`` package is installed (``pip install "numba-cuda[cu13]"``),
  every generated and fixed kernel is compiled to PTX (no GPU needed); CI installs
  only ``.[dev]``, so that test skips there.
"""

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from numba_graphs import bandit, categorical_parent, decoder, gaussian

import scg
from scg.errors import BackendError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def test_simulator_parity_cases_pass():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE / "cuda_sim_cases.py")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"simulator cases failed (rc={proc.returncode}):\n{out[-8000:]}"
    summary = out.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary) and "skipped" not in summary and "failed" not in summary, out[-4000:]


def _has_gpu() -> bool:
    from numba import cuda
    try:
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


def test_no_gpu_no_simulator_is_a_clear_error():
    import numba
    if numba.config.ENABLE_CUDASIM or _has_gpu():
        pytest.skip("this process has a GPU or the simulator")
    with pytest.raises(BackendError) as e:
        scg.compile(bandit(), estimator="hnca", backend="cuda")
    msg = str(e.value)
    assert "NUMBA_ENABLE_CUDASIM=1" in msg and "before numba is first imported" in msg and ".[cuda]" in msg


# -- PTX (needs the numba-cuda package, not a GPU) ------------------------------------------
_FIXED_SIGNATURES = {
    "bmm": "void({f}[:, :, ::1], {f}[:, :, ::1], {f}[:, :, ::1])",
    "outer_sum": "void({f}[:, ::1], {f}[:, ::1], int64, {f}[:, ::1])",
    "colsum": "void({f}[:, ::1], {f}[::1])",
    "loo": "void({f}[:, ::1], {f}[:, ::1], int64, int64)",
    "axpy": "void({f}[::1], {f}, {f}[::1])",
    "adam": "void({f}[::1], {f}[::1], {f}[::1], {f}[::1], {f}, {f}, {f}, {f}, {f}, {f})",
}


@pytest.fixture
def ptx_compiler(monkeypatch):
    pytest.importorskip("numba_cuda", reason="numba-cuda not installed (pip install 'numba-cuda[cu13]')")
    from numba import cuda
    if not hasattr(cuda, "compile_ptx") or getattr(cuda, "simulator_enabled", False):
        pytest.skip("this numba.cuda cannot compile PTX")
    if not _has_gpu():  # device functions ask the driver for the current device's compute capability
        from numba.cuda import dispatcher
        monkeypatch.setattr(dispatcher, "get_current_device",
                            lambda: types.SimpleNamespace(compute_capability=(8, 0)))

    def compile_ptx(func, sig):
        ptx, _ = cuda.compile_ptx(func.py_func, sig, cc=(8, 0))
        assert ".entry" in ptx or ".visible" in ptx
        return ptx
    return compile_ptx


@pytest.mark.parametrize("graph, estimator, baseline, precision", [
    (bandit(), "hnca", "loo", "float64"),
    (bandit(), "muprop", "ema", "float32"),
    (gaussian(), "scg", None, "float64"),
    (categorical_parent(), "hnca", None, "float32"),
    (decoder(), "hnca", None, "float64"),
])
def test_generated_kernels_compile_to_ptx(ptx_compiler, graph, estimator, baseline, precision):
    from scg.backends import cuda_render, cuda_runtime, kernel_cache
    from scg.estimators.derive import derive
    from scg.ir.ops import Op
    from scg.passes.fuse import fuse
    from scg.passes.lower import lower

    ir = derive(graph, estimator, baseline).graph
    lowered = lower(ir)
    given = frozenset(n.uid for n in ir.nodes if n.op in (Op.INPUT, Op.PARAM, Op.EXTERNAL_COST, Op.STATE))
    plan = fuse(lowered, given, frozenset(), parallel=False)
    rt = kernel_cache.load(f"scg_cudart_{precision}", cuda_runtime.runtime_source(precision))
    source = cuda_render.render_module(plan, lowered, precision, rt.__name__, eager=False)
    module = kernel_cache.load("scg_cuda_k_lazy", source)
    assert module.SIGNATURES
    for name, sig in module.SIGNATURES.items():
        ptx_compiler(getattr(module, name), sig)


@pytest.mark.parametrize("precision", ["float64", "float32"])
def test_fixed_kernels_compile_to_ptx(ptx_compiler, precision):
    from scg.backends import cuda_runtime, kernel_cache
    module = kernel_cache.load("scg_cudafix", cuda_runtime.FIXED_SOURCE)
    for name, sig in _FIXED_SIGNATURES.items():
        ptx_compiler(getattr(module, name), sig.format(f=precision))


def test_launch_config_covers_every_item():
    from scg.backends.cuda_runtime import MAX_BLOCKS, THREADS_PER_BLOCK, launch_config
    assert launch_config(1) == (1, 1)
    assert launch_config(130) == (2, THREADS_PER_BLOCK)
    blocks, tpb = launch_config(10**12)
    assert blocks == MAX_BLOCKS and tpb == THREADS_PER_BLOCK  # the grid-stride loop covers the rest
    assert np.all(np.array(launch_config(5)) >= 1)
