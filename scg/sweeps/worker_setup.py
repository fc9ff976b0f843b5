"""Dask worker preload of the embedded LocalCluster: Ctrl-C belongs to the client.

A terminal sends Ctrl-C to the whole process group, workers included. The
client keeps what finished, cancels the rest and shuts the cluster down; the
workers ignore the signal instead of each printing a KeyboardInterrupt
traceback.
"""

import signal
import threading


def dask_setup(worker) -> None:  # Dask calls it with the worker
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
