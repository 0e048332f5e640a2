"""Reading one regular file into a :class:`FileWriter`, holes sent as holes."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

from tapir.appliance.plugin_api import FileWriter

BLOCK = 1 << 20


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
    ) -> None:
        self.fd = fd
        self.size = size
        self.writer = writer
        self.on_data = on_data
        self.done = 0
        self.holes = 0

    def run(self) -> int:
        """Copy the file; returns the number of bytes sent (data and holes)."""
        sparse = True
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
        while self.done < end:
            data = os.pread(self.fd, min(BLOCK, end - self.done), self.done)
            if not data:
                return False  # the file shrank
            self.writer.write(data)
            self.done += len(data)
            self.on_data(len(data))
        return True
