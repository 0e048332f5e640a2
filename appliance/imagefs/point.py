"""Browsing the file systems of one recovery point's disks."""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterator
from typing import Any, BinaryIO

from ..plugin_api.data import RestoreSource
from ..plugin_api.items import Item, ItemKind
from .address import Address, normalize_path, parse_address
from .errors import ImageFsError, ImageNotFound, reading
from .model import DIRECTORY, SYMLINK, DiskInfo, Entry, VolumeInfo, kind_of
from .stream import DiskStream
from .volumes import FS_NAMES, OpenVolume, discover

_CASELESS = {"fat", "exfat", "ntfs"}


class _OpenDisk:
    def __init__(self, info: DiskInfo, stream: DiskStream, volumes: list[OpenVolume]) -> None:
        self.info = info
        self.stream = stream
        self.volumes = volumes


def _entry(fs_entry: Any, path: str, st: Any = None) -> Entry:
    """An :class:`Entry` from a dissect entry; ``st`` is its directory entry's stat, if any."""
    st = st if st is not None else fs_entry.lstat()
    kind = kind_of(st.st_mode)
    target = None
    if kind == SYMLINK:
        try:
            target = fs_entry.readlink()
        except Exception:  # a link whose target cannot be read is still listed
            target = None
    return Entry(
        name=posixpath.basename(path) or "/",
        path=path,
        kind=kind,
        size=0 if kind == DIRECTORY else int(st.st_size or 0),
        mode=int(st.st_mode),
        uid=int(st.st_uid or 0),
        gid=int(st.st_gid or 0),
        mtime=float(st.st_mtime or 0),
        atime=float(st.st_atime) if st.st_atime is not None else None,
        ctime=float(st.st_ctime) if st.st_ctime is not None else None,
        target=target,
    )


#: NTFS keeps its own metadata in the first MFT records ($MFT, $Bitmap, $Extend...).
_NTFS_RESERVED_RECORDS = 24


def _hidden(child: Any, st: Any, fs_type: str, folder: str) -> bool:
    """Entries that are file system internals, not files: NTFS metafiles, a FAT label."""
    if fs_type == "ntfs" and folder == "/" and child.name.startswith("$"):
        return int(st.st_ino or 0) < _NTFS_RESERVED_RECORDS
    is_label = getattr(getattr(child, "entry", None), "is_volume_id", None)
    return bool(callable(is_label) and is_label())


def _scan(fs_entry: Any, fs_type: str, folder: str) -> list[tuple[Any, Any, str]]:
    """A folder's visible children as (dissect entry, its stat, name), sorted by name."""
    out = []
    for child in fs_entry.scandir():
        if child.name in (".", ".."):
            continue
        st = child.stat(follow_symlinks=False)
        if not _hidden(child, st, fs_type, folder):
            out.append((child.get(), st, child.name))
    return sorted(out, key=lambda c: c[2])


