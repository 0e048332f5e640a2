"""``tapir job``: define backup and copy jobs, list them, run one now."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import click

from ..catalog.models import Run, RunState
from ..engine.selection import RULE_KINDS, RuleSet, is_rule_text, parse_rule
from ..plugin_api.context import OptionSpec
from .options import parse_options
from .output import (
    format_bytes,
    format_duration,
    format_time,
    print_json,
    print_table,
    stderr_console,
)
from .progress import ProgressDisplay
from .records import job_listing, run_duration
from .state import CliState, pass_state

LEVELS = ("auto", "full", "incremental", "log")
TIERS = ("daily", "weekly", "monthly", "yearly")


def _job_specs(state: CliState, plugin: str) -> list[OptionSpec]:
    source = state.registry.sources.get(plugin)
    return source.job_options() if source is not None else []


@click.group()
def job() -> None:
    """Backup jobs: what to protect, where to, when."""


@job.command("create")
@click.argument("name")
@click.option("--plugin", help="Source plugin, e.g. files (a backup job).")
@click.option("--copy-from", "copy_from", metavar="POOL", help="Copy the points of POOL.")
@click.option("--pool", required=True, help="Pool the backups (or copies) go to.")
@click.option("--path", "paths", multiple=True, metavar="P", help="Path to back up (repeat).")
@click.option("--include", multiple=True, metavar="GLOB", help="Only paths matching (repeat).")
@click.option(
    "--exclude",
    multiple=True,
    metavar="RULE|GLOB",
    help="Leave out assets matching a rule (KIND=VALUE) or paths matching a glob (repeat).",
)
@click.option("--schedule", metavar="CRON", help="Cron expression, e.g. '0 2 * * *'.")
@click.option(
    "--timezone",
    metavar="ZONE",
    help="Zone of the schedule [default: the appliance's, followed when it changes].",
)
@click.option("--retention", metavar="POLICY", help="Retention policy name.")
@click.option("--endpoint", metavar="NAME", help="Registered endpoint (vCenter...) to back up.")
@click.option("--asset", "assets", multiple=True, metavar="NAME", help="Only this asset (repeat).")
@click.option(
    "--rule",
    "rules",
    multiple=True,
    metavar="KIND=VALUE",
    help="Select assets matching this rule, e.g. folder=/DC0/vm/prod or name=web-* (repeat).",
)
@click.option(
    "--discover/--no-discover",
    default=True,
    show_default=True,
    help="Rediscover the endpoint before each run selects its assets by rule.",
)
@click.option("--option", "options", multiple=True, metavar="KEY=VALUE", help="Plugin option.")
@click.option(
    "--freeze-with",
    "freeze_with",
    multiple=True,
    metavar="JOB",
    help="Application job whose assets live in the VMs: frozen around each snapshot (repeat).",
)
@click.option(
    "--source-job", "source_jobs", multiple=True, metavar="JOB", help="Copy only JOB's points."
)
@click.option("--max-age", type=int, metavar="DAYS", help="Copy only points younger than DAYS.")
@click.option("--tier", type=click.Choice(TIERS), help="Copy one point per period of each chain.")
@pass_state
def job_create(
    state: CliState,
    name: str,
    plugin: str | None,
    copy_from: str | None,
    pool: str,
    paths: tuple[str, ...],
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    schedule: str | None,
    timezone: str | None,
    retention: str | None,
    endpoint: str | None,
    assets: tuple[str, ...],
    rules: tuple[str, ...],
    discover: bool,
    options: tuple[str, ...],
    freeze_with: tuple[str, ...],
    source_jobs: tuple[str, ...],
    max_age: int | None,
    tier: str | None,
) -> None:
    """Create the backup job NAME (--plugin) or the copy job NAME (--copy-from).

    A backup job: --path (made absolute), --include and --exclude become the plugin
    options ``paths``, ``include`` and ``exclude`` (lists); --option sets any other
    option the plugin declares. --endpoint names the registered endpoint (a vCenter)
    whose assets the job protects, --asset limits it to the named assets.
    --freeze-with JOB (a hypervisor job) freezes the assets of the application job
    JOB around each VM snapshot.

    Selection rules pick the assets at every run instead: --rule KIND=VALUE includes
    the assets it matches (any rule), --exclude KIND=VALUE takes assets out (exclude
    wins). Kinds: folder, resource_pool, datacenter, cluster, host, tag, name,
    power_state, template, asset. An --exclude that is no rule is a path glob.
    See 'tapir job rules' and 'tapir job preview'.

    A copy job copies the recovery points of the pool --copy-from into --pool: all of
    them, or those of each --source-job, younger than --max-age days, one per --tier
    period. Points already copied are never copied again.
    """
    if (plugin is None) == (copy_from is None):
        raise click.UsageError("give either --plugin (a backup job) or --copy-from (a copy job)")
    if copy_from is not None:
        backup_only = {
            "--path": paths,
            "--include": include,
            "--exclude": exclude,
            "--option": options,
            "--endpoint": (endpoint,) if endpoint else (),
            "--asset": assets,
            "--rule": rules,
            "--freeze-with": freeze_with,
        }
        given = [flag for flag, values in backup_only.items() if values]
        if given:
            raise click.UsageError(f"a copy job takes no {', '.join(given)}")
        copy_job = state.appliance().create_copy_job(
            name,
            copy_from,
            pool,
            jobs=list(source_jobs) or None,
            max_age_days=max_age,
            tier=tier,
            schedule=schedule,
            timezone=timezone,
            retention=retention,
        )
        click.echo(f"created copy job {copy_job.name} ({copy_from} -> {pool})")
        return
    assert plugin is not None
    if source_jobs or max_age is not None or tier is not None:
        raise click.UsageError("--source-job, --max-age and --tier describe a copy job")
    specs = _job_specs(state, plugin)
    opts = parse_options(options, specs)
    exclude_rules = tuple(e for e in exclude if is_rule_text(e))
    exclude = tuple(e for e in exclude if e not in exclude_rules)
    if exclude and not any(spec.name == "exclude" for spec in specs):
        raise click.UsageError(
            f"--exclude {exclude[0]!r} is no selection rule (KIND=VALUE with KIND one of "
            f"{', '.join(k for k in RULE_KINDS if k != 'all')})"
        )
    selection: dict[str, Any] | None = None
    if rules or exclude_rules:
        # Not "include": that name holds the files plugin's --include globs below.
        rule_texts = [*rules, *(f"asset={a}" for a in assets)]
        selection = RuleSet.parse(rule_texts, exclude_rules, discover).as_selection()
    elif assets:
        selection = {"assets": list(assets)}
    # Relative paths mean the operator's working folder; the job runs elsewhere later.
    absolute = tuple(os.path.abspath(p) for p in paths)
    for key, values in (("paths", absolute), ("include", include), ("exclude", exclude)):
        if values:
            if key in opts:
                raise click.UsageError(f"give {key} either as --{key[:-1]} or as --option")
            opts[key] = list(values)
    created = state.appliance().create_job(
        name,
        plugin,
        pool,
        options=opts,
        schedule=schedule,
        timezone=timezone,
        retention=retention,
        endpoint=endpoint,
        selection=selection,
        freeze_with=list(freeze_with) or None,
    )
    click.echo(f"created job {created.name} ({created.plugin} -> {pool})")


_RULES_HELP = (
    "Show job NAME's selection rules, or change them.\n\n"
    "A run backs up every asset an include rule (--rule) matches unless an exclude rule "
    "matches it too. Matching ignores case (except asset=). Kinds and their values:\n\n\b\n"
    + "\n".join(f"{kind:<14} {meaning}" for kind, meaning in RULE_KINDS.items())
)


def _rules_record(rules: RuleSet | None) -> dict[str, Any]:
    if rules is None:
        return {"include": [], "exclude": [], "discover": None}
    return rules.as_selection()


@job.command("rules", help=_RULES_HELP)
@click.argument("name")
@click.option("--rule", "add", multiple=True, metavar="KIND=VALUE", help="Add an include rule.")
@click.option(
    "--exclude", "add_exclude", multiple=True, metavar="KIND=VALUE", help="Add an exclude rule."
)
@click.option("--remove", multiple=True, metavar="KIND=VALUE", help="Remove a rule.")
@click.option("--clear", is_flag=True, help="Remove every rule first.")
@click.option(
    "--discover/--no-discover",
    default=None,
    help="Rediscover the endpoint before each run selects (default: unchanged).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def job_rules(
    state: CliState,
    name: str,
    add: tuple[str, ...],
    add_exclude: tuple[str, ...],
    remove: tuple[str, ...],
    clear: bool,
    discover: bool | None,
    as_json: bool,
) -> None:
    app = state.appliance()
    current = app.job_rules(name)
    if add or add_exclude or remove or clear or discover is not None:
        include = [] if clear or current is None else [str(r) for r in current.include]
        exclude = [] if clear or current is None else [str(r) for r in current.exclude]
        gone = {str(parse_rule(r)) for r in remove}
        missing = gone - set(include) - set(exclude)
        if missing:
            raise click.UsageError(f"job {name} has no rule {', '.join(sorted(missing))}")
        include = [r for r in include if r not in gone] + [str(parse_rule(r)) for r in add]
        exclude = [r for r in exclude if r not in gone] + [str(parse_rule(r)) for r in add_exclude]
        current = app.set_job_rules(name, include, exclude, discover=discover)
    record = _rules_record(current)
    if as_json:
        print_json({"job": name, **record})
        return
    if current is None:
        click.echo(f"job {name} has no selection rules (it backs up its listed or all assets)")
        return
    rows = [["include", str(r)] for r in current.effective_include]
    rows += [["exclude", str(r)] for r in current.exclude]
    print_table(["effect", "rule"], rows)
    click.echo(f"rediscover the endpoint before each run: {'yes' if current.discover else 'no'}")


@job.command("preview")
@click.argument("name")
@click.option("--discover", is_flag=True, help="Rediscover the endpoint first.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def job_preview(state: CliState, name: str, discover: bool, as_json: bool) -> None:
    """List the assets a run of job NAME would back up now, with the rule that matched
    each, and the assets an exclude rule takes out."""
    sel = state.appliance().preview_selection(name, discover=discover)
    records = sel.as_records()
    if as_json:
        print_json(
            {
                "job": name,
                "assets": records,
                "unmatched_rules": [str(r) for r in sel.unmatched],
                "discovery_error": sel.discovery_error,
            }
        )
        return
    print_table(
        ["asset", "", "rule"],
        [
            [r["name"], "selected" if r["selected"] else "excluded", r["excluded_by"] or r["rule"]]
            for r in records
        ],
        empty="no asset matches the rules (has the endpoint been discovered?)",
    )
    click.echo(f"{len(sel.selected)} selected, {len(sel.excluded)} excluded")
    for rule in sel.unmatched:
        click.echo(f"warning: rule {rule} matches no present asset", err=True)
    if sel.discovery_error:
        click.echo(f"warning: discovery failed: {sel.discovery_error}", err=True)


@job.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def job_list(state: CliState, as_json: bool) -> None:
    """List jobs with their plugin (or what they copy), pool, schedule and next run."""
    records = job_listing(state.appliance())
    if as_json:
        print_json(records)
        return
    print_table(
        ["name", "plugin", "pool", "schedule", "next run", "retention", "enabled"],
        [
            [
                r["name"],
                _what(r),
                r["pool"],
                ", ".join(s["cron"] for s in r["schedules"]) or "manual",
                format_time(r["next_run_at"]),
                r["retention"],
                "yes" if r["enabled"] else "no",
            ]
            for r in records
        ],
        empty="no jobs; create one with 'tapir job create'",
    )


def _what(record: dict[str, Any]) -> str:
    """The plugin of a backup job (and how many selection rules it has); "copy from POOL"
    (and its filters) for a copy job."""
    if record.get("kind") != "copy":
        sel = record.get("selection") or {}
        count = len(sel.get("include") or ()) + len(sel.get("exclude") or ())
        return (
            f"{record['plugin']}, {count} rule{'s' * (count != 1)}" if count else record["plugin"]
        )
    sel = record.get("selection") or {}
    parts = [f"copy from {sel.get('source_pool', '?')}"]
    if sel.get("jobs"):
        parts.append("jobs " + ",".join(sel["jobs"]))
    if sel.get("max_age_days"):
        parts.append(f"max {sel['max_age_days']}d")
    if sel.get("tier"):
        parts.append(sel["tier"])
    return ", ".join(parts)


def run_summary(run: Run) -> dict[str, Any]:
    """What the operator reads once a foreground run ended."""
    return {
        "state": run.state,
        "read": format_bytes(run.bytes_read),
        "written": format_bytes(run.bytes_written),
        "items": run.items_done,
        "duration": format_duration(run_duration(run, datetime.now(UTC))),
    }


@job.command("run")
@click.argument("name")
@click.option("--level", type=click.Choice(LEVELS), default="auto", show_default=True)
@click.option("--queue", is_flag=True, help="Queue the run for a worker instead of running it.")
@pass_state
def job_run(state: CliState, name: str, level: str, queue: bool) -> None:
    """Run job NAME now, in the foreground with a progress bar (or --queue it)."""
    app = state.appliance()
    if queue:
        run_id = app.queue_run(name, level)
        click.echo(f"queued run {run_id} of job {name}")
        return
    with ProgressDisplay(stderr_console(), label=f"{name}") as show:
        run = app.run_job(name, level, progress=show)
    s = run_summary(run)
    click.echo(
        f"run {run.id} {s['state']}: {s['items']} items, read {s['read']}, "
        f"wrote {s['written']} new, in {s['duration']}"
    )
    if run.state == RunState.WARNING:
        click.echo(f"warnings: see 'tapir run show {run.id} --log'")
    if run.state in (RunState.FAILED, RunState.CANCELED):
        raise click.ClickException(f"run {run.id} {run.state}: {run.error or 'see its log'}")


@job.command("edit")
@click.argument("name")
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Plugin option (repeat); the given options replace all of them.",
)
@click.option("--schedule", metavar="CRON", help="Cron expression, e.g. '0 2 * * *'.")
@click.option("--no-schedule", is_flag=True, help="Remove the schedule (manual runs only).")
@click.option("--timezone", metavar="ZONE", help="Time zone of the schedule.")
@click.option("--pool", help="Pool new backups go to (old points stay where they are).")
@click.option("--retention", metavar="POLICY", help="Retention policy name.")
@click.option("--no-retention", is_flag=True, help="Use the pool's retention policy.")
@click.option(
    "--freeze-with",
    "freeze_with",
    multiple=True,
    metavar="JOB",
    help="Application job frozen around each snapshot (repeat; replaces the list).",
)
@click.option("--no-freeze-with", is_flag=True, help="Freeze no application any more.")
@pass_state
def job_edit(
    state: CliState,
    name: str,
    options: tuple[str, ...],
    schedule: str | None,
    no_schedule: bool,
    timezone: str | None,
    pool: str | None,
    retention: str | None,
    no_retention: bool,
    freeze_with: tuple[str, ...],
    no_freeze_with: bool,
) -> None:
    """Change job NAME's plugin options, schedule, pool, retention policy or the
    application jobs it freezes around its snapshots.

    (``tapir job set`` changes its concurrency limit and retries.)
    """
    if schedule and no_schedule:
        raise click.UsageError("give --schedule or --no-schedule, not both")
    if retention and no_retention:
        raise click.UsageError("give --retention or --no-retention, not both")
    if freeze_with and no_freeze_with:
        raise click.UsageError("give --freeze-with or --no-freeze-with, not both")
    app = state.appliance()
    changes: dict[str, Any] = {}
    if options:
        plugin = next((j.plugin for j in app.jobs() if j.name == name), None)
        if plugin is None:
            raise KeyError(f"no job named {name!r}")
        changes["options"] = parse_options(options, _job_specs(state, plugin))
    if schedule or no_schedule:
        changes["schedule"] = schedule
    if timezone:
        changes["timezone"] = timezone
    if pool:
        changes["pool"] = pool
    if retention or no_retention:
        changes["retention"] = retention
    if freeze_with or no_freeze_with:
        changes["freeze_with"] = list(freeze_with)
    if not changes:
        raise click.UsageError("nothing to change (see --help)")
    app.update_job(name, **changes)
    click.echo(f"job {name} updated")


@job.command("disable")
@click.argument("name")
@pass_state
def job_disable(state: CliState, name: str) -> None:
    """Disable job NAME: no scheduled runs and no manual start until enabled."""
    state.appliance().set_job_enabled(name, False)
    click.echo(f"job {name} disabled")


@job.command("enable")
@click.argument("name")
@pass_state
def job_enable(state: CliState, name: str) -> None:
    """Enable job NAME again (its schedule resumes from now)."""
    state.appliance().set_job_enabled(name, True)
    click.echo(f"job {name} enabled")


@job.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def job_delete(state: CliState, name: str, yes: bool) -> None:
    """Delete job NAME; its recovery points stay (listed under their asset)."""
    if not yes:
        click.confirm(f"Delete job {name}?", abort=True, err=True)
    kept = state.appliance().delete_job(name)
    click.echo(f"deleted job {name}; its {kept} recovery point(s) stay")


@job.group("schedule")
def schedule() -> None:
    """A job's schedules: several may run it, each at its own level."""


