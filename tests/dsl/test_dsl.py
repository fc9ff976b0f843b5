"""The model-building DSL: declarations, operators, errors and parameter inits."""

from __future__ import annotations

import re

import numpy as np
import pytest

import scg
from scg.errors import GraphError
from scg.ir import Op

HERE = r"test_dsl\.py:\d+"


def graph_with_x(shape=(3,)):
    g = scg.Graph("g")
    with g:
        x = scg.input("x", shape=shape)
    return g, x


# -- declarations --------------------------------------------------------------

def test_declarations_build_named_nodes():
    g = scg.Graph("model")
    with g:
        x = scg.input("x", shape=(3,))
        y = scg.input("y", dtype="int64")
        w = scg.param("w", shape=3)
        h = scg.sample("h", scg.Bernoulli(logits=x * w))
        c = scg.cost("c", h.sum())
        r = scg.external_cost("r", depends_on=[h])
    assert (x.shape, x.dtype, x.name) == ((3,), "f64", "x")
    assert (y.shape, y.dtype) == ((), "i64")
    assert str(w.node.type) == "f64[3]"
    assert str(h.node.type) == "f64[B,3]"
    assert h.node.op is Op.BERNOULLI
    assert list(g.inputs) == ["x", "y"] and list(g.params) == ["w"]
    assert list(g.samples) == ["h"] and list(g.costs) == ["c", "r"]
    assert g.outputs == {"c": c.node, "r": r.node}
    assert r.node.attrs["depends_on"] == ("h",)
    assert re.fullmatch(HERE, h.node.origin)


@pytest.mark.parametrize("call", [
    lambda: scg.input("x", shape=(3,)),
    lambda: scg.param("w", shape=(3,)),
    lambda: scg.sample("h", scg.Bernoulli(logits=0.0)),
    lambda: scg.cost("c", 1.0),
    lambda: scg.external_cost("r"),
    lambda: scg.exp(1.0),
])
def test_declaring_outside_a_graph(call):
    with pytest.raises(scg.ScgError, match=r"inside a `with scg.Graph\(name\):` block"):
        call()


def test_sample_and_cost_need_the_graph_block():
    _g, x = graph_with_x()
    with pytest.raises(GraphError, match=r"scg.sample\(\.\.\.\) must be called inside"):
        scg.sample("h", scg.Bernoulli(logits=x))
    with pytest.raises(GraphError, match=r"scg.cost\(\.\.\.\) must be called inside"):
        scg.cost("c", x.sum())


@pytest.mark.parametrize("name", ["", None, 3])
def test_names_must_be_strings(name):
    with scg.Graph("g"), pytest.raises(GraphError, match="non-empty string name"):
        scg.input(name)


def test_graph_name_must_be_a_string():
    with pytest.raises(GraphError, match="non-empty string"):
        scg.Graph("")


def test_duplicate_names():
    with scg.Graph("g"):
        x = scg.input("x", shape=(2,))
        with pytest.raises(GraphError, match=r"the name 'x' is used twice in graph 'g' \(first by the input node"):
            scg.param("x", shape=(2,))
        h = scg.sample("h", scg.Bernoulli(logits=x))
        with pytest.raises(GraphError, match="'h' is used twice"):
            scg.cost("h", h.sum())
        with pytest.raises(GraphError, match="'h' is used twice"):
            scg.sample("h", scg.Bernoulli(logits=x))


@pytest.mark.parametrize("dtype", ["float16", "complex128", np.bool_, "str"])
def test_bad_dtype(dtype):
    with scg.Graph("g"), pytest.raises(GraphError, match=r"input 'x': unsupported dtype .*expected float64 or int64"):
        scg.input("x", dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "f64", np.float64, "int64", np.int64, "int"])
def test_dtype_spellings(dtype):
    with scg.Graph("g"):
        x = scg.input("x", dtype=dtype)
    assert x.dtype in ("f64", "i64")


