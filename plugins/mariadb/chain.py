"""What one recovery point holds, recorded in its ``chain`` item.

Every point is complete on its own (the appliance's synthetic-full rule): an
incremental or log point references its parent's physical backups, archived
binary logs and dumps unchanged (no data is copied again) and adds its own. The
``chain`` item's ``extra`` lists them in order; the next backup finds it with
``sink.parent.lookup(CHAIN_PATH)`` and a restore reads it from the point itself.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from tapir.appliance.plugin_api import Item, ItemKind, PluginError

CHAIN_PATH = b"chain"
FORMAT = 1
_BINLOG_NAME = re.compile(r"^(?P<base>.+)\.(?P<index>\d{6,})$")


def binlog_index(name: str) -> tuple[str, int]:
    """``("mariadb-bin", 7)`` of ``mariadb-bin.000007``."""
    m = _BINLOG_NAME.match(name)
    if m is None:
        raise PluginError(f"{name!r} is not a binary log file name (BASE.NNNNNN)")
    return m["base"], int(m["index"])


@dataclass
class Physical:
    """One mariadb-backup stream: the full, or an incremental on the one before it."""

    path: str
    level: str  # full | incremental
    from_lsn: int
    to_lsn: int
    binlog_file: str  # the binlog position the backup is consistent at ("" without binlog)
    binlog_pos: int
    gtid: str
    time: float  # server clock (epoch seconds) once the backup was whole


@dataclass
class Binlog:
    """One closed binary log copied into the pool."""

    path: str
    name: str
    size: int


@dataclass
class Dump:
    """One logical dump (mariadb-dump) of a database."""

    path: str
    database: str
    time: float


@dataclass
class Chain:
    """The contents of one recovery point."""

    physical: list[Physical] = field(default_factory=list)
    binlogs: list[Binlog] = field(default_factory=list)
    dumps: list[Dump] = field(default_factory=list)
    #: Server clock when the last binlog archived here was closed (0: none archived).
    archived_until: float = 0.0

    def paths(self) -> list[bytes]:
        """Every data item of the point, in the order a restore wants them."""
        return [
            e.path.encode() for group in (self.physical, self.binlogs, self.dumps) for e in group
        ]

    def as_item(self) -> Item:
        return Item(
            path=CHAIN_PATH, kind=ItemKind.DIRECTORY, mode=0o700, extra={"mariadb": self.doc()}
        )

    def doc(self) -> dict[str, object]:
        return {"format": FORMAT, **asdict(self)}

    @classmethod
    def from_item(cls, item: Item) -> Chain:
        doc = item.extra.get("mariadb")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise PluginError("the recovery point's chain record is missing or of another format")
        try:
            return cls(
                physical=[Physical(**p) for p in doc.get("physical", [])],
                binlogs=[Binlog(**b) for b in doc.get("binlogs", [])],
                dumps=[Dump(**d) for d in doc.get("dumps", [])],
                archived_until=float(doc.get("archived_until", 0.0)),
            )
        except TypeError as exc:
            raise PluginError(f"the recovery point's chain record is damaged: {exc}") from None