@schedule.command("add")
@click.argument("name")
@click.argument("cron")
@click.option("--level", type=click.Choice(LEVELS), default="auto", show_default=True)
@click.option("--timezone", default=None, help="Zone of CRON (default: the appliance's).")
@pass_state
def schedule_add(state: CliState, name: str, cron: str, level: str, timezone: str | None) -> None:
    """Run job NAME also at CRON (e.g. '*/5 * * * *' --level log for a database's log)."""
    try:
        info = state.appliance().add_schedule(name, cron, level=level, timezone=timezone)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(
        f"job {name}: schedule {info.id} '{info.cron}' ({info.timezone}, level {info.level}), "
        f"next {format_time(info.next_run_at)}"
    )


@schedule.command("list")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_state
def schedule_list(state: CliState, name: str, as_json: bool) -> None:
    """The schedules of job NAME."""
    rows = state.appliance().job_schedules(name)
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "cron": r.cron,
                    "timezone": r.timezone,
                    "level": r.level,
                    "enabled": r.enabled,
                    "next_run_at": r.next_run_at,
                }
                for r in rows
            ]
        )
        return
    print_table(
        ["id", "cron", "zone", "level", "next run"],
        [[str(r.id), r.cron, r.timezone, r.level, format_time(r.next_run_at)] for r in rows],
        empty=f"job {name} has no schedule (it runs when asked)",
    )


@schedule.command("remove")
@click.argument("name")
@click.argument("schedule_id", type=int)
@pass_state
def schedule_remove(state: CliState, name: str, schedule_id: int) -> None:
    """Remove schedule SCHEDULE_ID of job NAME."""
    state.appliance().remove_schedule(name, schedule_id)
    click.echo(f"job {name}: schedule {schedule_id} removed")
