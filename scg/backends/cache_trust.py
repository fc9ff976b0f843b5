"""Signed Numba cache files: nothing Numba unpickles from scg's kernel cache runs unless scg verified it.

Numba's on-disk cache (``__pycache__/<module>.<function>-<line>.pyXY.nbi`` index files and ``.nbc``
data files) is pickle, and unpickling a crafted file runs arbitrary code. ``kernel_cache`` verifies the
generated ``.py`` sources by their content address, but Numba's compiled objects cannot be named by a
digest before they exist, so for every module scg generates (``kernel_cache.load`` registers its name
with :func:`register`) Numba's cache file I/O goes through :class:`SignedCacheFile`:

* **write**: the bytes Numba would write are prefixed by ``MAGIC`` and an HMAC-SHA256 over
  ``(file name, bytes)`` under a per-user secret key, and written atomically (temp file + replace);
* **read**: the file is read once; the bytes are unpickled only if the magic and the HMAC check, and
  those same bytes are unpickled (not a second read, so a file swapped after the check never runs).
  A file that fails (tampered, truncated, written by stock Numba or signed with another key) is
  deleted (an :class:`~scg.errors.ScgWarning`, once per directory and process; every such file is
  listed in ``rejected``); Numba then compiles afresh and writes a signed file.

The key (never stored in the cache directory, so write access to a shared cache is not enough to
forge an entry): ``$SCG_CACHE_KEY`` if set (any string; give every worker the same one to share a
cache between users or machines), else 32 random bytes in ``$XDG_CONFIG_HOME/scg/cache-key``
(``~/.config/scg/cache-key``), created with mode 0600 on first use. A key file that another user
owns, or that group/others may read or write, is refused with a warning; the process then signs
with a private random key, so Numba's objects are not reused across processes (still never
trusted unverified). Functions of every other module keep Numba's own behaviour.

The HMAC construction is RFC 2104 (``hmac`` module); binding the file name stops a valid file from
being replayed under another function's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import secrets
import tempfile
import threading
import warnings
from pathlib import Path

from numba.core import caching  # Cache.__init__ looks IndexDataCacheFile up here at call time

from scg.errors import ScgWarning

MAGIC = b"SCG-NUMBA-CACHE-1\n"
_MAC_LEN = 32
_NUMBA_CLASS = caching.IndexDataCacheFile  # Numba's own implementation (restored by ``uninstall``)

_lock = threading.Lock()
_modules: set[str] = set()          # names of generated modules whose cache files must be signed
_key: tuple[bytes, bool] | None = None   # (key, persistent)
_warned: set[str] = set()
rejected: list[str] = []            # cache file names refused in this process (evidence for tests and users)


def register(module_name: str) -> None:
    """Route Numba's cache files of functions defined in ``module_name`` through signing and checking."""
    with _lock:
        _modules.add(module_name)


def key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "scg" / "cache-key"


def _warn_once(tag: str, message: str) -> None:
    with _lock:
        if tag in _warned:
            return
        _warned.add(tag)
    warnings.warn(message, ScgWarning, stacklevel=3)


def _read_or_create_key(path: Path) -> bytes:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        # write a complete key under a temp name, then link it in: readers never see a partial key
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".cache-key.")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # a concurrent process won: use its key
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    st = os.stat(path)
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise PermissionError(f"{path} belongs to another user (uid {st.st_uid})")
    if os.name == "posix" and st.st_mode & 0o077:
        raise PermissionError(f"{path} is accessible to other users (mode {st.st_mode & 0o777:o}); "
                              "chmod 600 it")
    key = path.read_bytes()
    if len(key) < 16:
        raise ValueError(f"{path} holds {len(key)} bytes, expected 32")
    return key


