"""libnbd's Python bindings for plugins, which Debian ships for the system Python only.

Plugins that read disks over NBD (qcow2 images through qemu-nbd, VDDK through
nbdkit, libvirt's backup exports) call :func:`load_nbd` rather than ``import nbd``.

``python3-libnbd`` installs ``nbd.py`` and its extension ``libnbdmod`` into
/usr/lib/python3/dist-packages, which a virtualenv does not see. Putting that whole
folder on ``sys.path`` would let every Debian Python package shadow the
appliance's own dependencies, so only these two modules are loaded, by file,
and only when the extension was built for the running Python's ABI.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import PluginError

SYSTEM_DIRS = (Path("/usr/lib/python3/dist-packages"), Path("/usr/local/lib/python3/dist-packages"))


def _load_file(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _from_system(dirs: tuple[Path, ...]) -> ModuleType | None:
    for folder in dirs:
        ext = next(
            (
                folder / f"libnbdmod{suffix}"
                for suffix in importlib.machinery.EXTENSION_SUFFIXES
                if (folder / f"libnbdmod{suffix}").is_file()
            ),
            None,
        )
        if ext is None or not (folder / "nbd.py").is_file():
            continue
        # nbd.py does `import libnbdmod`: the extension must be importable by that name.
        if "libnbdmod" not in sys.modules:
            sys.modules["libnbdmod"] = _load_file("libnbdmod", ext)
        return _load_file("nbd", folder / "nbd.py")
    return None


def load_nbd(
    purpose: str = "reading disks over NBD", packages: str = "python3-libnbd"
) -> ModuleType:
    """libnbd's ``nbd`` module, or a :class:`PluginError` saying how to install it.

    ``purpose`` and ``packages`` complete the error message: "PURPOSE needs
    libnbd's Python bindings ...: install the Debian packages PACKAGES".
    """
    return _load(SYSTEM_DIRS, purpose, packages)


@functools.cache
def _load(dirs: tuple[Path, ...], purpose: str, packages: str) -> ModuleType:
    # A normal import first (bindings installed for this Python); the PyPI project
    # named "nbd" is an unrelated notebook tool, hence the NBD class check.
    if importlib.util.find_spec("nbd") is not None:
        try:
            module = importlib.import_module("nbd")
        except ImportError:
            pass
        else:
            if hasattr(module, "NBD"):
                return module
    try:
        module = _from_system(dirs)
    except ImportError as exc:
        module = None
        reason = f" ({exc})"
    else:
        reason = ""
    if module is None:
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise PluginError(
            f"{purpose} needs libnbd's Python bindings for Python "
            f"{version}: install the Debian packages {packages}{reason}"
        )
    return module


#: Largest single NBD read: QEMU's and nbdkit's servers refuse requests above 32 MiB.
MAX_READ = 32 * 1024 * 1024


def pread_all(
    handle: Any, offset: int, length: int, on_error: Callable[[int, Exception], Exception]
) -> bytes:
    """``length`` bytes at ``offset`` from an open libnbd handle, in requests the
    server accepts. ``on_error(position, exc)`` makes the exception to raise when a
    request fails (each plugin names its own disk and transport)."""
    parts: list[bytes] = []
    done = 0
    while done < length:
        count = min(MAX_READ, length - done)
        try:
            parts.append(bytes(handle.pread(count, offset + done)))
        except Exception as exc:  # libnbd raises nbd.Error; the caller words it
            raise on_error(offset + done, exc) from None
        done += count
    return parts[0] if len(parts) == 1 else b"".join(parts)
