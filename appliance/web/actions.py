"""What the pages and the API do, once: posted data in, facade call, record out.

Each function takes a plain mapping (a page's form or an API's JSON object), checks
it, and calls the :class:`Appliance` facade, which audits the change. Bad input
raises ValueError or KeyError with a message for the user; nothing is saved then.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from ..cli.records import job_record, pool_record, retention_record
from ..engine import scheduler
from ..engine.retention import RULE_NAMES
from ..engine.service import Appliance, local_timezone
from ..plugin_api.context import OptionSpec

COMPRESSIONS = ("zstd:3", "zstd:1", "zstd:9", "none")
LEVELS = ("auto", "full", "incremental")
MAX_NAME = 200


def text(data: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    """A stripped text field; None when empty (ValueError when required)."""
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise ValueError(f"{key} is required")
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text, not {type(value).__name__}")
    value = value.strip()
    if required and not value:
        raise ValueError(f"{key} is required")
    if len(value) > 1000:
        raise ValueError(f"{key} is too long")
    return value or None


def flag(data: Mapping[str, Any], key: str) -> bool:
    """A boolean: JSON true/false, or a page checkbox (present when on)."""
    value = data.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.lower() in ("on", "true", "1", "yes")
    raise ValueError(f"{key} must be true or false")


def count(data: Mapping[str, Any], key: str) -> int | None:
    """A whole number >= 0, or None when empty."""
    value = data.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"{key} must be a whole number")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise ValueError(f"{key} must be a whole number, not {value!r}") from None
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0")
    return value


def retention_rules(data: Mapping[str, Any]) -> dict[str, int | None]:
    """The rule fields of a retention policy."""
    rules = {name: count(data, name) for name in RULE_NAMES}
    if not any(rules.values()):
        raise ValueError("a retention policy needs at least one rule")
    return rules


def pool_specs(app: Appliance, media: str) -> list[OptionSpec]:
    """The options the media plugin declares; KeyError for an unknown plugin."""
    plugin = app.registry.media.get(media)
    if plugin is None:
        raise KeyError(f"no media plugin named {media!r}")
    return list(plugin.pool_options())


def job_specs(app: Appliance, plugin: str) -> list[OptionSpec]:
    """The job options the source plugin declares; KeyError for an unknown plugin."""
    source = app.registry.sources.get(plugin)
    if source is None:
        raise KeyError(f"no source plugin named {plugin!r}")
    return list(source.job_options())


def create_pool(app: Appliance, data: Mapping[str, Any], options: dict[str, Any]) -> dict:
    """Create a pool from ``data`` (name, media, encrypted, compression, retention)."""
    name = text(data, "name", required=True)
    media = text(data, "media") or "disk"
    compression = text(data, "compression") or "zstd:3"
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)}")
    options = dict(options)
    raw_path = options.pop("path", None)
    path = None
    if raw_path is not None:
        path = Path(str(raw_path))
        if not path.is_absolute():
            raise ValueError("path must be an absolute folder path")
    assert name is not None
    pool = app.create_pool(
        name,
        media,
        path=path,
        encrypted=flag(data, "encrypted"),
        compression=compression,
        retention=text(data, "retention"),
        options=options or None,
    )
    return pool_record(pool)


def create_retention(app: Appliance, data: Mapping[str, Any]) -> dict:
    """Create a retention policy from ``data`` (name and rule counts)."""
    name = text(data, "name", required=True)
    assert name is not None
    policy = app.create_retention_policy(name, **retention_rules(data))
    return retention_record(policy)


def schedule_preview(cron: str, timezone: str | None, now: datetime, n: int = 5) -> dict:
    """The cron expression in words and its next ``n`` times (ValueError when invalid)."""
    from cron_descriptor import get_description

    expr = scheduler.validate_cron(cron)
    tz = timezone or local_timezone()
    scheduler.zone(tz)
    return {
        "cron": expr,
        "timezone": tz,
        "description": get_description(expr),
        "next": scheduler.fire_times(expr, tz, now, n),
    }


def create_job(app: Appliance, data: Mapping[str, Any], options: dict[str, Any]) -> dict:
    """Create a backup job from ``data`` (name, plugin, pool, schedule, timezone, retention)."""
    name = text(data, "name", required=True)
    plugin = text(data, "plugin", required=True)
    pool = text(data, "pool", required=True)
    assert name is not None and plugin is not None and pool is not None
    if len(name) > MAX_NAME:
        raise ValueError("name is too long")
    job = app.create_job(
        name,
        plugin,
        pool,
        options=options,
        schedule=text(data, "schedule"),
        timezone=text(data, "timezone"),
        retention=text(data, "retention"),
    )
    return job_record(job)


def queue_run(app: Appliance, job: str, data: Mapping[str, Any]) -> int:
    """Queue a run of ``job`` for the workers (level: auto, full or incremental)."""
    level = text(data, "level") or "auto"
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)}")
    return app.queue_run(job, level=level, trigger="manual")
