"""Endpoints: the vCenters, hypervisor pools and servers an operator registers once.

An endpoint belongs to a source plugin. Its password is sealed with the master
key into the catalog's secrets table under ``endpoint:<name>``; the endpoint's
options carry only that secret's name, and the plugin reads the password through
``PluginContext.read_secret`` when it connects. Discovery records what the
endpoint offers as assets; assets it no longer offers are marked not present and
keep their recovery points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from .. import security
from ..catalog.models import DEFAULT_DISCOVERY_INTERVAL, Asset, Endpoint, utcnow
from ..plugin_api.context import EndpointInfo
from ..plugin_api.errors import TapirError
from ..plugin_api.roles import SourcePlugin
from .assets import upsert_asset
from .context import EngineContext
from .pools import validate_name

SECRET_PREFIX = "endpoint:"
#: The option that names the password's secret when a plugin declares no ``secret`` option.
DEFAULT_SECRET_OPTION = "password_secret"
#: The shortest discovery interval: a vCenter's inventory collection is not free.
MIN_DISCOVERY_INTERVAL = 60
#: After a failed discovery the next one is tried this soon (or at the interval, if shorter).
DISCOVERY_RETRY = 300


@dataclass
class DiscoveryReport:
    """What one discovery changed in the catalog (asset names by change)."""

    endpoint: str
    found: int = 0
    added: list[str] = field(default_factory=list)
    renamed: list[tuple[str, str]] = field(default_factory=list)  # (old name, new name)
    returned: list[str] = field(default_factory=list)  # present again after being gone
    gone: list[str] = field(default_factory=list)


def secret_name(endpoint: str) -> str:
    """The name of the sealed secret holding ``endpoint``'s password."""
    return SECRET_PREFIX + endpoint


def endpoint_info(row: Endpoint) -> EndpointInfo:
    """The view of an endpoint its plugin receives."""
    return EndpointInfo(row.name, row.plugin, row.address, dict(row.options))


def _secret_option(plugin: SourcePlugin) -> str:
    for spec in plugin.endpoint_options():
        if spec.type == "secret":
            return spec.name
    return DEFAULT_SECRET_OPTION


def register_endpoint(
    env: EngineContext,
    name: str,
    plugin: str,
    address: str,
    *,
    options: dict[str, Any],
    password: str | None = None,
    discovery_interval: int = DEFAULT_DISCOVERY_INTERVAL,
) -> Endpoint:
    """Record an endpoint (and seal its password); ValueError for bad input, nothing stored.

    ``discovery_interval`` is in seconds (0: no scheduled discovery); the first
    scheduled discovery happens at the scheduler's next tick.
    """
    validate_name("endpoint", name)
    check_discovery_interval(discovery_interval)
    source = env.registry.source_plugin(plugin)
    if not address or not address.strip():
        raise ValueError(f"endpoint {name!r} needs an address")
    if password is not None and not password:
        raise ValueError("the password is empty")
    opts = dict(options)
    secret_option = _secret_option(source)
    if secret_option in opts:
        raise ValueError(
            f"option {secret_option!r} is set by Tapir; give the password itself instead"
        )
    if password is not None:
        opts[secret_option] = secret_name(name)
    known = {spec.name for spec in source.endpoint_options()}
    unknown = sorted(set(opts) - known) if known else []
    if unknown:
        raise ValueError(
            f"plugin {plugin!r} has no endpoint option {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    missing = [
        spec.name
        for spec in source.endpoint_options()
        if spec.required and spec.name != "address" and spec.name not in opts
    ]
    if missing:
        what = ["a password" if m == secret_option else f"option {m!r}" for m in missing]
        raise ValueError(f"plugin {plugin!r} needs {' and '.join(what)} for an endpoint")
    key = env.master_key() if password is not None else None
    with env.catalog.session() as s:
        if s.scalar(select(Endpoint.id).where(Endpoint.name == name)) is not None:
            raise ValueError(f"an endpoint named {name!r} already exists")
        row = Endpoint(
            name=name,
            plugin=plugin,
            address=address.strip(),
            options=opts,
            secret_name=secret_name(name) if password is not None else None,
            discovery_interval=discovery_interval,
        )
        s.add(row)
        if password is not None and key is not None:
            # Same transaction: an endpoint never exists without its password or vice versa.
            security.store_secret(s, key, secret_name(name), password)
    return row


def endpoints(env: EngineContext) -> list[Endpoint]:
    """Every endpoint, by name."""
    with env.catalog.session() as s:
        return list(s.scalars(select(Endpoint).order_by(Endpoint.name)))