@pytest.mark.parametrize("shape, why", [
    ((-1,), "positive"), ((3, 0), "positive"), ((2.5,), "tuple of ints"), ("ab", "tuple of ints"),
    (None, "tuple of ints"), ((True,), "tuple of ints"), (1.0, "tuple of ints"),
])
def test_bad_shape(shape, why):
    with scg.Graph("g"), pytest.raises(GraphError, match=rf"'x': shape .*{why}"):
        scg.input("x", shape=shape)
    with scg.Graph("g"), pytest.raises(GraphError, match=rf"'w': shape .*{why}"):
        scg.param("w", shape=shape)


@pytest.mark.parametrize("shape, expected", [(3, (3,)), (np.int64(3), (3,)), ([2, np.int32(4)], (2, 4)), ((), ())])
def test_shape_spellings(shape, expected):
    with scg.Graph("g"):
        x = scg.input("x", shape=shape)
    assert x.shape == expected


def test_sample_needs_a_distribution():
    with scg.Graph("g"), pytest.raises(GraphError, match=r"scg.sample\('h', \.\.\.\) expects a distribution"):
        scg.sample("h", 0.5)


def test_external_cost_depends_on_samples_only():
    with scg.Graph("g"):
        x = scg.input("x", shape=(2,))
        with pytest.raises(GraphError, match="external_cost 'r': depends_on must list values sampled"):
            scg.external_cost("r", depends_on=[x])
    g2 = scg.Graph("g2")
    with g2:
        h = scg.sample("h", scg.Bernoulli(logits=0.0))
    with scg.Graph("g3"), pytest.raises(GraphError, match="in graph 'g3'"):
        scg.external_cost("r", depends_on=[h])


def test_outputs_are_the_costs_after_the_block():
    g = scg.Graph("g")
    with g:
        x = scg.input("x")
        scg.cost("a", x)
        scg.cost("b", 2.0 * x)
    assert list(g.outputs) == ["a", "b"]
    assert str(g).splitlines()[-2] == "  return a, b"


# -- shape errors ---------------------------------------------------------------

def test_non_broadcasting_shapes_unnamed():
    with scg.Graph("g"):
        x = scg.input("x", shape=(3,))
        y = scg.input("y", shape=(4,))
        with pytest.raises(GraphError) as err:
            x + y
    msg = str(err.value)
    assert re.search(rf"an unnamed add node \(created at {HERE}\): add: per-row shapes \[3\] and \[4\]", msg), msg
    assert "operands: 'x' f64[B,3]; 'y' f64[B,4]" in msg


def test_non_broadcasting_shapes_named():
    with scg.Graph("g"):
        loc = scg.input("loc", shape=(3,))
        scale = scg.param("scale", shape=(4,))
        with pytest.raises(GraphError, match=rf"node 'z' \(created at {HERE}\): normal\(loc, scale\): per-row shapes"):
            scg.sample("z", scg.Normal(loc, scale))


def test_matmul_inner_dimension_mismatch():
    with scg.Graph("g"):
        x = scg.input("x", shape=(3,))
        W = scg.param("W", shape=(4, 2))
        with pytest.raises(GraphError) as err:
            x @ W
    msg = str(err.value)
    assert "matmul: inner dimensions differ: [3] @ [4, 2]" in msg
    assert "operands: 'x' f64[B,3]; 'W' f64[4,2]" in msg
    assert re.search(HERE, msg)


def test_matmul_rank():
    with scg.Graph("g"):
        x = scg.input("x", shape=())
        with pytest.raises(GraphError, match="rank 1 or 2"):
            x @ np.ones(3)


def test_cost_must_be_a_per_row_scalar():
    with scg.Graph("g"):
        x = scg.input("x", shape=(3,))
        with pytest.raises(GraphError) as err:
            scg.cost("c", x * 2.0)
    msg = str(err.value)
    assert re.search(rf"node 'c' \(created at {HERE}\): a cost must be a per-row scalar, got per-row shape \[3\]", msg)
    assert ".sum()" in msg


def test_categorical_needs_a_class_axis():
    with scg.Graph("g"):
        x = scg.input("x")
        with pytest.raises(GraphError, match="node 'a'.*last axis of classes"):
            scg.sample("a", scg.Categorical(logits=x))


