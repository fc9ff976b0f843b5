"""Errors of the sweep layer."""

from scg.errors import ScgError


class SweepError(ScgError):
    """A sweep cannot start or continue: bad grid, bad function spec, unreachable scheduler, bad results file.

    The command line prints it as one line and exits with status 2.
    """

    exit_code = 2
