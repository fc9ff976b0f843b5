"""The Dask worker plugin that writes a sweep's files on every worker (imports distributed: load lazily)."""

from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from scg.sweeps.shipping import Bundle, write_bundle


class ShipFiles(WorkerPlugin):
    """Dask worker plugin: write a bundle's files into the worker's local directory."""

    name = "scg-sweep-files"

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.name = f"scg-sweep-{bundle.digest}"

    def setup(self, worker):
        write_bundle(Path(worker.local_directory), self.bundle)