def test_reduction_axis_out_of_range_names_the_value():
    with scg.Graph("g"):
        x = scg.input("x", shape=(3,))
        with pytest.raises(GraphError, match=r"sum of 'x' f64\[B,3\]: axis 2 out of range"):
            x.sum(axis=2)
        with pytest.raises(GraphError, match=r"mean of 'x'"):
            scg.mean(x, axis=-2)
        with pytest.raises(GraphError, match="softmax supports only the last per-row axis"):
            scg.softmax(scg.input("m", shape=(2, 3)), axis=0)


# -- graphs do not mix ----------------------------------------------------------

def test_combining_values_of_two_graphs():
    g1, x = graph_with_x()
    g2 = scg.Graph("g2")
    with g2:
        y = scg.input("y", shape=(3,))
    with pytest.raises(GraphError, match=r"different graphs: 'x' f64\[B,3\] of graph 'g', 'y' f64\[B,3\] of graph 'g2'"):
        x + y
    n1, n2 = len(g1), len(g2)
    with g2, pytest.raises(GraphError, match="'x' f64\\[B,3\\] belongs to graph 'g', but graph 'g2' is under construction"):
        scg.exp(x)
    assert (len(g1), len(g2)) == (n1, n2)  # nothing was added anywhere


def test_ir_graph_rejects_foreign_nodes():
    _g1, x = graph_with_x()
    g2 = scg.Graph("g2")
    with pytest.raises(GraphError, match="belongs to another graph"):
        g2.add(Op.EXP, [x.node])


# -- operators ----------------------------------------------------------------

def test_bool_raises():
    _g, x = graph_with_x()
    with pytest.raises(GraphError, match=r"'x' is a symbolic scg value.*scg.where"):
        bool(x)
    with pytest.raises(GraphError):
        if x > 0:
            pass


def test_numpy_operands():
    _g, x = graph_with_x()
    for v in (np.ones(3) + x, x + np.ones(3), np.float64(2.0) * x, np.int64(2) * x, np.ones((2, 3)) * x,
              np.arange(3.0) @ (x * 1.0), np.eye(3) @ x):
        assert isinstance(v, scg.Value), type(v)
    v = np.ones(3) + x
    assert v.node.op is Op.ADD
    const, inp = v.node.inputs
    assert const.op is Op.CONST and inp is x.node
    np.testing.assert_array_equal(const.attrs["value"], np.ones(3))
    assert str((np.ones((2, 3)) * x).node.type) == "f64[B,2,3]"
    assert str((np.eye(3) @ x).node.type) == "f64[B,3]"


def test_constants_are_frozen_copies():
    arr = np.ones(3)
    _g, x = graph_with_x()
    v = arr + x
    arr[0] = 7.0
    assert v.node.inputs[0].attrs["value"][0] == 1.0
    with pytest.raises(ValueError):
        v.node.inputs[0].attrs["value"][0] = 2.0


def test_constant_dtypes():
    _g, x = graph_with_x()
    assert (x + 1).node.inputs[1].dtype == "i64"
    assert (x + 1.0).node.inputs[1].dtype == "f64"
    assert (x + True).node.inputs[1].dtype == "f64"
    with pytest.raises(GraphError, match="expected numbers"):
        x + "a"


def test_comparisons_are_symbolic():
    g = scg.Graph("g")
    with g:
        a = scg.sample("a", scg.Categorical(logits=np.zeros(4)))
        y = scg.input("y", dtype="int64")
        eq = a == y
        ne = a != y
        gt, lt, ge, le = a > y, a < y, a >= y, a <= y
    assert eq.node.op is Op.EQUAL and eq.node.inputs == (a.node, y.node)
    assert ne.node.op is Op.SUB and ne.node.inputs[1].op is Op.EQUAL
    assert gt.node.op is Op.GREATER and gt.node.inputs == (a.node, y.node)
    assert lt.node.op is Op.GREATER and lt.node.inputs == (y.node, a.node)
    assert ge.node.inputs[1].inputs == (y.node, a.node)
    assert le.node.inputs[1].inputs == (a.node, y.node)
    assert {a: 1}[a] == 1  # still hashable by identity


