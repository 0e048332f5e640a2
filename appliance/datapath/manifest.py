"""A recovery point's manifest: the small document that names everything in it.

The item list itself is an *item stream* (msgpack records, see itemcodec.py) cut
into chunks and stored like file data, so large file trees dedup against their
previous version. The manifest holds the ids of those stream chunks. It is sealed
and stored on the medium under the recovery point id; writing it is the commit
point of a backup on the medium (the catalog row follows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

FORMAT_VERSION = 1


@dataclass
class Manifest:
    id: str  # recovery point id (uuid4 hex): the manifest's name on the medium
    asset: dict[str, object]  # {"plugin", "kind", "name", "external_id"}: rebuildable catalog
    kind: str  # files, image, application
    level: str  # full, incremental, log
    created_at: str  # ISO 8601 UTC
    parent: str | None = None
    job: str | None = None
    item_stream: list[bytes] = field(default_factory=list)  # chunk ids of the item stream
    items: int = 0
    bytes_logical: int = 0  # sum of item sizes
    bytes_new: int = 0  # sealed bytes this backup added to the pool
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, object] = field(default_factory=dict)  # the plugin's BackupResult.metadata
    version: int = FORMAT_VERSION

    def encode(self) -> bytes:
        """Serialise to msgpack (sealed by the repository before storing)."""
        raise NotImplementedError

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse; raises ValueError on an unknown version or a malformed document."""
        raise NotImplementedError
