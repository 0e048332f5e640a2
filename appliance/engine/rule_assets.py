"""Applying a job's selection rules to the catalog, for a run and for a preview.

A rule-based job with an endpoint picks from the endpoint's assets as the catalog
records them, after rediscovering the endpoint (unless the job turned that off),
so a VM created since the last discovery is in and a deleted one is out. Assets
marked gone are never candidates; their recovery points stay. When the
rediscovery fails, the selection uses the catalog as the last discovery left it
and says so (the run ends with a warning). A job without an endpoint (a plugin
that protects the appliance itself) selects among what ``job_assets`` returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..catalog.models import Asset, Endpoint, Job, utcnow
from ..plugin_api.context import AssetInfo, PluginContext
from ..plugin_api.roles import SourcePlugin
from .assets import upsert_asset
from .context import EngineContext
from .endpoints import DiscoveryReport, discover_endpoint
from .selection import Decision, Rule, RuleSet


@dataclass
class RuleSelection:
    """Every candidate asset with the rules' decision, and what went wrong on the way."""

    decisions: list[Decision] = field(default_factory=list)
    asset_ids: dict[str, int] = field(default_factory=dict)  # external id -> catalog id
    unmatched: list[Rule] = field(default_factory=list)  # asset= rules that found nothing
    discovery: DiscoveryReport | None = None
    discovery_error: str | None = None

    @property
    def selected(self) -> list[Decision]:
        """The assets to back up, by name."""
        return [d for d in self.decisions if d.selected]

    @property
    def excluded(self) -> list[Decision]:
        """Assets an include rule matched and an exclude rule took out."""
        return [d for d in self.decisions if d.excluded_by is not None]

    def as_records(self) -> list[dict[str, Any]]:
        """Selected and excluded assets as plain dicts (CLI JSON, web panel)."""
        return [
            {
                "name": d.asset.name,
                "external_id": d.asset.external_id,
                "kind": d.asset.kind,
                "selected": d.selected,
                "rule": str(d.rule) if d.rule else None,
                "excluded_by": str(d.excluded_by) if d.excluded_by else None,
                "reason": d.reason,
            }
            for d in self.decisions
            if d.rule is not None
        ]


def select_by_rules(
    env: EngineContext,
    job: Job,
    rules: RuleSet,
    endpoint: Endpoint | None,
    plugin: SourcePlugin,
    ctx: PluginContext,
    *,
    discover: bool,
) -> RuleSelection:
    """Evaluate ``rules`` on the job's candidate assets (see the module docstring)."""
    result = RuleSelection()
    if endpoint is not None:
        if discover:
            try:
                result.discovery = discover_endpoint(env, endpoint.name)
            except Exception as exc:
                result.discovery_error = str(exc) or type(exc).__name__
        with env.catalog.session() as s:
            rows = list(
                s.scalars(
                    select(Asset)
                    .where(
                        Asset.endpoint_id == endpoint.id,
                        Asset.plugin == plugin.name,
                        Asset.present.is_(True),
                    )
                    .order_by(Asset.name, Asset.id)
                )
            )
    else:
        found = plugin.job_assets(None, dict(job.options or {}), ctx)
        now = utcnow()
        with env.catalog.session() as s:
            rows = [
                upsert_asset(
                    s, plugin.name, a.kind, a.name, a.external_id, now=now, meta=dict(a.metadata)
                ).row
                for a in found
            ]
        rows.sort(key=lambda r: (r.name, r.id))
    candidates = [AssetInfo(r.kind, r.name, r.external_id, dict(r.meta or {})) for r in rows]
    result.asset_ids = {r.external_id: r.id for r in rows}
    result.decisions = rules.evaluate(candidates)
    result.unmatched = rules.unmatched_assets(result.decisions)
    return result


def preview(env: EngineContext, job: Job, *, discover: bool = False) -> RuleSelection:
    """What a run of ``job`` would back up now; rediscovers the endpoint only when asked."""
    rules = RuleSet.from_selection(job.selection)
    if rules is None:
        raise ValueError(f"job {job.name!r} has no selection rules")
    plugin = env.registry.source_plugin(job.plugin)
    with env.catalog.session() as s:
        endpoint = s.get(Endpoint, job.endpoint_id) if job.endpoint_id else None
    ctx = env.plugin_context(job.plugin)
    return select_by_rules(env, job, rules, endpoint, plugin, ctx, discover=discover)
