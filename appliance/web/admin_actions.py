"""What the administration pages and their API do, once: posted data in, facade call out.

Like :mod:`.actions`, each function takes a plain mapping (a page's form or an API
JSON object), checks it and calls the :class:`Appliance` facade, which audits.
Pages post every field; the API may leave fields out, which then stay as they
are (``partial=True``). Bad input raises ValueError or KeyError; nothing is saved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..engine.admin import KEEP, Keep
from ..engine.endpoints import MIN_DISCOVERY_INTERVAL
from ..engine.service import ROLES, Appliance
from ..plugin_api.context import OptionSpec
from .actions import count, flag, retention_rules, text
from .views.account import check_new_password


def _field(data: Mapping[str, Any], key: str, partial: bool) -> bool:
    """Whether ``key`` is to be changed: always on a page, when present in the API."""
    return not partial or key in data


def update_pool(app: Appliance, name: str, data: Mapping[str, Any], *, partial: bool) -> None:
    """Retention policy (empty: none) and concurrency limit (empty: none) of a pool."""
    retention: str | Keep | None = KEEP
    limit: int | Keep | None = KEEP
    if _field(data, "retention", partial):
        retention = text(data, "retention")
    if _field(data, "max_concurrent_runs", partial):
        limit = count(data, "max_concurrent_runs")
    app.update_pool(name, retention=retention, max_concurrent_runs=limit)


def update_retention(app: Appliance, name: str, data: Mapping[str, Any]) -> None:
    """Every rule of the policy (a rule left empty is cleared)."""
    app.update_retention_policy(name, **retention_rules(data))


def update_job(
    app: Appliance,
    name: str,
    data: Mapping[str, Any],
    options: dict[str, Any] | Keep,
    *,
    partial: bool,
) -> None:
    """Options (replaced whole), schedule and time zone, pool and retention of a job."""
    schedule: str | Keep | None = KEEP
    pool: str | Keep = KEEP
    retention: str | Keep | None = KEEP
    if _field(data, "schedule", partial):
        schedule = text(data, "schedule")
    if _field(data, "pool", partial):
        pool = text(data, "pool", required=True) or ""
    if _field(data, "retention", partial):
        retention = text(data, "retention")
    app.update_job(
        name,
        options=options,
        schedule=schedule,
        timezone=text(data, "timezone"),
        pool=pool,
        retention=retention,
    )


def rule_lines(data: Mapping[str, Any], key: str) -> list[str]:
    """Rules as a JSON list of texts, or a page's text area (one rule a line)."""
    value = data.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [line.strip() for line in value.splitlines() if line.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ValueError(f"{key} must be a list of rules (text)")


def set_rules(app: Appliance, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """Replace a job's rules (``include``, ``exclude``, ``discover``); the stored rules."""
    discover = flag(data, "discover") if "discover" in data else None
    rules = app.set_job_rules(
        name, rule_lines(data, "include"), rule_lines(data, "exclude"), discover=discover
    )
    return rules_record(rules)


def rules_record(rules: Any) -> dict[str, Any]:
    """A job's rules as JSON (empty lists for a job without rules)."""
    if rules is None:
        return {"include": [], "exclude": [], "discover": None}
    return rules.as_selection()


def preview_rules(app: Appliance, name: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """What the draft rules would select now (every candidate asset, the rule behind each)."""
    sel = app.preview_rules(name, rule_lines(data, "include"), rule_lines(data, "exclude"))
    records = [
        {
            "name": d.asset.name,
            "external_id": d.asset.external_id,
            "kind": d.asset.kind,
            "selected": d.selected,
            "rule": str(d.rule) if d.rule else None,
            "excluded_by": str(d.excluded_by) if d.excluded_by else None,
            "reason": d.reason,
        }
        for d in sel.decisions
    ]
    return {
        "job": name,
        "assets": records,
        "selected": len(sel.selected),
        "excluded": len(sel.excluded),
        "unmatched_rules": [str(r) for r in sel.unmatched],
    }


def endpoint_specs(app: Appliance, plugin: str) -> list[OptionSpec]:
    """The endpoint options a source plugin declares, without its password (asked apart)."""
    source = app.registry.sources.get(plugin)
    if source is None:
        raise KeyError(f"no source plugin named {plugin!r}")
    return [s for s in source.endpoint_options() if s.type != "secret"]


def discovery_interval(data: Mapping[str, Any]) -> int | None:
    """Seconds between scheduled discoveries (0: none), or None when not given."""
    seconds = count(data, "discovery_interval")
    if seconds is not None and 0 < seconds < MIN_DISCOVERY_INTERVAL:
        raise ValueError(f"discovery_interval is 0 (never) or at least {MIN_DISCOVERY_INTERVAL}")
    return seconds


def register_endpoint(app: Appliance, data: Mapping[str, Any], options: dict[str, Any]) -> str:
    """Register an endpoint (name, plugin, address, password, discovery_interval)."""
    name = text(data, "name", required=True) or ""
    plugin = text(data, "plugin", required=True) or ""
    address = text(data, "address", required=True) or ""
    password = data.get("password") or None
    if password is not None and not isinstance(password, str):
        raise ValueError("password must be text")
    interval = discovery_interval(data)
    kwargs = {} if interval is None else {"discovery_interval": interval}
    app.register_endpoint(name, plugin, address, options=options, password=password, **kwargs)
    return name


def create_user(app: Appliance, data: Mapping[str, Any]) -> str:
    """A new user (username, role, password and repeat; the same rules as one's own)."""
    username = text(data, "username", required=True) or ""
    role = text(data, "role") or "read-only"
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    password = data.get("password")
    if not isinstance(password, str):
        raise ValueError("password is required")
    repeat = data.get("repeat", password)
    problem = check_new_password(username, password, repeat if isinstance(repeat, str) else "")
    if problem:
        raise ValueError(problem)
    app.create_user(username, password, role)
    return username


def set_role(app: Appliance, username: str, data: Mapping[str, Any]) -> None:
    """Give ``username`` the posted role."""
    role = text(data, "role", required=True) or ""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    app.set_user_role(username, role)


def export_key(app: Appliance, pool: str, data: Mapping[str, Any]) -> bytes:
    """The pool's keys sealed with the posted passphrase (typed twice on the page)."""
    passphrase = data.get("passphrase")
    if not isinstance(passphrase, str) or not passphrase:
        raise ValueError("a passphrase is required")
    repeat = data.get("repeat", passphrase)
    if repeat != passphrase:
        raise ValueError("the two passphrases differ")
    if len(passphrase) < 12:
        raise ValueError("a passphrase needs at least 12 characters")
    if not any(p.name == pool for p in app.pools()):
        raise KeyError(f"no pool named {pool!r}")
    if not next(p for p in app.pools() if p.name == pool).encrypted:
        raise ValueError(f"pool {pool!r} is not encrypted: it has no key to export")
    return app.export_pool_key(pool, passphrase)
