"""The record that ties a cluster's recovery point together: base backup plus WAL.

Every point of a cluster holds the base backup (``base.tar``) and every WAL
segment from the base backup's end to the point's end (``wal/<segment>``), the
unchanged ones by reference to the parent's chunks. So each point restores on its
own, and retention may drop any point without breaking another: keeping a point
keeps exactly the WAL its recovery window needs. The ``chain`` directory item's
``extra`` says what the point holds; a log backup reads it from its parent.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tapir.appliance.plugin_api import Item, ItemKind, PluginError

CHAIN_PATH = b"chain"
BASE_PATH = b"base.tar"
WAL_DIR = b"wal"


def wal_path(segment: str) -> bytes:
    return WAL_DIR + b"/" + segment.encode()


@dataclass
class Chain:
    """Base backup positions and the WAL segments that follow it, without holes."""

    system_identifier: str
    timeline: int
    segment_size: int
    start_lsn: int
    stop_lsn: int
    base_started_at: str  # the backup label's START TIME, ISO 8601
    base_finished_at: str
    #: Every segment stored, from the base backup's first one, in order.
    wal: list[str] = field(default_factory=list)
    #: WAL is complete in the pool up to here (a segment boundary), or the stop LSN.
    wal_end_lsn: int = 0
    #: Server time when the WAL up to ``wal_end_lsn`` was switched out.
    recoverable_until: str = ""

    def item(self) -> Item:
        return Item(path=CHAIN_PATH, kind=ItemKind.DIRECTORY, mode=0o700, extra=asdict(self))

    @classmethod
    def from_item(cls, item: Item | None) -> Chain:
        if item is None or not item.extra:
            raise PluginError(
                "the parent recovery point holds no PostgreSQL chain record; take a full backup"
            )
        try:
            return cls(**{k: item.extra[k] for k in cls.__dataclass_fields__})  # type: ignore[arg-type]
        except KeyError as exc:
            raise PluginError(
                f"the parent's chain record lacks {exc}; take a full backup"
            ) from None
