"""Sweeps: run a function once per configuration of a grid on a Dask cluster.

``scg.sweep(fn, grid, ...)`` (see :func:`scg.sweeps.runner.sweep`) and the
``scg sweep`` / ``scg report`` commands (:mod:`scg.sweeps.cli`). Dask
(``distributed``) is imported only when a sweep starts, so ``import scg``
stays fast.

Files: ``grid`` (expanding and parsing grids), ``store`` (the streamed CSV,
curves and resume), ``shipping`` (sending FILE.py to workers), ``tasks``
(what runs in a worker), ``runner`` (cluster, submission, collection),
``report`` (mean ± std tables and learning-curve plots), ``cli``, ``plugin``
(the Dask worker plugin that writes FILE.py on each worker).
"""

from scg.sweeps.errors import SweepError
from scg.sweeps.runner import sweep

__all__ = ["SweepError", "sweep"]
