"""A computed label compared with a categorical sample is range-checked on the compiled backend too.

``equal(a, y + 1)`` with ``y + 1`` out of range used to pass on numba (the label was fused
into a kernel, so the call-time check never saw it) while numpy refused it.
"""

import numpy as np
import pytest

import scg


def test_computed_label_out_of_range_is_refused_word_for_word():
    g = scg.Graph("computed_label")
    with g:
        x = scg.input("x", shape=(2,))
        y = scg.input("y", shape=(), dtype="int64")
        a = scg.sample("a", scg.Categorical(logits=x @ scg.param("W", shape=(2, 3))))
        scg.cost("r", -scg.equal(a, y + 1))
    params, inputs = g.init_params(0), {"x": np.ones((3, 2)), "y": np.array([0, 1, 2])}
    messages = []
    for backend in ("numpy", "numba"):
        with pytest.raises(scg.ScgError, match=r"label `y \+ 1` is 3 at row 2") as err:
            scg.compile(g, "reinforce", backend=backend)(params, inputs, seed=0)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    ok = {"x": np.ones((3, 2)), "y": np.array([0, 1, 1])}
    np.testing.assert_array_equal(scg.compile(g, "reinforce", backend="numba")(params, ok, seed=0).samples["a"],
                                  scg.compile(g, "reinforce", backend="numpy")(params, ok, seed=0).samples["a"])
