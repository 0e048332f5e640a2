"""Catalog rows and facade results as plain dicts with stable keys.

The ``--json`` output of the command line and the web panel's JSON API both use
these, so a script sees the same shape from either. Rows come detached from their
session: a relationship the facade did not load is read as absent, never loaded
lazily (that would raise), and names fall back to look-up tables the caller passes.
"""

from __future__ import annotations

import stat
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm.exc import DetachedInstanceError

from ..catalog.models import Job, Pool, RecoveryPoint, RetentionPolicy, Run
from ..engine.service import Appliance
from ..plugin_api.errors import TapirError
from ..plugin_api.items import Item, ItemKind


def loaded(row: object, attr: str) -> Any:
    """``row.attr`` when it is already loaded (or the row is attached), else None."""
    try:
        state = inspect(row)
    except Exception:  # not a mapped object: a plain attribute
        return getattr(row, attr, None)
    if attr in state.unloaded and state.session is None:
        return None
    try:
        return getattr(row, attr)
    except DetachedInstanceError:
        return None


def decode_path(path: bytes | str | None) -> str | None:
    """A stored byte path as text; undecodable bytes become ``\\xNN`` escapes."""
    if path is None:
        return None
    if isinstance(path, str):
        return path
    return path.decode("utf-8", "backslashreplace")


def retention_record(policy: RetentionPolicy) -> dict[str, Any]:
    """A retention policy: its name and every rule (None: rule unused)."""
    return {
        "id": policy.id,
        "name": policy.name,
        "keep_within_days": policy.keep_within_days,
        "keep_last": policy.keep_last,
        "keep_daily": policy.keep_daily,
        "keep_weekly": policy.keep_weekly,
        "keep_monthly": policy.keep_monthly,
        "keep_yearly": policy.keep_yearly,
        "created_at": policy.created_at,
    }


def retention_summary(policy: RetentionPolicy | None) -> str:
    """``last 7, daily 14, within 30d`` style text; ``-`` without a policy."""
    if policy is None:
        return "-"
    parts = []
    if policy.keep_within_days:
        parts.append(f"within {policy.keep_within_days}d")
    for label in ("last", "daily", "weekly", "monthly", "yearly"):
        value = getattr(policy, f"keep_{label}")
        if value:
            parts.append(f"{label} {value}")
    return ", ".join(parts) or "(no rules: keep everything)"


def _name_of(row: object, rel: str, fk: str, names: dict[int, str] | None) -> str | None:
    target = loaded(row, rel)
    if target is not None:
        return getattr(target, "name", None)
    key = getattr(row, fk, None)
    if key is None:
        return None
    return (names or {}).get(key, f"#{key}")


def pool_record(
    pool: Pool,
    usage: dict[str, Any] | None = None,
    retention_names: dict[int, str] | None = None,
) -> dict[str, Any]:
    """A pool with its usage (when known): the keys ``tapir pool list --json`` prints."""
    options = dict(pool.options or {})
    usage = usage or {}
    return {
        "id": pool.id,
        "name": pool.name,
        "media": pool.media,
        "path": options.get("path"),
        "options": options,
        "encrypted": bool(pool.encrypted),
        "compression": pool.compression,
        "retention": _name_of(pool, "retention_policy", "retention_policy_id", retention_names),
        "used": usage.get("used"),
        "free": usage.get("free"),
        "total": usage.get("total"),
        "logical": usage.get("logical"),
        "dedup_ratio": usage.get("dedup_ratio"),
        "recovery_points": usage.get("recovery_points"),
        "created_at": pool.created_at,
    }


def schedule_records(job: Job) -> list[dict[str, Any]]:
    """A job's schedules, when the facade loaded them."""
    schedules = loaded(job, "schedules") or []
    return [
        {
            "cron": s.cron,
            "timezone": s.timezone,
            "level": s.level,
            "enabled": bool(s.enabled),
            "last_fired_at": s.last_fired_at,
            "next_run_at": s.next_run_at,
        }
        for s in schedules
    ]


def next_run(job: Job) -> datetime | None:
    """The soonest next run among the job's enabled schedules."""
    times = [s["next_run_at"] for s in schedule_records(job) if s["enabled"] and s["next_run_at"]]
    return min(times) if times else None


def job_record(
    job: Job,
    pool_names: dict[int, str] | None = None,
    retention_names: dict[int, str] | None = None,
) -> dict[str, Any]:
    """A job: what, where to, when: the keys ``tapir job list --json`` prints."""
    schedules = schedule_records(job)
    return {
        "id": job.id,
        "name": job.name,
        "plugin": job.plugin,
        "kind": job.kind,
        "pool": _name_of(job, "pool", "pool_id", pool_names),
        "retention": _name_of(job, "retention_policy", "retention_policy_id", retention_names),
        "enabled": bool(job.enabled),
        "selection": dict(job.selection or {}),
        "options": dict(job.options or {}),
        "schedules": schedules,
        "next_run_at": next_run(job),
        "created_at": job.created_at,
    }


