"""Sending the user's function to the workers: ``FILE.py:function`` files or a pickled callable.

``scg sweep FILE.py:function`` must not assume the workers share the client's
filesystem. The client imports FILE.py once (under a private module name, so
its ``if __name__ == "__main__":`` block does not run), notes the modules it
imported from FILE.py's own folder (e.g. a helper ``_common.py``), and sends
those files' bytes to every worker with a Dask worker plugin. A worker that
joins later, or restarts after a crash, receives them too. The files land in a
folder named after their SHA-256, so a changed FILE.py is a new bundle, never a
stale import.

A plain callable passed to ``scg.sweep`` is pickled by value with cloudpickle
when its module is a user file (not an installed package), so workers need
only scg and its dependencies installed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scg.sweeps.errors import SweepError


@dataclass
class Bundle:
    """Files to send to the workers and how to find the function there."""

    digest: str
    module: str  # private module name of FILE.py (also its file name in the bundle)
    function: str
    files: dict[str, bytes] = field(default_factory=dict)  # file name -> content
    siblings: list[str] = field(default_factory=list)  # module names of the helper files


def split_spec(spec: str) -> tuple[Path, str]:
    """``"path/FILE.py:function"`` -> (path, function); a clear error for anything else."""
    path, sep, name = str(spec).rpartition(":")
    if not sep or not path.endswith(".py") or not name:
        raise SweepError(f"expected FILE.py:function, got {spec!r} (e.g. examples/sweep_sbn.py:run)")
    if not name.isidentifier():
        raise SweepError(f"{spec!r}: {name!r} is not a Python function name")
    file = Path(path)
    if not file.is_file():
        raise SweepError(f"no such file: {path!r} (in {spec!r})")
    return file, name


def load_function(spec: str) -> tuple[Any, Bundle]:
    """Import FILE.py in the client and return (the function, the bundle of files to ship)."""
    file, name = split_spec(spec)
    source = file.read_bytes()
    folder = file.resolve().parent
    digest = hashlib.sha256(source).hexdigest()[:16]
    module_name = f"_scg_sweep_{_safe(file.stem)}_{digest}"
    local = {p.stem for p in folder.glob("*.py")}
    for mod in local & set(sys.modules):  # a same-named module from another folder (an earlier sweep) must not be reused
        if _folder_of(sys.modules[mod]) != folder:
            del sys.modules[mod]
    sys.path.insert(0, str(folder))
    try:
        spec_ = importlib.util.spec_from_file_location(module_name, file)
        module = importlib.util.module_from_spec(spec_)
        sys.modules[module_name] = module
        spec_.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(module_name, None)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise SweepError(f"importing {file} failed: {type(e).__name__}: {_one_line(e)}") from None
    finally:
        sys.path.remove(str(folder))
    fn = getattr(module, name, None)
    if fn is None:
        funcs = sorted(k for k, v in vars(module).items() if callable(v) and getattr(v, "__module__", None)
                       == module_name and not k.startswith("_"))
        raise SweepError(f"{file} defines no function {name!r} (functions there: {', '.join(funcs) or 'none'})")
    if not callable(fn):
        raise SweepError(f"{file}:{name} is a {type(fn).__name__}, not a function")
    files = {f"{module_name}.py": source}
    siblings = []
    for mod in sorted(local & set(sys.modules)):  # the helper modules FILE.py imported from its folder
        if _folder_of(sys.modules[mod]) == folder and Path(sys.modules[mod].__file__).suffix == ".py":
            files[Path(sys.modules[mod].__file__).name] = Path(sys.modules[mod].__file__).read_bytes()
            siblings.append(mod)
    whole = hashlib.sha256(b"".join(k.encode() + b"\0" + v for k, v in sorted(files.items()))).hexdigest()[:16]
    return fn, Bundle(whole, module_name, name, files, siblings)


def _folder_of(module) -> Path | None:
    path = getattr(module, "__file__", None)
    return Path(path).resolve().parent if path else None


def _safe(stem: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in stem)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or "(no message)"


def bundle_dir(local_directory: Path, digest: str) -> Path:
    return Path(local_directory) / f"scg-sweep-{digest}"


def write_bundle(local_directory: Path, bundle: Bundle) -> Path:
    folder = bundle_dir(local_directory, bundle.digest)
    folder.mkdir(parents=True, exist_ok=True)
    for fname, data in bundle.files.items():
        target = folder / fname
        if target.is_file() and target.read_bytes() == data:
            continue
        tmp = folder / f".{fname}.{os.getpid()}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return folder


_LOADED: dict[tuple[str, str], Any] = {}


def resolve(bundle: Bundle, local_directory: Path) -> Any:
    """In a worker: import the bundle's FILE.py (once per process) and return the function."""
    key = (bundle.digest, bundle.function)
    if key in _LOADED:
        return _LOADED[key]
    folder = bundle_dir(local_directory, bundle.digest)
    if not (folder / f"{bundle.module}.py").is_file():
        if not bundle.files:
            raise RuntimeError(f"the sweep's files ({bundle.module}.py) never reached this worker's {local_directory}")
        folder = write_bundle(local_directory, bundle)
    for mod in bundle.siblings:  # a helper of the same name from another bundle must not be reused
        old = sys.modules.get(mod)
        if old is not None and Path(getattr(old, "__file__", "") or "").resolve().parent != folder.resolve():
            del sys.modules[mod]
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    importlib.invalidate_caches()  # the folder's files may be newer than the import system's directory listing
    module = sys.modules.get(bundle.module)
    if module is None:
        spec = importlib.util.spec_from_file_location(bundle.module, folder / f"{bundle.module}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[bundle.module] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[bundle.module]
            raise
    _LOADED[key] = fn = getattr(module, bundle.function)
    return fn


def installed(module_name: str) -> bool:
    """True for modules of installed packages and the standard library (pickled by reference)."""
    mod = sys.modules.get(module_name.partition(".")[0])
    path = getattr(mod, "__file__", None)
    if mod is None or path is None:
        return mod is not None  # built-in modules
    path = str(Path(path).resolve())
    roots = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    if module_name.partition(".")[0] == "scg":
        return True
    return any(path.startswith(str(Path(r).resolve()) + os.sep) for r in roots)


def pickle_function(fn: Any) -> bytes:
    """cloudpickle ``fn``; by value when it lives in a user file, so workers need not have that file."""
    import cloudpickle

    module = getattr(fn, "__module__", None)
    by_value = module is not None and module != "__main__" and module in sys.modules and not installed(module)
    if by_value:
        cloudpickle.register_pickle_by_value(sys.modules[module])
    try:
        return cloudpickle.dumps(fn)
    except Exception as e:  # noqa: BLE001 (whatever the pickler raises, the user needs one line)
        raise SweepError(f"cannot send {getattr(fn, '__qualname__', fn)!r} to the workers: {type(e).__name__}: "
                         f"{_one_line(e)} (define it at module level in a .py file, or pass 'FILE.py:function')"
                         ) from None
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(sys.modules[module])
