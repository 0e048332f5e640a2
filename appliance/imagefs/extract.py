"""Restoring files from an image into a folder on the appliance.

Nothing is overwritten unless asked: every destination is checked before the first
byte is written. Each file is written under a temporary name and renamed when
complete, so a failure leaves no partial file under a real name. Metadata is kept
as far as the destination allows: permission bits, owner (when running as root),
access and modification times; symbolic links stay links; holes stay holes.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .address import Address
from .errors import ImageFsError
from .model import DIRECTORY, FILE, SYMLINK, Entry
from .point import PointFiles
from .selection import members, root_name

BLOCK = 1024 * 1024
_ZERO_RUN = 64 * 1024
_ZEROS = bytes(_ZERO_RUN)


@dataclass
class ExtractReport:
    """What a restore to a folder wrote."""

    files: int = 0
    folders: int = 0
    links: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # special files (devices, sockets...)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        """The report as a JSON object."""
        return dict(self.__dict__)


def _write_sparse(fd: int, data: bytes, offset: int) -> None:
    # Blocks of zeros are skipped (left as holes); the final truncate sets the size.
    view = memoryview(data)
    for start in range(0, len(view), _ZERO_RUN):
        piece = view[start : start + _ZERO_RUN]
        if piece != _ZEROS[: len(piece)]:
            os.pwrite(fd, piece, offset + start)


class _Writer:
    def __init__(self, files: PointFiles, target: Path, overwrite: bool) -> None:
        self.files = files
        self.target = target
        self.overwrite = overwrite
        self.report = ExtractReport()
        self.as_root = os.geteuid() == 0
        self.folders: list[tuple[Path, Entry]] = []

    def metadata(self, path: Path, entry: Entry, link: bool = False) -> None:
        if self.as_root:
            try:
                os.chown(path, entry.uid, entry.gid, follow_symlinks=not link)
            except OSError as exc:
                self.report.warnings.append(f"{path}: owner not set ({exc.strerror})")
        if not link:
            os.chmod(path, stat.S_IMODE(entry.mode))
        atime = entry.atime if entry.atime is not None else entry.mtime
        try:
            os.utime(path, ns=(int(atime * 1e9), int(entry.mtime * 1e9)), follow_symlinks=not link)
        except OSError as exc:
            self.report.warnings.append(f"{path}: times not set ({exc.strerror})")

    def file(self, dest: Path, address: Address, entry: Entry) -> None:
        tmp_name = f".{dest.name}.tapir-part"
        if len(os.fsencode(tmp_name)) > 255:  # a name near NAME_MAX has no room for a suffix
            tmp_name = f".tapir-part-{os.getpid()}-{self.report.files}"
        tmp = dest.with_name(tmp_name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            written = 0
            with self.files.open(address) as src:
                while block := src.read(BLOCK):
                    _write_sparse(fd, block, written)
                    written += len(block)
            if written != entry.size:
                raise ImageFsError(
                    f"{address}: read {written} bytes where the file system says {entry.size}"
                )
            os.ftruncate(fd, written)
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        os.close(fd)
        self.metadata(tmp, entry)
        os.replace(tmp, dest)
        self.report.files += 1
        self.report.bytes += written

    def link(self, dest: Path, entry: Entry) -> None:
        if entry.target is None:
            self.report.skipped.append(f"{dest} (a link whose target cannot be read)")
            return
        if self.overwrite and (dest.is_symlink() or dest.is_file()):
            dest.unlink()
        os.symlink(entry.target, dest)
        self.metadata(dest, entry, link=True)
        self.report.links += 1

    def folder(self, dest: Path, entry: Entry) -> None:
        try:
            dest.mkdir(mode=0o700)
        except FileExistsError:
            if not (self.overwrite and dest.is_dir() and not dest.is_symlink()):
                raise
        self.folders.append((dest, entry))
        self.report.folders += 1


def _destination(target: Path, rel: str) -> Path:
    dest = target / rel
    # Names come from the image: never let one climb out of the target folder.
    if ".." in Path(rel).parts or not dest.resolve().is_relative_to(target.resolve()):
        raise ImageFsError(f"{rel!r} would be written outside {target}")
    return dest


def extract(
    files: PointFiles,
    addresses: Sequence[Address],
    target: Path,
    *,
    overwrite: bool = False,
    on_entry: Callable[[str], None] | None = None,
) -> ExtractReport:
    """Restore each address (a file, link or folder with its contents) into ``target``.

    ``target`` is created when missing. Without ``overwrite`` the restore is refused,
    before anything is written, when a chosen name already exists in ``target``.
    """
    target = Path(target)
    if not target.is_absolute():
        raise ValueError(f"the target folder must be an absolute path, not {str(target)!r}")
    if target.exists() and not target.is_dir():
        raise ImageFsError(f"{target} exists and is not a folder")
    if not overwrite:
        in_the_way = [
            str(target / root_name(a)) for a in addresses if os.path.lexists(target / root_name(a))
        ]
        if in_the_way:
            raise ImageFsError(
                "not overwriting existing files (choose overwrite to replace them): "
                + ", ".join(in_the_way)
            )
    target.mkdir(parents=True, exist_ok=True)
    writer = _Writer(files, target, overwrite)
    for rel, address, entry in members(files, addresses):
        dest = _destination(target, rel)
        if on_entry is not None:
            on_entry(rel)
        try:
            if entry.kind == DIRECTORY:
                writer.folder(dest, entry)
            elif entry.kind == FILE:
                writer.file(dest, address, entry)
            elif entry.kind == SYMLINK:
                writer.link(dest, entry)
            else:
                writer.report.skipped.append(f"{rel} (a special file)")
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise ImageFsError(f"{dest} exists (choose overwrite to replace it)") from exc
            raise
    # Folder times last: writing their contents changed them.
    for dest, entry in reversed(writer.folders):
        writer.metadata(dest, entry)
    return writer.report
