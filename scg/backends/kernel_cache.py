"""Content-addressed on-disk cache of generated kernel modules.

Numba's ``cache=True`` needs a function defined in a real file of a real module
(TOOLCHAIN.md: ``exec`` of a string cannot be cached), so every generated module
is written to ``<cache dir>/<prefix>_<sha256>.py`` and imported from there.

* Cache dir: ``$SCG_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/scg/kernels``, else
  ``~/.cache/scg/kernels`` (per user). Numba keeps its compiled objects next to
  the sources, in ``<cache dir>/__pycache__``.
* Writes are atomic (a temp file in the same directory, then ``os.replace``), so
  a concurrent reader sees either no file or a complete one.
* A file is trusted only if the SHA-256 of its bytes equals the digest in its
  name; the module is then executed from those verified bytes (not re-read), so
  a file changed after the check is never run. A mismatch (corruption,
  tampering) is logged in ``STATS.rebuilt`` and the entry is rewritten.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType


@dataclass
class CacheStats:
    """What this process did with the cache (evidence for tests and ``scg`` users)."""

    hits: list[str] = field(default_factory=list)      # module names found intact on disk
    written: list[str] = field(default_factory=list)   # module names (re)written
    rebuilt: list[str] = field(default_factory=list)   # module names whose file failed the hash check


STATS = CacheStats()


def cache_dir() -> Path:
    """The kernel cache directory (created on demand); see the module docstring."""
    env = os.environ.get("SCG_CACHE_DIR")
    if env:
        path = Path(env).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        path = Path(base) / "scg" / "kernels"
    path.mkdir(parents=True, exist_ok=True)
    return path


def digest(source: str) -> str:
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def module_name(prefix: str, source: str) -> str:
    return f"{prefix}_{digest(source)[:32]}"


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _verified(path: Path, data: bytes) -> bool:
    try:
        return path.read_bytes() == data
    except OSError:
        return False


def load(prefix: str, source: str) -> ModuleType:
    """Import ``source`` as the module ``<prefix>_<digest>`` from the cache dir (writing it if needed)."""
    name = module_name(prefix, source)
    if name in sys.modules:
        return sys.modules[name]
    data = source.encode("utf-8")
    path = cache_dir() / f"{name}.py"
    want = digest(source)
    if path.exists():
        on_disk = path.read_bytes()
        if hashlib.sha256(on_disk).hexdigest() == want:
            STATS.hits.append(name)
        else:
            STATS.rebuilt.append(name)
            atomic_write(path, data)
            STATS.written.append(name)
    else:
        atomic_write(path, data)
        STATS.written.append(name)
    if not _verified(path, data):  # lost a race with a writer of different bytes: rewrite ours
        atomic_write(path, data)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        # run the verified text, not whatever the file holds by now; the filename is for Numba's cache
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 -- generated, hash-checked
    except BaseException:
        del sys.modules[name]
        raise
    return module