class PointFiles:
    """The disks, volumes and files of one recovery point, opened on demand.

    ``source`` is the engine's reader of the point (any :class:`RestoreSource`).
    Disks and file systems are opened once and kept while this object lives; it is
    not meant to be shared between threads.
    """

    def __init__(self, source: RestoreSource, label: str = "") -> None:
        self.source = source
        self.label = label or "the recovery point"
        self._items = [i for i in source.items() if i.kind == ItemKind.DISK]
        self._open: dict[int, _OpenDisk] = {}

    # Disks and volumes

    def disks(self) -> list[DiskInfo]:
        """The point's disks, with their partition table once a disk was opened."""
        out = []
        for index, item in enumerate(self._items):
            opened = self._open.get(index)
            out.append(opened.info if opened else self._disk_info(index, item, table=None))
        return out

    @staticmethod
    def _disk_info(index: int, item: Item, table: str | None) -> DiskInfo:
        path = item.path.decode("utf-8", "surrogateescape")
        return DiskInfo(index, path.rsplit("/", 1)[-1], path, item.size, table)

    def _disk_index(self, name: str) -> int:
        if not self._items:
            raise ImageFsError(f"{self.label} holds no disk images (is it an image backup?)")
        for index, item in enumerate(self._items):
            info = self._disk_info(index, item, None)
            if name in (str(index), info.name, info.item_path):
                return index
        names = ", ".join(f"{i} ({d.name})" for i, d in enumerate(self.disks()))
        raise ImageNotFound(f"{self.label} has no disk {name!r}; its disks: {names}")

    def disk(self, name: str) -> DiskInfo:
        """One disk (by number, name or item path), opened."""
        return self._disk(name).info

    def _disk(self, name: str) -> _OpenDisk:
        index = self._disk_index(name)
        opened = self._open.get(index)
        if opened is None:
            item = self._items[index]
            info = self._disk_info(index, item, None)
            stream = DiskStream(self.source.open_disk(item), info.name)
            table, volumes = discover(stream, f"disk {info.name}")
            stream.raise_failure()
            info = DiskInfo(info.index, info.name, info.item_path, info.size, table)
            opened = self._open[index] = _OpenDisk(info, stream, volumes)
        return opened

    def volumes(self, disk: str) -> list[VolumeInfo]:
        """The volumes of ``disk``: partitions, LVM logical volumes, or the whole disk."""
        return [v.info for v in self._disk(disk).volumes]

    def _volume(self, disk: str, name: str) -> tuple[_OpenDisk, OpenVolume]:
        opened = self._disk(disk)
        for vol in opened.volumes:
            if vol.info.name == name:
                if vol.fs is None:
                    raise ImageFsError(
                        f"disk {opened.info.name} volume {name}: {vol.info.error} "
                        f"(Tapir reads {FS_NAMES})"
                    )
                return opened, vol
        names = ", ".join(v.info.name for v in opened.volumes) or "none"
        raise ImageNotFound(f"disk {opened.info.name} has no volume {name!r}; its volumes: {names}")

    def chunks_loaded(self) -> int:
        """Chunks the opened disks' readers loaded from the pool so far (where they count)."""
        return sum(getattr(d.stream.disk, "chunks_loaded", 0) for d in self._open.values())

    def bytes_read(self) -> int:
        """Bytes the parsers read from the opened disks so far."""
        return sum(d.stream.bytes_read for d in self._open.values())

    # Files

    def _where(self, address: Address) -> str:
        return f"{self._disk(address.disk or '').info.name}:{address.volume}{address.path}"

    def _fs_entry(self, address: Address) -> tuple[Any, str]:
        if address.disk is None or address.volume is None:
            raise ImageFsError(f"{str(address) or 'the point'} is not a path in a file system")
        _, vol = self._volume(address.disk, address.volume)
        path = normalize_path(address.path)
        with reading(self._where(address)):
            try:
                return vol.fs.get(path), path
            except Exception as exc:
                # dissect's own not-found errors do not derive from the builtin ones.
                if type(exc).__name__ not in ("FileNotFoundError", "NotADirectoryError"):
                    raise
                missing = exc
        self._check_folders_above(vol, address)
        raise ImageNotFound(f"{self._where(address)}: no such file or folder") from missing

    def _check_folders_above(self, vol: OpenVolume, address: Address) -> None:
        """Raise the damage that made a path look missing, if a folder above it is damaged.

        A lookup in a folder whose blocks are garbage finds nothing; saying "no such
        file" would send the operator after a typo instead of a damaged file system.
        """
        parts = [p for p in address.path.split("/") if p]
        for depth in range(len(parts)):
            folder = Address(address.disk, address.volume, "/" + "/".join(parts[:depth]))
            with reading(self._where(folder)):
                try:
                    fs_entry = vol.fs.get(folder.path)
                except Exception as exc:
                    if type(exc).__name__ in ("FileNotFoundError", "NotADirectoryError"):
                        return
                    raise
                if not fs_entry.is_dir():
                    return
                names = {c.name for c in fs_entry.scandir()}
            if parts[depth] not in names:
                return

    def stat(self, address: Address | str) -> Entry:
        """The entry at ``address`` (a link is not followed)."""
        address = _addr(address)
        fs_entry, path = self._fs_entry(address)
        with reading(self._where(address)):
            return _entry(fs_entry, path)

    def ls(self, address: Address | str) -> list[Entry]:
        """A folder's entries sorted by name, or the entry itself for anything else."""
        address = _addr(address)
        fs_entry, path = self._fs_entry(address)
        with reading(self._where(address)):
            entry = _entry(fs_entry, path)
            if not entry.is_dir:
                return [entry]
            fs_type = self._fs_type(address)
            return [
                _entry(child, posixpath.join(path, name), st)
                for child, st, name in _scan(fs_entry, fs_type, path)
            ]

    def _fs_type(self, address: Address) -> str:
        return self._volume(address.disk or "", address.volume or "")[1].info.fs or ""

    def walk(self, address: Address | str) -> Iterator[tuple[Address, Entry]]:
        """The entry at ``address`` and, for a folder, everything below it (top-down)."""
        address = _addr(address)
        fs_entry, path = self._fs_entry(address)
        base = Address(address.disk, address.volume, path)
        with reading(self._where(base)):
            root = _entry(fs_entry, path)
        yield base, root
        if root.is_dir:
            yield from self._walk_below(base, fs_entry)

    def _walk_below(self, folder: Address, fs_entry: Any) -> Iterator[tuple[Address, Entry]]:
        with reading(self._where(folder)):
            children = _scan(fs_entry, self._fs_type(folder), folder.path)
        for child, st, name in children:
            address = folder.child(name)
            with reading(self._where(address)):
                entry = _entry(child, address.path, st)
            yield address, entry
            if entry.is_dir:
                yield from self._walk_below(address, child)

    def find(self, address: Address | str, pattern: str) -> Iterator[tuple[Address, Entry]]:
        """Entries below ``address`` whose name (or, with '/', whose path) matches the glob.

        On FAT, exFAT and NTFS, whose names ignore case, the match ignores case too.
        """
        address = _addr(address)
        whole = "/" in pattern
        fold = self._fs_type(address) in _CASELESS
        if fold:
            pattern = pattern.casefold()
        for found, entry in self.walk(address):
            subject = entry.path if whole else entry.name
            if fnmatch.fnmatchcase(subject.casefold() if fold else subject, pattern):
                yield found, entry

    def open(self, address: Address | str) -> ImageFile:
        """A regular file's data (read-only, seekable)."""
        address = _addr(address)
        fs_entry, path = self._fs_entry(address)
        with reading(self._where(address)):
            entry = _entry(fs_entry, path)
            if entry.kind != "file":
                raise ImageFsError(f"{self._where(address)} is a {entry.kind}, not a file")
            return ImageFile(fs_entry.open(), self._where(address))


class ImageFile:
    """A regular file's data in an image; a read failure names the file."""

    def __init__(self, fh: BinaryIO, where: str) -> None:
        self._fh = fh
        self._where = where

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is left with -1)."""
        with reading(self._where):
            return self._fh.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        """Move to ``offset``; returns the new position."""
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        """The current position."""
        return self._fh.tell()

    def close(self) -> None:
        """Release the file."""
        self._fh.close()

    def __enter__(self) -> ImageFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _addr(address: Address | str) -> Address:
    return address if isinstance(address, Address) else parse_address(address)
