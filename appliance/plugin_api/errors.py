"""Errors a plugin raises or receives. Every one carries a message meant for an operator."""

from __future__ import annotations


class TapirError(Exception):
    """Base of every error Tapir reports to an operator."""


class PluginError(TapirError):
    """A plugin could not do what it was asked (bad options, unreachable endpoint...)."""


class ConnectionFailed(PluginError):
    """An endpoint (hypervisor, database server, agent) could not be reached or refused us."""


class ChunkMissing(TapirError):
    """A chunk a recovery point needs is not in its pool."""

    def __init__(self, chunk_id: bytes, detail: str = "") -> None:
        self.chunk_id = chunk_id
        super().__init__(f"chunk {chunk_id.hex()} is missing{': ' + detail if detail else ''}")


class ChunkCorrupt(TapirError):
    """A chunk was read back but failed its authentication or content hash."""

    def __init__(self, chunk_id: bytes, detail: str = "") -> None:
        self.chunk_id = chunk_id
        super().__init__(f"chunk {chunk_id.hex()} is corrupt{': ' + detail if detail else ''}")


class MediaFull(TapirError):
    """The medium has no room left; nothing partial was committed."""


class RunCanceled(TapirError):
    """The operator canceled the run; raised inside the plugin at its next progress call."""