def test_powers():
    _g, x = graph_with_x()
    assert (x ** 2).node.op is Op.SQUARE
    assert (x ** 0.5).node.op is Op.SQRT
    assert (x ** 1) is x
    for bad in (3, -1, x):
        with pytest.raises(GraphError, match="only the constant powers"):
            x ** bad


def test_math_functions_build_the_right_ops():
    with scg.Graph("g"):
        x = scg.input("x", shape=(2, 3))
        k = scg.input("k", shape=(2,), dtype="int64")
        cases = {
            Op.EXP: scg.exp(x), Op.LOG: scg.log(x), Op.SIGMOID: scg.sigmoid(x), Op.TANH: scg.tanh(x),
            Op.RELU: scg.relu(x), Op.LEAKY_RELU: scg.leaky_relu(x), Op.SOFTPLUS: scg.softplus(x), Op.LOG_SIGMOID: scg.log_sigmoid(x),
            Op.SQUARE: scg.square(x), Op.SQRT: scg.sqrt(x), Op.STOP_GRADIENT: scg.stop_gradient(x),
            Op.SOFTMAX: scg.softmax(x), Op.LOG_SOFTMAX: scg.log_softmax(x), Op.NEG: -x, Op.TRANSPOSE: x.T,
            Op.WHERE: scg.where(x > 0, x, 0.0), Op.TAKE: scg.take(x, k), Op.CAST_F: scg.to_float(k),
            Op.RESHAPE: x.reshape(3, 2),
        }
        shapes = {
            Op.LOGSUMEXP: (scg.logsumexp(x), (2,)), Op.SUM: (scg.sum(x, axis=0), (3,)),
            Op.MEAN: (x.mean(), ()), Op.ONE_HOT: (scg.one_hot(k, 4), (2, 4)), Op.MATMUL: (x @ x.T, (2, 2)),
        }
    for op, v in cases.items():
        assert v.node.op is op
    for op, (v, shape) in shapes.items():
        assert v.node.op is op and v.shape == shape
    assert (+x) is x
    assert cases[Op.TRANSPOSE].shape == (3, 2)


@pytest.mark.parametrize("depth", [0, -1, 2.5, True, "3", None])
def test_one_hot_bad_depth(depth):
    with scg.Graph("g"):
        k = scg.input("k", dtype="int64")
        with pytest.raises(GraphError, match=r"one_hot of 'k': depth must be a positive int"):
            scg.one_hot(k, depth)


def test_one_hot_depth_accepts_numpy_ints_and_needs_int_indices():
    with scg.Graph("g"):
        k = scg.input("k", dtype="int64")
        assert scg.one_hot(k, np.int64(3)).node.attrs["depth"] == 3
        with pytest.raises(GraphError, match="one_hot expects int64 class indices"):
            scg.one_hot(scg.input("f"), 3)


def test_value_repr_and_properties():
    g, x = graph_with_x()
    assert repr(x) == "<scg.Value 'x' f64[B,3] = input>"
    assert x.graph is g and x.name == "x"


# -- parameter initialisation ---------------------------------------------------

def params_graph(**inits):
    g = scg.Graph("p")
    with g:
        for name, (shape, init) in inits.items():
            scg.param(name, shape=shape, init=init)
    return g


def test_init_params_is_deterministic():
    g = params_graph(W=((30, 20), None), b=((20,), "normal"))
    p1, p2, p3 = g.init_params(seed=0), g.init_params(seed=0), g.init_params(seed=1)
    assert list(p1) == ["W", "b"]
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
        assert not np.array_equal(p1[k], p3[k])
        assert p1[k].dtype == np.float64 and p1[k].flags.c_contiguous


def test_default_inits():
    g = params_graph(W=((400, 300), None), b=((300,), None), s=((), None))
    p = g.init_params(seed=3)
    np.testing.assert_array_equal(p["b"], np.zeros(300))
    assert p["s"].shape == () and p["s"] == 0.0
    assert abs(p["W"].mean()) < 0.01
    assert p["W"].std() == pytest.approx(1 / np.sqrt(400), rel=0.03)  # N(0, 1/fan_in)


