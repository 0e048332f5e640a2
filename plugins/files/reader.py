"""Reading one regular file into a :class:`FileWriter`, holes sent as holes."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from tapir.appliance.plugin_api import FileWriter

#: The first read of a data run.
FIRST_BLOCK = 1 << 20
#: Later reads: large blocks let the engine's chunker cut in place (no copy) and
#: cost fewer calls; the first read stays at 1 MiB, the granularity at which a file
#: changing under the reader has always been noticed.
BLOCK = 8 << 20


class SparseReader:
    """Copies ``size`` bytes of an open file to a writer, using SEEK_DATA / SEEK_HOLE.

    ``done`` tells how far it got, also when a read raised. A file that shrinks
    while read ends early: ``done`` is then smaller than ``size``.
    """

    def __init__(
        self,
        fd: int,
        size: int,
        writer: FileWriter,
        on_data: Callable[[int], None] = lambda n: None,
        *,
        may_have_holes: bool = True,
    ) -> None:
        self.fd = fd
        # False when the file's allocated blocks cover its size: it has no holes
        # worth finding, and two lseek calls per file are saved.
        self.may_have_holes = may_have_holes
        self.size = size
        self.writer = writer
        self.on_data = on_data
        self.done = 0
        self.holes = 0

    def run(self) -> int:
        """Copy the file; returns the number of bytes sent (data and holes)."""
        sparse = self.may_have_holes
        while self.done < self.size:
            end = self.size
            if sparse:
                try:
                    data_at = min(os.lseek(self.fd, self.done, os.SEEK_DATA), self.size)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # nothing but hole up to the end
                        data_at = self.size
                    elif exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                        sparse = False  # this file system cannot tell: read it all
                        continue
                    else:
                        raise
                if data_at > self.done:
                    self.writer.hole(data_at - self.done)
                    self.holes += data_at - self.done
                    self.done = data_at
                    continue
                end = min(os.lseek(self.fd, self.done, os.SEEK_HOLE), self.size)
                if end <= self.done:  # a hole was punched meanwhile; read a block anyway
                    end = min(self.done + BLOCK, self.size)
            if not self._copy(end):
                break
        return self.done

    def _copy(self, end: int) -> bool:
        block = FIRST_BLOCK
        while self.done < end:
            data = os.pread(self.fd, min(block, end - self.done), self.done)
            block = BLOCK
            if not data:
                return False  # the file shrank
            self.writer.write(data)
            self.done += len(data)
            self.on_data(len(data))
        return True
