"""The numba step driver: one native call per plain call, a reused workspace, fresh arrays out."""

import numpy as np
import pytest
from numba_graphs import assert_results_match, bandit, data

import scg
from scg.backends import numba_driver
from scg.backends.numba_driver import Segment, schedule
from scg.ir.ops import Op
from scg.passes.fuse import Kernel


@pytest.fixture(scope="module")
def hnca():
    est = scg.compile(bandit(), estimator="hnca", backend="numba")
    return est, *data(est.model)


@pytest.mark.parametrize("estimator", ["hnca", "reinforce", "muprop"])
def test_a_plain_call_is_one_native_entry(estimator):
    """Every BLAS, row and cross-row step of the plan sits in one driver; host steps are unbatched only."""
    est = scg.compile(bandit(), estimator=estimator, backend="numba")
    sched = est.program._base.schedule
    assert len(sched.segments) == 1, [getattr(i, "name", None) for i in sched.items]
    (seg,) = sched.segments
    native = [k for k in est.plan.kernels if k.kind in ("rows", "cross", "blas")]
    assert [k.name for k in seg.kernels] == [k.name for k in native]
    assert all(not n.batched for k in sched.host for n in k.nodes)
    assert f"def {seg.name}(" in est.source


def _order_ok(sched, leaves) -> bool:
    done = set(leaves)
    for item in sched.items:
        for k in item.kernels if isinstance(item, Segment) else (item,):
            if not set(k.inputs) <= done:
                return False
            done.update(k.outputs)
    return True


def test_schedule_moves_host_steps_around_segments():
    """Host steps run before a segment (hoisted) or after it (deferred); a native step waiting for a
    deferred host step starts a second segment. Synthetic plan: r = rows, h = host."""
    from types import SimpleNamespace

    def k(name, kind, ins, outs):
        return Kernel(name, kind, (), tuple(ins), tuple(outs))

    kernels = [k("r0", "rows", [0], [1]), k("h0", "host", [0], [2]), k("h1", "host", [1], [3]),
               k("r1", "rows", [1, 2], [4]), k("h2", "host", [3], [5]), k("r2", "rows", [5], [6])]
    by_uid = {u: SimpleNamespace(op=Op.ADD) for u in range(7)}
    sched = schedule(SimpleNamespace(kernels=kernels), by_uid)
    names = [[kk.name for kk in i.kernels] if isinstance(i, Segment) else i.name for i in sched.items]
    assert names == ["h0", ["r0", "r1"], "h1", "h2", ["r2"]]
    assert _order_ok(sched, {0})
    # the broken variant: plan order with every native step in one segment runs r2 before h2
    broken = SimpleNamespace(items=(kernels[1], kernels[2], kernels[4],
                                    Segment("d", (kernels[0], kernels[3], kernels[5]), (), (), (), ())))
    assert not _order_ok(SimpleNamespace(items=broken.items[3:] + broken.items[:3]), {0})


@pytest.mark.parametrize("estimator", ["reinforce", "muprop"])
def test_real_schedules_run_every_step_after_its_operands(estimator):
    est = scg.compile(bandit(), estimator=estimator, backend="numba")
    leaves = {n.uid for n in est.ir.nodes if n.op in (Op.INPUT, Op.PARAM, Op.STATE)}
    assert _order_ok(est.program._base.schedule, leaves)


def test_workspace_is_reused_and_results_are_fresh(hnca):
    est, params, inputs = hnca
    first = est(params, inputs, seed=1)
    variant = est.program._base
    arrays = dict(variant.workspace.arrays)
    kept = {k: v.copy() for k, v in first.grads.items()}
    second = est(params, inputs, seed=2)
    assert all(variant.workspace.arrays[u] is a for u, a in arrays.items())  # no new buffers
    for k, v in kept.items():  # the first call's results were not overwritten by the second call
        assert np.array_equal(first.grads[k], v)
    assert any(not np.array_equal(first.grads[k], second.grads[k]) for k in kept)
    values = est.program.run(params, inputs, seed=3, state={})
    for u, v in values.items():
        assert not any(np.shares_memory(v, a) for a in arrays.values()), u


def test_another_row_count_gets_its_own_workspace(hnca):
    est, params, inputs = hnca
    est(params, inputs, seed=1)
    ws = est.program._base.workspace
    small = {k: v[:2] for k, v in inputs.items()}
    got = est(params, small, seed=1)
    assert est.program._base.workspace is not ws and est.program._base.workspace.n == 2
    ref = scg.compile(bandit(), estimator="hnca", backend="numpy")(params, small, seed=1)
    for k in ref.grads:
        np.testing.assert_allclose(got.grads[k], ref.grads[k], rtol=1e-10, atol=1e-12)


def test_returned_views_would_be_caught(hnca):
    """The broken variant: handing out workspace memory makes a later call change an earlier result."""
    est, params, inputs = hnca
    values = est.program.run(params, inputs, seed=3, state={})
    ws = est.program._base.workspace
    views = {u: ws.views[u] for u in values if u in ws.views}
    assert views  # outputs are materialised in the workspace, so views of it would be shared
    before = {u: v.copy() for u, v in views.items()}
    est.program.run(params, inputs, seed=4, state={})
    assert any(not np.array_equal(before[u], views[u]) for u in views)


def test_phase_one_returns_every_materialised_value():
    """A two-phase call hands phase 1's values back as overrides: all of them are copied out."""
    from numba_graphs import external
    est = scg.compile(external(), estimator="reinforce", backend="numba", baseline="ema")
    params, inputs = data(est.model)
    run = est.sample(params, inputs, seed=5, n_samples=2)
    ws = est.program._variants[next(k for k in est.program._variants if k[1])].workspace
    assert set(ws.views) <= set(run.values)
    assert not any(np.shares_memory(run.values[u], ws.views[u]) for u in ws.views)


def test_driver_source_has_no_per_layer_kernels():
    """Identical layers: the driver calls one kernel several times (sites as int64 values, never literals)."""
    est = scg.compile(bandit(layers=4), estimator="reinforce", backend="numba")
    src = est.source
    assert src.count("same pattern as") >= 2
    assert "np.int64(" in src
    assert numba_driver.native(next(k for k in est.plan.kernels if k.kind == "blas"))


def test_long_runs_are_cut_into_several_drivers(monkeypatch):
    """With at most 3 steps per driver the bandit runs several drivers, each reading the previous
    ones' workspace values: same samples and gradients as numpy."""
    monkeypatch.setattr(numba_driver, "MAX_DRIVER_STEPS", 3)
    g = bandit()
    est = scg.compile(g, estimator="hnca", backend="numba")
    sched = est.program._base.schedule
    assert len(sched.segments) > 3 and all(len(s.kernels) <= 3 for s in sched.segments)
    params, inputs = data(est.model)
    got = est(params, inputs, seed=2, n_samples=2)
    ref = scg.compile(g, estimator="hnca", backend="numpy")(params, inputs, seed=2, n_samples=2)
    assert_results_match(ref, got, 1e-10)
