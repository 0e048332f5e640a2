"""Durable file operations the pool is built from: full writes, fsync, atomic replace.

A rename is only durable once the folder holding it is fsynced; every publish
step in this plugin goes through :func:`fsync_dir` for that reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from tapir.appliance.plugin_api import MediaFull

#: Errors that mean "no room": a full file system or an exhausted quota.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

#: Prefix of temporary files next to their final name; never read as data.
TMP_PREFIX = ".tmp-"


def is_no_space(exc: BaseException) -> bool:
    """True when ``exc`` says the file system or quota is full."""
    return isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def media_full_on_no_space(pool: Path, what: str) -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into :class:`MediaFull` for the operator."""
    try:
        yield
    except OSError as exc:
        if not is_no_space(exc):
            raise
        try:
            free = f"{free_bytes(pool)} bytes free"
        except OSError:
            free = "free space unknown"
        reason = "quota exceeded" if exc.errno == errno.EDQUOT else "file system full"
        raise MediaFull(
            f"disk pool {pool} is full ({reason}, {free}) while {what}; "
            "nothing of this write was kept and committed data is intact"
        ) from exc


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte of ``data`` (os.write may write less than asked)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_all_vectored(fd: int, head: bytes, body: bytes | memoryview) -> None:
    """Write ``head`` then ``body`` with as few system calls as the kernel allows."""
    parts = [memoryview(head), memoryview(body).cast("B")]
    while parts:
        written = os.writev(fd, parts)
        while parts and written >= len(parts[0]):
            written -= len(parts[0])
            parts.pop(0)
        if parts and written:
            parts[0] = parts[0][written:]


def fsync_dir(path: Path) -> None:
    """Make the entries of a folder (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dir(path: Path) -> None:
    """Create one folder (its parent must exist) and make its entry durable."""
    try:
        path.mkdir()
    except FileExistsError:
        return
    fsync_dir(path.parent)


def remove_quietly(path: Path) -> None:
    """Remove a file if it exists; clean-up paths must not hide the original error."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: temporary file, fsync, rename, fsync of the folder.

    Readers see the old content or the new one, never a mix, also after a crash.
    On failure the temporary file is removed and the old content stays.
    """
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)