def test_every_init_form():
    seen_shape = []

    def custom(rng, shape):
        seen_shape.append(shape)
        return rng.uniform(5.0, 6.0, size=shape)

    g = params_graph(
        z=((2, 2), "zeros"), o=((3,), "ones"), n=((50, 40), "normal"), gl=((50, 40), "glorot"),
        f=((2,), 0.5), i=((2,), 3), ni=((2,), np.int64(2)), nf=((2,), np.float32(0.25)),
        a=((2, 2), np.array([[1, 2], [3, 4]])), li=((2,), [7.0, 8.0]), c=((4,), custom),
    )
    p = g.init_params(seed=0)
    np.testing.assert_array_equal(p["z"], np.zeros((2, 2)))
    np.testing.assert_array_equal(p["o"], np.ones(3))
    assert p["n"].std() == pytest.approx(1 / np.sqrt(50), rel=0.1)
    limit = np.sqrt(6 / 90)
    assert np.all(np.abs(p["gl"]) <= limit) and p["gl"].max() > 0.8 * limit
    np.testing.assert_array_equal(p["f"], [0.5, 0.5])
    np.testing.assert_array_equal(p["i"], [3.0, 3.0])
    np.testing.assert_array_equal(p["ni"], [2.0, 2.0])
    np.testing.assert_array_equal(p["nf"], [0.25, 0.25])
    np.testing.assert_array_equal(p["a"], [[1.0, 2.0], [3.0, 4.0]])
    assert p["a"].dtype == np.float64
    np.testing.assert_array_equal(p["li"], [7.0, 8.0])
    assert seen_shape == [(4,)] and np.all((p["c"] >= 5) & (p["c"] < 6))


def test_init_array_is_copied():
    arr = np.zeros(2)
    g = params_graph(a=((2,), arr))
    p = g.init_params()
    p["a"][0] = 1.0
    assert arr[0] == 0.0 and g.init_params()["a"][0] == 0.0


def test_bad_init_string():
    with scg.Graph("g"), pytest.raises(GraphError, match=r"param 'w': unknown init 'xavier'; expected one of zeros"):
        scg.param("w", shape=(2,), init="xavier")


def test_wrong_shape_init_array():
    with scg.Graph("g"), pytest.raises(GraphError, match=r"param 'w': init array has shape \[3\], expected \[2\]"):
        scg.param("w", shape=(2,), init=np.zeros(3))


def test_non_numeric_init():
    with scg.Graph("g"), pytest.raises(GraphError, match=r"param 'w': init .* is not a number"):
        scg.param("w", shape=(2,), init=object())


def test_callable_init_with_the_wrong_shape():
    g = params_graph(w=((2,), lambda rng, shape: np.zeros(5)))
    with pytest.raises(GraphError, match=r"param 'w': init produced shape \[5\], expected \[2\]"):
        g.init_params()


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_bad_seed(seed):
    g = params_graph(w=((2,), None))
    with pytest.raises(GraphError, match="seed must be a non-negative int"):
        g.init_params(seed=seed)


def test_param_values_do_not_depend_on_other_params():
    alone = params_graph(W=((5, 4), None)).init_params(seed=7)
    crowded = params_graph(A=((9, 9), "normal"), W=((5, 4), None), B=((3,), "glorot")).init_params(seed=7)
    np.testing.assert_array_equal(alone["W"], crowded["W"])
    other_name = params_graph(V=((5, 4), None)).init_params(seed=7)
    assert not np.array_equal(alone["W"], other_name["V"])


def test_params_without_inputs_still_cost_per_row():
    g = scg.Graph("coin")
    with g:
        phi = scg.param("phi", shape=())
        b = scg.sample("b", scg.Bernoulli(logits=phi))
        c = scg.cost("c", (b - 0.45) ** 2)
    assert str(b.node.type) == "f64[B]"
    assert str(c.node.type) == "f64[B]"
