"""Restore never writes outside its target: item paths are checked, folders opened safely.

Every folder on the way to an item is opened relative to its parent's descriptor
with O_NOFOLLOW, so neither a symbolic link restored earlier in the same restore
nor one already in the target can lead a write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(ValueError):
    """An item path that restore refuses (absolute, with "..", through a symlink...)."""


def components(path: bytes) -> list[bytes]:
    """The components of a stored item path; raises :class:`UnsafePath` for a dangerous one."""
    if not path:
        raise UnsafePath("empty path")
    if b"\0" in path:
        raise UnsafePath("path contains a NUL byte")
    if path.startswith(b"/"):
        raise UnsafePath("absolute path")
    parts = [p for p in path.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise UnsafePath("path contains '..'")
    if not parts:
        raise UnsafePath("path names no entry")
    return parts


def display(path: bytes) -> str:
    """A path for messages and lists: undecodable bytes shown as \\x escapes."""
    return path.decode("utf-8", "backslashreplace")


def open_child_dir(parent_fd: int, name: bytes, shown: bytes) -> int:
    """Open folder ``name`` in ``parent_fd`` without following a symlink."""
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                st = os.lstat(name, dir_fd=parent_fd)
            except OSError:
                raise UnsafePath(f"{display(shown)} changed while being opened") from None
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePath(
                    f"it would be reached through the symbolic link {display(shown)}"
                ) from None
            raise UnsafePath(f"{display(shown)} is not a folder") from None
        raise


class ParentDirs:
    """Opens (and creates when missing) the folders leading to items, reusing descriptors.

    Keeps the descriptors of the current chain of folders, since consecutive items
    mostly share their parents. Missing folders are created with mode 0700: they
    belong to no stored item (a partial restore), and a private folder exposes nothing.
    """

    def __init__(self, base_fd: int) -> None:
        self.base_fd = base_fd
        self._chain: list[tuple[bytes, int]] = []

    def open(self, parts: list[bytes]) -> int:
        """A descriptor of the folder reached by ``parts`` below the base (owned by this object)."""
        common = 0
        while (
            common < len(self._chain)
            and common < len(parts)
            and self._chain[common][0] == parts[common]
        ):
            common += 1
        self._truncate(common)
        fd = self._chain[-1][1] if self._chain else self.base_fd
        for depth in range(common, len(parts)):
            name = parts[depth]
            shown = b"/".join(parts[: depth + 1])
            try:
                child = open_child_dir(fd, name, shown)
            except FileNotFoundError:
                # Created meanwhile by someone else: the open below checks what it is.
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o700, dir_fd=fd)
                child = open_child_dir(fd, name, shown)
            self._chain.append((name, child))
            fd = child
        return fd

    def _truncate(self, keep: int) -> None:
        while len(self._chain) > keep:
            os.close(self._chain.pop()[1])

    def close(self) -> None:
        """Close every cached descriptor."""
        self._truncate(0)


def open_dir_path(base_fd: int, parts: list[bytes]) -> int:
    """A new descriptor of the existing folder at ``parts`` (the caller closes it)."""
    fd = os.dup(base_fd)
    try:
        for depth, name in enumerate(parts):
            child = open_child_dir(fd, name, b"/".join(parts[: depth + 1]))
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd
