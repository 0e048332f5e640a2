"""A tape pool's options, parsed and checked (``tapir pool create --media tape --option ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tapir.appliance.plugin_api import OptionSpec, TapirError

from .allocation import validate_allocation
from .drive_crypto import MODES as DRIVE_ENCRYPTION_MODES
from .format import DEFAULT_BLOCK_SIZE, MAX_BLOCK_SIZE, MIN_BLOCK_SIZE

POOL_OPTIONS = [
    OptionSpec("changer", "str", "the registered changer (tapir device add)", required=True),
    OptionSpec(
        "drives", "list[str]", "comma-separated registered drives of that changer", required=True
    ),
    OptionSpec(
        "allocation",
        "str",
        "continue | always-new | a cron expression: when a backup starts a new media set",
        default="continue",
    ),
    OptionSpec("retention_days", "int", "keep a media set this many days after its last write"),
    OptionSpec("retention_sets", "int", "keep this many media sets"),
    OptionSpec("block_size", "int", "tape block size in bytes", default=DEFAULT_BLOCK_SIZE),
    OptionSpec(
        "drive_encryption",
        "choice",
        "off | auto | required: AES-256-GCM in the drive with the pool's drive key",
        default="off",
        choices=DRIVE_ENCRYPTION_MODES,
    ),
]


def _int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise TapirError(f"tape pool option {name} must be a whole number, not {value!r}") from None
    if number < 0:
        raise TapirError(f"tape pool option {name} cannot be negative")
    return number


@dataclass(frozen=True)
class PoolSettings:
    """The options of one tape pool."""

    changer: str
    drives: tuple[str, ...]
    allocation: str = "continue"
    retention_days: int | None = None
    retention_sets: int | None = None
    block_size: int = DEFAULT_BLOCK_SIZE
    drive_encryption: str = "off"

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> PoolSettings:
        """Parse pool options; TapirError naming the option that is wrong."""
        changer = str(options.get("changer") or "").strip()
        if not changer:
            raise TapirError("a tape pool needs the option changer=NAME (a registered changer)")
        raw = options.get("drives") or ""
        # "d0,d1" and a list of names (--option drives=d0 --option drives=d1), or both.
        items = raw if isinstance(raw, list | tuple) else [raw]
        drives = tuple(n.strip() for item in items for n in str(item).split(",") if n.strip())
        if not drives:
            raise TapirError("a tape pool needs the option drives=NAME[,NAME...]")
        if len(set(drives)) != len(drives):
            raise TapirError(f"tape pool option drives names a drive twice: {','.join(drives)}")
        block = _int("block_size", options.get("block_size")) or DEFAULT_BLOCK_SIZE
        if not MIN_BLOCK_SIZE <= block <= MAX_BLOCK_SIZE or block % 4096:
            raise TapirError(
                f"block_size {block} must be a multiple of 4096 between "
                f"{MIN_BLOCK_SIZE} and {MAX_BLOCK_SIZE}"
            )
        days = _int("retention_days", options.get("retention_days"))
        sets = _int("retention_sets", options.get("retention_sets"))
        if days is not None and sets is not None:
            raise TapirError("give retention_days or retention_sets, not both")
        crypt = str(options.get("drive_encryption") or "off").strip().lower()
        if crypt not in DRIVE_ENCRYPTION_MODES:
            raise TapirError(
                f"tape pool option drive_encryption must be one of "
                f"{', '.join(DRIVE_ENCRYPTION_MODES)}, not {crypt!r}"
            )
        return cls(
            changer=changer,
            drives=drives,
            allocation=validate_allocation(str(options.get("allocation") or "continue")),
            retention_days=days,
            retention_sets=sets,
            block_size=block,
            drive_encryption=crypt,
        )
