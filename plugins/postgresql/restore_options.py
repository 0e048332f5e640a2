"""The options of a PostgreSQL restore (``tapir restore POINT --to DIR --option ...``)."""

from __future__ import annotations

from datetime import datetime

from tapir.appliance.plugin_api import OptionSpec, PluginError

from .wal import parse_lsn

RESTORE_OPTIONS = [
    OptionSpec(
        "target_time",
        "str",
        "recover up to this moment (ISO 8601 with a zone, e.g. 2026-11-25T10:50:01.5+00:00)",
    ),
    OptionSpec("target_lsn", "str", "recover up to this WAL position, e.g. 0/3000148"),
    OptionSpec("target_name", "str", "recover up to this named restore point"),
    OptionSpec(
        "target_inclusive",
        "bool",
        "stop just after the target (true) or just before it (false)",
        default=True,
    ),
    OptionSpec("start", "bool", "start the restored server and wait for recovery", default=True),
    OptionSpec("port", "int", "port of the restored server (default: the original's setting)"),
    OptionSpec(
        "listen_addresses", "str", "listen_addresses of the restored server", default="localhost"
    ),
    OptionSpec(
        "os_user",
        "str",
        "system user owning and running the restored cluster (as root: postgres)",
    ),
    OptionSpec(
        "recovery_timeout",
        "int",
        "seconds to wait for recovery to finish before the restore fails",
        default=3600,
    ),
    OptionSpec(
        "item",
        "str",
        "logical dumps: restore into the server the database (empty) or one table "
        "(table or schema.table) instead of writing the dump file",
    ),
    OptionSpec(
        "into_database",
        "str",
        "logical dumps: the database to restore into (default: the original name)",
    ),
]


def recovery_target(options: dict[str, object]) -> tuple[str, str] | None:
    """The one recovery target asked for, as (setting suffix, value), or None for latest."""
    given = {
        k: str(v)
        for k in ("target_time", "target_lsn", "target_name")
        if (v := options.get(k)) not in (None, "")
    }
    if len(given) > 1:
        raise PluginError(f"give one recovery target, not {', '.join(sorted(given))}")
    if not given:
        return None
    key, value = next(iter(given.items()))
    if key == "target_time":
        parse_time(value)
    elif key == "target_lsn":
        try:
            parse_lsn(value)
        except ValueError:
            raise PluginError(
                f"target_lsn {value!r} is not a WAL position like 0/3000148"
            ) from None
    elif "'" in value:
        raise PluginError("target_name must not contain a quote")
    return key.removeprefix("target_"), value


def parse_time(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise PluginError(
            f"target_time {value!r} is not an ISO 8601 time like 2026-11-25T10:50:01+00:00"
        ) from None
    if when.tzinfo is None:
        raise PluginError(f"target_time {value!r} needs a time zone (e.g. +00:00 or Z)")
    return when
