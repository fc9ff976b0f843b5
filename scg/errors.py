"""Exceptions raised by scg. Every error derives from :class:`ScgError`.

This module imports nothing from scg so that every layer (ir, dsl, passes,
backends) can raise these without creating an import cycle.
"""


class ScgError(Exception):
    """Base class of every error scg raises on purpose."""


class GraphError(ScgError):
    """A graph is malformed: bad shapes, dtypes, names or structure."""


class InputError(ScgError):
    """Arrays passed at call time do not match what the graph declares."""


class EstimatorError(ScgError):
    """An estimator cannot be derived for a graph (or a node of it)."""


class BackendError(ScgError):
    """A backend cannot run a graph (missing op implementation, no device)."""


class ExactError(ScgError):
    """`scg.exact` cannot enumerate a graph (continuous nodes, too many states)."""


class ScgWarning(UserWarning):
    """Warnings about graphs that are legal but probably not what was meant."""
