"""A writer thread with a bounded buffer that keeps a tape drive streaming.

A producer (chunker, compressor, network) delivers data in bursts; a tape that
runs dry stops, rewinds a little and restarts ("shoe-shining"), which costs far
more than the pause. The writer queues up to ``depth`` blocks and a thread
feeds the drive from the queue, so short producer stalls never reach the tape.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

from .drive import TapeDrive
from .errors import EarlyWarning, HardwareError

_STOP = object()


@dataclass
class WriterStats:
    """What a StreamingWriter wrote."""

    blocks: int = 0
    bytes: int = 0
    early_warning: bool = False


class WriterFailed(HardwareError):
    """The writer thread hit an error; blocks queued after it were not written."""


class StreamingWriter:
    """Feeds ``drive`` from a bounded queue on a background thread.

    ``write`` blocks only when ``depth`` blocks are already waiting. Errors from
    the thread are raised by the next ``write``/``close`` as WriterFailed (with
    the cause chained). The end-of-medium early warning is not an error: the
    first ``write`` after the thread met it raises EarlyWarning once; the block
    passed to that call was accepted and every queued block is still written.
    """

    def __init__(self, drive: TapeDrive, depth: int = 32) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.drive = drive
        self.stats = WriterStats()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._warned = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="tape-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain without writing: the stream is already broken
            data = item  # type: ignore[assignment]
            try:
                self.drive.write(data)  # type: ignore[arg-type]
            except EarlyWarning:
                self.stats.early_warning = True
            except BaseException as exc:
                self._error = exc
                continue
            self.stats.blocks += 1
            self.stats.bytes += len(data)  # type: ignore[arg-type]

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise WriterFailed(f"tape writer failed: {self._error}") from self._error

    @property
    def early_warning(self) -> bool:
        """The drive has reported the end-of-medium early warning."""
        return self.stats.early_warning

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one block (bytes are copied only if the buffer is mutable)."""
        if self._closed:
            raise WriterFailed("writer is closed")
        self._raise_pending()
        block = data if isinstance(data, bytes) else bytes(data)
        self._queue.put(block)
        if self.stats.early_warning and not self._warned:
            self._warned = True
            raise EarlyWarning("end-of-medium early warning: finish this stream on this tape")

    def close(self, filemarks: int = 1) -> WriterStats:
        """Write every queued block, then ``filemarks`` filemarks; return the totals.

        Raises WriterFailed when any block could not be written. An early
        warning met while writing the filemarks is recorded, not raised.
        """
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()
        self._raise_pending()
        if filemarks:
            try:
                self.drive.write_filemarks(filemarks)
            except EarlyWarning:
                self.stats.early_warning = True
        return self.stats

    def abort(self) -> None:
        """Stop without writing filemarks; queued blocks are still written first."""
        if not self._closed:
            self._closed = True
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> StreamingWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