def signing_key() -> tuple[bytes, bool]:
    """``(key, persistent)``: the per-user key (see module docstring); ``persistent`` is False for the
    process-private fallback key."""
    global _key
    if _key is not None:
        return _key
    env = os.environ.get("SCG_CACHE_KEY")
    if env:
        key = (hashlib.sha256(b"scg cache key\0" + env.encode("utf-8", "surrogatepass")).digest(), True)
    else:
        path = key_path()
        try:
            key = (_read_or_create_key(path), True)
        except (OSError, ValueError) as e:
            _warn_once("key", f"kernel cache: cannot use the signing key {path} ({e}); compiled kernels are "
                              "not reused across processes (set SCG_CACHE_KEY, or fix the file)")
            key = (secrets.token_bytes(32), False)
    with _lock:
        if _key is None:
            _key = key
        return _key


def _mac(name: str, payload: bytes) -> bytes:
    key, _ = signing_key()
    return hmac.new(key, name.encode("utf-8") + b"\0" + payload, hashlib.sha256).digest()


def sign(name: str, payload: bytes) -> bytes:
    """The bytes stored for cache file ``name`` holding ``payload``."""
    return MAGIC + _mac(name, payload) + payload


def verified_payload(path: str | os.PathLike) -> bytes | None:
    """The payload of the signed file at ``path``, or None if it is missing or fails the check
    (a failing file is deleted, with a warning)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    head = len(MAGIC) + _MAC_LEN
    payload = blob[head:]
    if blob[:len(MAGIC)] == MAGIC and len(blob) > head and \
            hmac.compare_digest(blob[len(MAGIC):head], _mac(path.name, payload)):
        return payload
    with _lock:
        rejected.append(path.name)
    with contextlib.suppress(OSError):
        path.unlink()
    if signing_key()[1]:  # once per directory: an old unsigned cache would otherwise warn once per file
        _warn_once(f"dir:{path.parent}", f"kernel cache: {path.name} in {path.parent} failed its signature check "
                   "(tampered, truncated, written by an older scg or with another key); it was not loaded and is "
                   "being rebuilt (this and later such files: scg.backends.kernel_cache.STATS.untrusted)")
    return None


def _module_of(filename_base: str) -> str:
    # Numba's base is "<module>.<qualname>-<line>.pyXY", or "<prefix>-<module>...." for library caches
    return filename_base.split(".", 1)[0].rsplit("-", 1)[-1]


class SignedCacheFile(_NUMBA_CLASS):
    """Numba's ``IndexDataCacheFile`` with signed writes and verify-then-unpickle reads for scg's modules."""

    def __init__(self, cache_path, filename_base, source_stamp):
        super().__init__(cache_path, filename_base, source_stamp)
        with _lock:
            self._scg_signed = _module_of(filename_base) in _modules

    def _load_index(self):
        if not self._scg_signed:
            return super()._load_index()
        payload = verified_payload(self._index_path)
        if payload is None:
            return {}
        stream = io.BytesIO(payload)
        if pickle.load(stream) != self._version:  # signed by us, but for another Numba version
            return {}
        stamp, overloads = pickle.loads(stream.read())
        return overloads if stamp == self._source_stamp else {}

    def _load_data(self, name):
        if not self._scg_signed:
            return super()._load_data(name)
        payload = verified_payload(self._data_path(name))
        if payload is None:
            raise OSError(f"cache file {name} is missing or failed its signature check")  # Numba recompiles
        return pickle.loads(payload)

    @contextlib.contextmanager
    def _open_for_write(self, filepath):
        if not self._scg_signed:
            with super()._open_for_write(filepath) as f:
                yield f
            return
        buf = io.BytesIO()
        yield buf
        path = Path(filepath)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(sign(path.name, buf.getvalue()))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def install() -> None:
    """Make Numba build its cache files with :class:`SignedCacheFile` (idempotent)."""
    caching.IndexDataCacheFile = SignedCacheFile


def uninstall() -> None:
    """Restore Numba's unsigned cache files (tests use it to show the attack the signing stops)."""
    caching.IndexDataCacheFile = _NUMBA_CLASS


install()