def run_record(run: Run, job_names: dict[int, str] | None = None) -> dict[str, Any]:
    """A run and its progress counters: the keys ``tapir runs --json`` prints."""
    return {
        "id": run.id,
        "job": _name_of(run, "job", "job_id", job_names),
        "kind": run.kind,
        "level": run.level,
        "state": run.state,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "queued_at": run.queued_at,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "worker": run.worker,
        "cancel_requested": bool(run.cancel_requested),
        "bytes_total": run.bytes_total,
        "bytes_done": run.bytes_done,
        "bytes_read": run.bytes_read,
        "bytes_written": run.bytes_written,
        "items_done": run.items_done,
        "current": run.current,
        "error": run.error,
    }


def run_duration(run: Run, now: datetime) -> float | None:
    """Seconds the run has been running (or ran), None before it started."""
    if run.started_at is None:
        return None
    end = run.finished_at or now
    return (end - run.started_at).total_seconds()


def run_percent(run: Run) -> float | None:
    """Percent of bytes done, when the total is known."""
    if not run.bytes_total:
        return None
    return min(100.0, 100.0 * (run.bytes_done or 0) / run.bytes_total)


def recovery_point_record(
    rp: RecoveryPoint,
    job_names: dict[int, str] | None = None,
    pool_names: dict[int, str] | None = None,
) -> dict[str, Any]:
    """A recovery point: the keys ``tapir backups --json`` prints."""
    asset = loaded(rp, "asset")
    return {
        "id": rp.id,
        "asset": asset.name if asset is not None else f"#{rp.asset_id}",
        "asset_kind": asset.kind if asset is not None else None,
        "job": _name_of(rp, "job", "job_id", job_names),
        "pool": _name_of(rp, "pool", "pool_id", pool_names),
        "run_id": rp.run_id,
        "parent_id": rp.parent_id,
        "kind": rp.kind,
        "level": rp.level,
        "plugin": rp.plugin,
        "created_at": rp.created_at,
        "items": rp.items,
        "size": rp.bytes_logical,
        "new_bytes": rp.bytes_new,
        "legal_hold": bool(rp.legal_hold),
        "warnings": rp.warnings,
    }


_TYPE_CHAR = {
    ItemKind.DIRECTORY: "d",
    ItemKind.SYMLINK: "l",
    ItemKind.FIFO: "p",
    ItemKind.CHAR_DEVICE: "c",
    ItemKind.BLOCK_DEVICE: "b",
    ItemKind.SOCKET: "s",
}


def mode_text(item: Item) -> str:
    """``drwxr-xr-x`` style: the type from the item's kind, the rest from its mode bits
    (plugins may store permission bits only)."""
    return _TYPE_CHAR.get(item.kind, "-") + stat.filemode(item.mode)[1:]


def item_record(item: Item) -> dict[str, Any]:
    """One entry of a recovery point: the keys ``tapir ls --json`` prints."""
    return {
        "path": decode_path(item.path),
        "kind": str(item.kind),
        "mode": mode_text(item),
        "user": item.user if item.user is not None else item.uid,
        "group": item.group if item.group is not None else item.gid,
        "size": item.size,
        "mtime_ns": item.mtime_ns,
        "target": decode_path(item.target),
        "flags": list(item.flags),
    }


def dataclass_record(obj: Any) -> dict[str, Any]:
    """A facade result dataclass (verify, gc, prune, restore reports) as a dict."""
    data = asdict(obj)
    return _hexify(data)


def _hexify(value: Any) -> Any:
    # Chunk ids are bytes: hex is what an operator greps the logs for.
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _hexify(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_hexify(v) for v in value]
    return value


# Listings built through the facade, shared by the command line and the web panel.


def pool_listing(app: Appliance, name: str | None = None) -> list[dict[str, Any]]:
    """Every pool (or the one named) with its usage.

    A pool whose usage cannot be read (an offline medium, a missing folder) is still
    listed, with ``usage_error`` saying why, so one bad pool hides none of the others.
    """
    retention_names = {p.id: p.name for p in app.retention_policies()}
    pools = app.pools()
    if name is not None:
        pools = [p for p in pools if p.name == name]
        if not pools:
            raise KeyError(f"no pool named {name!r}")
    records = []
    for pool in pools:
        try:
            usage, error = app.pool_usage(pool.name), None
        except (TapirError, OSError) as exc:
            usage, error = {}, str(exc)
        record = pool_record(pool, usage, retention_names)
        record["usage_error"] = error
        records.append(record)
    return records


def job_listing(app: Appliance) -> list[dict[str, Any]]:
    """Every job, with pool and retention names and the next scheduled run."""
    pool_names = {p.id: p.name for p in app.pools()}
    retention_names = {p.id: p.name for p in app.retention_policies()}
    return [job_record(j, pool_names, retention_names) for j in app.jobs()]


def run_listing(
    app: Appliance,
    limit: int = 50,
    job: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Recent runs (newest first), with ``percent`` and ``duration`` added."""
    names = {j.id: j.name for j in app.jobs()}
    now = datetime.now(UTC)
    records = []
    for run in app.runs(limit=limit, job=job):
        if since is not None and run.queued_at is not None and run.queued_at < since:
            continue
        record = run_record(run, names)
        record["percent"] = run_percent(run)
        record["duration"] = run_duration(run, now)
        records.append(record)
    return records
