"""Content-addressed on-disk cache of generated kernel modules.

Numba's ``cache=True`` needs a function defined in a real file of a real module
(docs/design.md: ``exec`` of a string cannot be cached), so every generated module
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
* Numba's own cache files for these modules (pickles) are signed at write time
  and verified before Numba unpickles them (``cache_trust``); a file failing the
  check is logged in ``STATS.untrusted``, deleted and rebuilt, never loaded.
* A cache dir that cannot be used (``$SCG_CACHE_DIR`` is a file, or a directory
  scg cannot write) is not an error: scg warns (``ScgWarning``) and compiles into
  a private temporary directory, removed at exit (nothing is reused across runs).
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from scg.backends import cache_trust
from scg.errors import BackendError, ScgWarning


@dataclass
class CacheStats:
    """What this process did with the cache (evidence for tests and ``scg`` users)."""

    hits: list[str] = field(default_factory=list)      # module names found intact on disk
    written: list[str] = field(default_factory=list)   # module names (re)written
    rebuilt: list[str] = field(default_factory=list)   # module names whose file failed the hash check
    # Numba cache files (index/data pickles) that failed their signature check: never unpickled
    untrusted: list[str] = field(default_factory=lambda: cache_trust.rejected)


STATS = CacheStats()
_private: Path | None = None
_private_lock = threading.Lock()


def configured_dir() -> Path:
    """Where the cache should live: ``$SCG_CACHE_DIR``, else the per-user default."""
    env = os.environ.get("SCG_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "scg" / "kernels"


def private_dir(reason: str) -> Path:
    """A process-private directory (mode 0700, removed at exit) used when the cache dir is unusable."""
    global _private
    with _private_lock:
        first = _private is None
        if first:
            try:
                _private = Path(tempfile.mkdtemp(prefix="scg-kernels-"))
            except OSError as e:
                raise BackendError(f"kernel cache: {reason}, and no temporary directory could be made "
                                   f"either ({e}); set SCG_CACHE_DIR to a writable directory") from e
            atexit.register(shutil.rmtree, _private, True)
    if first:
        warnings.warn(f"kernel cache: {reason}; compiling without the on-disk cache (kernels are not reused "
                      "by later runs; set SCG_CACHE_DIR to a writable directory)", ScgWarning, stacklevel=4)
    return _private


def cache_dir() -> Path:
    """The kernel cache directory (created on demand); see the module docstring."""
    path = configured_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not path.is_dir():
            raise NotADirectoryError(f"{path} is not a directory")
    except OSError as e:
        return private_dir(f"cache dir {str(path)!r} is unusable ({type(e).__name__}: {e.strerror or e})")
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


def _store(path: Path, name: str, data: bytes) -> None:
    """Make ``path`` hold exactly ``data`` (a hit if it already does), logging what happened in STATS."""
    try:
        on_disk = path.read_bytes()
    except FileNotFoundError:
        on_disk = None
    if on_disk == data:
        STATS.hits.append(name)
    else:
        if on_disk is not None:
            STATS.rebuilt.append(name)
        atomic_write(path, data)
        STATS.written.append(name)
    if not _verified(path, data):  # lost a race with a writer of different bytes: rewrite ours
        atomic_write(path, data)


def load(prefix: str, source: str) -> ModuleType:
    """Import ``source`` as the module ``<prefix>_<digest>`` from the cache dir (writing it if needed)."""
    name = module_name(prefix, source)
    if name in sys.modules:
        return sys.modules[name]
    data = source.encode("utf-8")
    path = cache_dir() / f"{name}.py"
    try:
        _store(path, name, data)
    except OSError as e:  # e.g. a read-only cache dir: compile from a private copy instead
        path = private_dir(f"cannot write to the cache dir {str(path.parent)!r} ({type(e).__name__}: "
                           f"{e.strerror or e})") / f"{name}.py"
        _store(path, name, data)
    cache_trust.register(name)  # before exec: eager @njit signatures compile (and hit Numba's cache) at import
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