def get_endpoint(env: EngineContext, name: str) -> Endpoint:
    """The endpoint ``name``; KeyError when there is none."""
    with env.catalog.session() as s:
        row = s.scalar(select(Endpoint).where(Endpoint.name == name))
    if row is None:
        raise KeyError(f"no endpoint named {name!r}")
    return row


def test_endpoint(env: EngineContext, name: str) -> None:
    """Log in to the endpoint once; raises the plugin's ConnectionFailed with the reason."""
    row = get_endpoint(env, name)
    plugin = env.registry.source_plugin(row.plugin)
    tester = getattr(plugin, "test_connection", None)
    if tester is None:
        raise TapirError(f"plugin {row.plugin!r} cannot test a connection")
    tester(endpoint_info(row), env.plugin_context(row.plugin))


def check_discovery_interval(seconds: int) -> int:
    """The interval in seconds; ValueError when negative or shorter than the minimum."""
    if seconds < 0 or 0 < seconds < MIN_DISCOVERY_INTERVAL:
        raise ValueError(
            f"a discovery interval is 0 (off) or at least {MIN_DISCOVERY_INTERVAL} seconds, "
            f"not {seconds}"
        )
    return seconds


def set_discovery_interval(env: EngineContext, name: str, seconds: int) -> Endpoint:
    """Change how often the scheduler discovers ``name`` (0: never); next discovery re-planned."""
    check_discovery_interval(seconds)
    with env.catalog.session() as s:
        row = s.scalar(select(Endpoint).where(Endpoint.name == name))
        if row is None:
            raise KeyError(f"no endpoint named {name!r}")
        row.discovery_interval = seconds
        base = row.last_discovery_at
        row.next_discovery_at = base + timedelta(seconds=seconds) if base and seconds else None
    return row


def discover_endpoint(env: EngineContext, name: str) -> DiscoveryReport:
    """Discover the endpoint's assets and record them; vanished ones are marked not present.

    Nothing is deleted: an asset that disappears keeps its row and its recovery
    points, flagged ``present=False`` until it is seen again. When discovery fails,
    the catalog's assets are left as they were; the endpoint records the error and
    the scheduler tries again sooner (:data:`DISCOVERY_RETRY`).
    """
    row = get_endpoint(env, name)
    try:
        return _discover(env, row)
    except Exception as exc:
        _record_failure(env, row.id, exc, utcnow())
        raise


def _record_failure(env: EngineContext, endpoint_id: int, exc: Exception, now: datetime) -> None:
    message = (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) or repr(exc)
    with env.catalog.session() as s:
        endpoint = s.get(Endpoint, endpoint_id)
        if endpoint is None:
            return
        endpoint.last_discovery_error = str(message)
        if endpoint.discovery_interval:
            wait = min(endpoint.discovery_interval, DISCOVERY_RETRY)
            endpoint.next_discovery_at = now + timedelta(seconds=wait)


def _discover(env: EngineContext, row: Endpoint) -> DiscoveryReport:
    name = row.name
    plugin = env.registry.source_plugin(row.plugin)
    found = plugin.discover(endpoint_info(row), env.plugin_context(row.plugin))
    seen: dict[str, Any] = {}
    for asset in found:
        if asset.external_id in seen:
            raise TapirError(
                f"endpoint {name}: discovery returned the id {asset.external_id!r} twice"
            )
        seen[asset.external_id] = asset
    report = DiscoveryReport(endpoint=name, found=len(found))
    now = utcnow()
    with env.catalog.session() as s:
        for external_id, info in seen.items():
            change = upsert_asset(
                s,
                row.plugin,
                info.kind,
                info.name,
                external_id,
                now=now,
                meta=dict(info.metadata),
                endpoint_id=row.id,
            )
            if change.added:
                report.added.append(info.name)
            if change.renamed_from is not None:
                report.renamed.append((change.renamed_from, info.name))
            if change.returned:
                report.returned.append(info.name)
        for asset in s.scalars(
            select(Asset).where(Asset.endpoint_id == row.id, Asset.present.is_(True))
        ):
            if asset.external_id not in seen:
                asset.present = False
                report.gone.append(asset.name)
        endpoint = s.get(Endpoint, row.id)
        if endpoint is not None:
            endpoint.last_discovery_at = now
            endpoint.last_discovery_error = None
            if endpoint.discovery_interval:
                endpoint.next_discovery_at = now + timedelta(seconds=endpoint.discovery_interval)
    return report


def endpoint_assets(env: EngineContext, name: str) -> list[Asset]:
    """The assets recorded for an endpoint (present or gone), by name."""
    row = get_endpoint(env, name)
    with env.catalog.session() as s:
        q = select(Asset).where(Asset.endpoint_id == row.id).order_by(Asset.name, Asset.id)
        return list(s.scalars(q))
