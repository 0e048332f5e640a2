"""Selection rules tried out before they are saved: the job page's live preview.

The draft is parsed exactly as :meth:`Appliance.set_job_rules` would parse it (a
bad rule is a ValueError naming it) and evaluated on the catalog's assets exactly
as a run would select (:func:`rule_assets.select_by_rules`), without rediscovering
the endpoint and without saving anything.
"""

from __future__ import annotations

from sqlalchemy import select

from ..catalog.models import Endpoint, Job
from .context import EngineContext
from .copy import COPY_KIND
from .rule_assets import RuleSelection, select_by_rules
from .selection import RuleSet


def preview_draft(
    env: EngineContext, job: Job, include: list[str], exclude: list[str]
) -> RuleSelection:
    """Which assets ``job`` would back up with these rules instead of its own."""
    if job.kind == COPY_KIND:
        raise ValueError(f"job {job.name!r} copies recovery points: it has no selection rules")
    for what, rules in (("include", include), ("exclude", exclude)):
        if not isinstance(rules, list) or not all(isinstance(r, str) for r in rules):
            raise ValueError(f"{what} must be a list of rules (text)")
    rules = RuleSet.parse(
        [r.strip() for r in include if r.strip()], [r.strip() for r in exclude if r.strip()], False
    )
    plugin = env.registry.source_plugin(job.plugin)
    with env.catalog.session() as s:
        endpoint = s.scalar(select(Endpoint).where(Endpoint.id == job.endpoint_id))
    ctx = env.plugin_context(job.plugin)
    return select_by_rules(env, job, rules, endpoint, plugin, ctx, discover=False)
