"""POSIX metadata: captured into an :class:`Item` on backup, applied on restore.

Extended attributes carry POSIX ACLs (``system.posix_acl_access`` and
``system.posix_acl_default``) along with the user, trusted and security ones.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import os
import pwd
import stat
from collections.abc import Callable

from tapir.appliance.plugin_api import Item, ItemKind

ACL_ACCESS = b"system.posix_acl_access"
ACL_DEFAULT = b"system.posix_acl_default"

#: errno values meaning "this file system (or file type) has no such attributes".
NO_XATTR_SUPPORT = {errno.ENOTSUP, errno.EOPNOTSUPP}

WarnFn = Callable[[str], None]


def kind_of(mode: int) -> ItemKind:
    """The item kind of a file mode."""
    if stat.S_ISREG(mode):
        return ItemKind.FILE
    if stat.S_ISDIR(mode):
        return ItemKind.DIRECTORY
    if stat.S_ISLNK(mode):
        return ItemKind.SYMLINK
    if stat.S_ISFIFO(mode):
        return ItemKind.FIFO
    if stat.S_ISCHR(mode):
        return ItemKind.CHAR_DEVICE
    if stat.S_ISBLK(mode):
        return ItemKind.BLOCK_DEVICE
    if stat.S_ISSOCK(mode):
        return ItemKind.SOCKET
    raise ValueError(f"unknown file type in mode {mode:o}")


class OwnerNames:
    """User and group names by id, looked up once each."""

    def __init__(self) -> None:
        self._users: dict[int, str | None] = {}
        self._groups: dict[int, str | None] = {}

    def user(self, uid: int) -> str | None:
        """The user name of ``uid``, or None when it has none here."""
        if uid not in self._users:
            try:
                self._users[uid] = pwd.getpwuid(uid).pw_name
            except KeyError:
                self._users[uid] = None
        return self._users[uid]

    def group(self, gid: int) -> str | None:
        """The group name of ``gid``, or None when it has none here."""
        if gid not in self._groups:
            try:
                self._groups[gid] = grp.getgrgid(gid).gr_name
            except KeyError:
                self._groups[gid] = None
        return self._groups[gid]


class OwnerIds:
    """Numeric ids for restore: a stored name that exists here wins over the stored id."""

    def __init__(self) -> None:
        self._uids: dict[str, int | None] = {}
        self._gids: dict[str, int | None] = {}

    def uid(self, item: Item) -> int:
        """The uid to give a restored item."""
        if item.user is None:
            return item.uid
        if item.user not in self._uids:
            try:
                self._uids[item.user] = pwd.getpwnam(item.user).pw_uid
            except KeyError:
                self._uids[item.user] = None
        found = self._uids[item.user]
        return item.uid if found is None else found

    def gid(self, item: Item) -> int:
        """The gid to give a restored item."""
        if item.group is None:
            return item.gid
        if item.group not in self._gids:
            try:
                self._gids[item.group] = grp.getgrnam(item.group).gr_gid
            except KeyError:
                self._gids[item.group] = None
        found = self._gids[item.group]
        return item.gid if found is None else found


def capture(
    rel_path: bytes, abs_path: bytes, st: os.stat_result, names: OwnerNames, warn: WarnFn
) -> Item:
    """An item holding the metadata of one entry (no data, no link target yet)."""
    kind = kind_of(st.st_mode)
    return Item(
        path=rel_path,
        kind=kind,
        mode=stat.S_IMODE(st.st_mode),
        uid=st.st_uid,
        gid=st.st_gid,
        user=names.user(st.st_uid),
        group=names.group(st.st_gid),
        mtime_ns=st.st_mtime_ns,
        atime_ns=st.st_atime_ns,
        ctime_ns=st.st_ctime_ns,
        size=st.st_size if kind is ItemKind.FILE else 0,
        rdev=st.st_rdev if kind in (ItemKind.CHAR_DEVICE, ItemKind.BLOCK_DEVICE) else 0,
        xattrs=read_xattrs(abs_path, warn),
        inode=st.st_ino,
        device=st.st_dev,
    )


def read_xattrs(path: bytes, warn: WarnFn) -> dict[bytes, bytes]:
    """Every extended attribute of ``path`` (not following a symlink)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in NO_XATTR_SUPPORT and exc.errno != errno.ENOENT:
            warn(f"extended attributes not read: {exc.strerror}")
        return {}
    found: dict[bytes, bytes] = {}
    for name in sorted(names):
        try:
            found[os.fsencode(name)] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno in (errno.ENODATA, errno.ENOENT) or exc.errno in NO_XATTR_SUPPORT:
                continue  # removed meanwhile
            warn(f"extended attribute {name} not read: {exc.strerror}")
    return found


def proc_path(fd: int) -> bytes:
    """A path reaching the inode behind ``fd`` (also an O_PATH descriptor) without a lookup."""
    return b"/proc/self/fd/%d" % fd


def apply_metadata(
    target: int | bytes,
    item: Item,
    ids: OwnerIds,
    warn: WarnFn,
    *,
    chmod: bool = True,
    is_root: bool | None = None,
) -> None:
    """Apply owner, extended attributes, mode and times to a restored entry.

    ``target`` is an open descriptor of the entry (a regular file or folder) or a
    path that reaches the entry itself without following a final symlink (see
    :func:`proc_path`). The order matters: chown clears set-id bits and file
    capabilities, so ownership comes first and the mode after the attributes.
    """
    root = os.geteuid() == 0 if is_root is None else is_root
    follow = isinstance(target, int) or item.kind is not ItemKind.SYMLINK
    if root:
        try:
            os.chown(target, ids.uid(item), ids.gid(item), follow_symlinks=follow)
        except OSError as exc:
            warn(f"owner not restored: {exc.strerror}")
    apply_xattrs(target, item, warn, follow)
    if chmod and item.kind is not ItemKind.SYMLINK:
        try:
            os.chmod(target, item.mode & 0o7777)
        except OSError as exc:
            warn(f"permissions not restored: {exc.strerror}")
    try:
        os.utime(target, ns=(item.atime_ns, item.mtime_ns), follow_symlinks=follow)
    except OSError as exc:
        warn(f"times not restored: {exc.strerror}")


def apply_xattrs(target: int | bytes, item: Item, warn: WarnFn, follow: bool = True) -> None:
    """Set the item's extended attributes; drop ACLs inherited from the new parent folder."""
    inheritable = {ItemKind.FILE: (ACL_ACCESS,), ItemKind.DIRECTORY: (ACL_ACCESS, ACL_DEFAULT)}
    for inherited in inheritable.get(item.kind, ()):
        if inherited not in item.xattrs:
            # Fails when nothing was inherited or the file system has no ACLs: both fine.
            with contextlib.suppress(OSError):
                os.removexattr(target, inherited, follow_symlinks=follow)
    for name, value in item.xattrs.items():
        try:
            os.setxattr(target, name, value, follow_symlinks=follow)
        except OSError as exc:
            shown = name.decode("utf-8", "backslashreplace")
            warn(f"extended attribute {shown} not restored: {exc.strerror}")
