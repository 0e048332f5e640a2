"""A recovery point's manifest: the small document that names everything in it.

The item list itself is an *item stream* (msgpack records, see itemcodec.py) cut
into chunks and stored like file data, so large file trees dedup against their
previous version. The manifest holds the ids of those stream chunks. It is sealed
and stored on the medium under the recovery point id; writing it is the commit
point of a backup on the medium (the catalog row follows it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import msgpack

FORMAT_VERSION = 1

# Fields every manifest must carry; the others fall back to their defaults.
_REQUIRED = ("id", "asset", "kind", "level", "created_at", "version")


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
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["item_stream"] = [bytes(cid) for cid in self.item_stream]
        try:
            return msgpack.packb(doc, use_bin_type=True, datetime=False)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"manifest {self.id} cannot be encoded: {exc}") from None

    @classmethod
    def decode(cls, data: bytes) -> Manifest:
        """Parse; raises ValueError on an unknown version or a malformed document."""
        try:
            doc: Any = msgpack.unpackb(data, raw=False, strict_map_key=False)
        except (ValueError, msgpack.UnpackException) as exc:
            raise ValueError(f"malformed manifest: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("malformed manifest: not a map")
        missing = [name for name in _REQUIRED if name not in doc]
        if missing:
            raise ValueError(f"malformed manifest: missing {', '.join(missing)}")
        if doc["version"] != FORMAT_VERSION:
            raise ValueError(
                f"manifest format version {doc['version']!r} is not supported "
                f"(this Tapir reads version {FORMAT_VERSION})"
            )
        known = {f.name for f in fields(cls)}
        # Unknown keys are ignored: a later minor revision may add fields.
        values = {k: v for k, v in doc.items() if k in known}
        manifest = cls(**values)
        _check_types(manifest)
        return manifest


def _check_types(m: Manifest) -> None:
    checks: list[tuple[str, bool]] = [
        ("id", isinstance(m.id, str) and bool(m.id)),
        ("asset", isinstance(m.asset, dict)),
        ("kind", isinstance(m.kind, str)),
        ("level", isinstance(m.level, str)),
        ("created_at", isinstance(m.created_at, str)),
        ("parent", m.parent is None or isinstance(m.parent, str)),
        ("job", m.job is None or isinstance(m.job, str)),
        (
            "item_stream",
            isinstance(m.item_stream, list)
            and all(isinstance(c, bytes) and len(c) == 32 for c in m.item_stream),
        ),
        ("items", isinstance(m.items, int)),
        ("bytes_logical", isinstance(m.bytes_logical, int)),
        ("bytes_new", isinstance(m.bytes_new, int)),
        ("warnings", isinstance(m.warnings, list)),
        ("metadata", isinstance(m.metadata, dict)),
    ]
    bad = [name for name, ok in checks if not ok]
    if bad:
        raise ValueError(f"malformed manifest: bad {', '.join(bad)}")
