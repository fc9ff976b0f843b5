"""Tensor types of IR values: dtype, per-row shape, and whether a batch axis exists.

Every value either carries an implicit leading batch axis (inputs, samples and
everything computed from them: ``batched=True``) or does not (parameters,
constants, parameter gradients). Shapes are always the *per-row* shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from scg.errors import GraphError

F64 = "f64"
I64 = "i64"
DTYPES = (F64, I64)

_DTYPE_ALIASES = {
    "f64": F64, "float64": F64, "float": F64, "f32": F64, "float32": F64,
    "i64": I64, "int64": I64, "int": I64, "int32": I64,
}


def canonical_dtype(dtype: object) -> str:
    """Map user spellings (``"float64"``, ``np.int64``, ...) to ``"f64"``/``"i64"``."""
    key = getattr(dtype, "__name__", None) or str(dtype)
    try:
        return _DTYPE_ALIASES[key]
    except KeyError:
        raise GraphError(f"unsupported dtype {dtype!r}: expected float64 or int64") from None


@dataclass(frozen=True)
class TensorType:
    dtype: str
    shape: tuple[int, ...]
    batched: bool

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def __str__(self) -> str:
        dims = (["B"] if self.batched else []) + [str(d) for d in self.shape]
        return f"{self.dtype}[{','.join(dims)}]"


def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...] | None:
    """NumPy broadcasting of per-row shapes; None when they do not broadcast."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(rank):
        size = 1
        for s in shapes:
            d = s[axis - rank + len(s)] if axis - rank + len(s) >= 0 else 1
            if d == 1:
                continue
            if size not in (1, d):
                return None
            size = d
        out.append(size)
    return tuple(out)


def normalize_axes(axes: object, rank: int) -> tuple[int, ...]:
    """Per-row axes as sorted non-negative ints; None means all per-row axes."""
    if axes is None:
        return tuple(range(rank))
    if isinstance(axes, int):
        axes = (axes,)
    out = []
    for a in axes:
        if not -rank <= a < rank:
            raise GraphError(f"axis {a} out of range for a per-row rank of {rank}")
        out.append(a % rank)
    return tuple(sorted(set(out)))
