"""The hand-written PyTorch and JAX SBN estimators of benchmarks/ compute scg's gradients.

scg's NumPy reference backend (float64) draws a batch; its sampler's uniforms are read
from the DisARM IR's ``noise_uniform`` node, checked to reproduce ``out.samples``, and
fed with the samples through ``torch_sbn`` / ``jax_sbn``; every parameter gradient must
agree to 1e-9 relative. Skipped when torch / jax are not installed (``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import sbn_common

HIDDEN, ROWS, SEED = 12, 6, 5
LABELS = sorted(sbn_common.ESTIMATORS)


@pytest.fixture(scope="module")
def setup():
    params = sbn_common.init_params(HIDDEN, dtype=np.float64)
    x, _ = sbn_common.load_rows(ROWS)
    return params, x.astype(np.float64)


def scg_run(label, params, x):
    return sbn_common.reference(label, params, x, SEED)


def rel_err(grads, ref):
    return sbn_common.rel_err(grads, ref)[0]


@pytest.mark.parametrize("label", LABELS)
def test_torch_matches_scg(label, setup):
    torch_sbn = pytest.importorskip("torch_sbn", exc_type=ImportError)
    params, x = setup
    out, u, z = scg_run(label, params, x)
    assert rel_err(torch_sbn.grads_given_noise(label, params, x, u, z), out.grads) < 1e-9


@pytest.mark.parametrize("label", LABELS)
def test_jax_matches_scg(label, setup):
    jax = pytest.importorskip("jax")
    jax_sbn = pytest.importorskip("jax_sbn", exc_type=ImportError)
    params, x = setup
    out, u, z = scg_run(label, params, x)
    with jax.enable_x64(True):
        grads = jax_sbn.grads_given_noise(label, params, x, u, z)
    assert grads["enc_W"].dtype == np.float64
    assert rel_err(grads, out.grads) < 1e-9


def test_the_check_can_fail(setup):
    """A different estimator with the same noise (ARM for DisARM) is caught."""
    torch_sbn = pytest.importorskip("torch_sbn", exc_type=ImportError)
    params, x = setup
    out, u, z = scg_run("disarm", params, x)
    assert rel_err(torch_sbn.grads_given_noise("arm", params, x, u, z), out.grads) > 1e-3
