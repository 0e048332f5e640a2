"""Freezing the applications inside a VM while its hypervisor snapshot is taken.

A hypervisor job may name application jobs whose assets live in its VMs
(``Job.selection["freeze_with"]``). Around the one call that takes each VM's
snapshot (``ctx.snapshot_window()``) every asset of those jobs is frozen in
parallel through its ``ApplicationPlugin.freeze``, bounded by a window, and
thawed when the snapshot call returns or fails.

Unlike a consistency group, this is best effort: when one application cannot
freeze in time, those that did are thawed at once, the run log and the recovery
point get a warning, and the snapshot is taken crash-consistent. A VM backup
must not fail because a database inside it refused to freeze: a crash-consistent
image is still worth more than none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ..catalog.models import Job
from ..plugin_api.errors import TapirError
from ..plugin_api.roles import ApplicationPlugin, BackupResult, HypervisorPlugin
from . import runs
from .backup import describe_error
from .context import EngineContext
from .group_run import Member, resolve_members, thaw_all
from .groups import DEFAULT_FREEZE_WINDOW

log = logging.getLogger(__name__)

#: The selection key naming the application jobs a hypervisor job freezes.
FREEZE_WITH = "freeze_with"
#: How long every application together may take to freeze (a consistency group's default).
WINDOW = DEFAULT_FREEZE_WINDOW


def freeze_with(job: Any) -> list[str]:
    """The application jobs ``job`` freezes around its snapshots (empty: none)."""
    return [str(n) for n in ((job.selection or {}).get(FREEZE_WITH) or [])]


def set_freeze_with(env: EngineContext, name: str, jobs: list[str]) -> list[str]:
    """Make hypervisor job ``name`` freeze the application jobs ``jobs`` (empty: none).

    ValueError (nothing saved) for a job that is not a hypervisor job, a named job
    that does not exist or does not back up an application, or a repeated name.
    """
    wanted = list(jobs)
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"--freeze-with names a job twice: {', '.join(wanted)}")
    with env.catalog.session() as s:
        row = s.scalar(select(Job).where(Job.name == name))
        if row is None:
            raise KeyError(f"no job named {name!r}")
        if wanted and not isinstance(env.registry.source_plugin(row.plugin), HypervisorPlugin):
            raise ValueError(
                f"job {name!r} ({row.plugin}) takes no hypervisor snapshot: only a hypervisor "
                "job freezes applications"
            )
        for other in wanted:
            app_job = s.scalar(select(Job).where(Job.name == other))
            if app_job is None:
                raise ValueError(f"--freeze-with: no job named {other!r}")
            plugin = (
                env.registry.source_plugin(app_job.plugin) if app_job.kind == "backup" else None
            )
            if not isinstance(plugin, ApplicationPlugin):
                raise ValueError(
                    f"--freeze-with: job {other!r} backs up no application (plugin "
                    f"{app_job.plugin}), so there is nothing to freeze"
                )
        selection = {k: v for k, v in (row.selection or {}).items() if k != FREEZE_WITH}
        if wanted:
            selection[FREEZE_WITH] = wanted
        row.selection = selection
    return wanted


@dataclass
class AssetFreeze:
    """The freezes around the snapshot of one VM: what was frozen and what went wrong."""

    freezer: SnapshotFreezer
    frozen: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    entered: bool = False

    @contextmanager
    def window(self) -> Iterator[None]:
        """``ctx.snapshot_window``: freeze every member, yield, thaw those frozen."""
        self.entered = True
        with self.freezer.frozen(self):
            yield

    def annotate(self, result: BackupResult) -> None:
        """Add what happened to the point's metadata and warnings."""
        if self.freezer.members or self.freezer.unresolved:
            result.metadata["frozen_applications"] = list(self.frozen)
        if self.freezer.members and not self.entered:
            # e.g. a shut-off libvirt domain: its files are read without a snapshot.
            self.freezer._say("no snapshot was taken, so no application was frozen")
        result.warnings.extend(self.warnings)


class SnapshotFreezer:
    """The application assets one hypervisor run freezes around each snapshot."""

    def __init__(
        self,
        env: EngineContext,
        run_id: int,
        members: list[Member],
        *,
        window: float = WINDOW,
        unresolved: str | None = None,
    ) -> None:
        self.env = env
        self.run_id = run_id
        self.members = members
        self.window = window
        #: Why the named jobs' assets could not be listed (then nothing is frozen).
        self.unresolved = unresolved

    def for_asset(self) -> AssetFreeze:
        """The freeze record of one VM's backup."""
        return AssetFreeze(self)

    def _say(self, message: str, level: str = "INFO") -> None:
        runs.log_line(self.env.catalog, self.run_id, message, level)

    @contextmanager
    def frozen(self, record: AssetFreeze) -> Iterator[None]:
        if self.unresolved is not None:
            record.warnings.append(
                f"applications not frozen ({self.unresolved}): crash-consistent snapshot"
            )
            yield
            return
        members = self.members
        if not members:
            yield
            return
        ctxs = [self.env.plugin_context(m.job.plugin, run_id=self.run_id) for m in members]
        pool = ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="tapir-snapfreeze")
        try:
            freezes = [
                pool.submit(m.plugin.freeze, m.asset, c) for m, c in zip(members, ctxs, strict=True)
            ]
            wait(freezes, timeout=self.window)
            problems: list[str] = []
            late: list[int] = []
            for i, (m, f) in enumerate(zip(members, freezes, strict=True)):
                if not f.done():
                    late.append(i)
                    problems.append(f"{m.title} did not freeze within {self.window:g} s")
                elif (exc := f.exception()) is not None:
                    problems.append(f"{m.title} could not freeze: {describe_error(exc)}")
            if problems:
                # Best effort: thaw whoever froze now, take the snapshot crash-consistent.
                thaw_problems = thaw_all(pool, members, ctxs, freezes, late)
                record.warnings.append(
                    "applications not frozen, crash-consistent snapshot: "
                    + "; ".join(problems + thaw_problems)
                )
                log.warning("run %s: %s", self.run_id, record.warnings[-1])
                yield
                return
            titles = [m.title for m in members]
            self._say(f"frozen for the snapshot: {', '.join(titles)}")
            try:
                yield
            finally:
                thaw_problems = thaw_all(pool, members, ctxs, freezes, late)
                if thaw_problems:
                    record.warnings.append("thaw after the snapshot: " + "; ".join(thaw_problems))
                self._say(f"thawed after the snapshot: {', '.join(titles)}")
            record.frozen.extend(titles)
        finally:
            pool.shutdown(wait=False)


def prepare(env: EngineContext, job: Job, run_id: int) -> SnapshotFreezer | None:
    """The freezer of a hypervisor job's run; None when the job names no application.

    The named jobs' assets are listed once per run (discovery, as their own backups
    do). When that fails the run goes on: every snapshot is crash-consistent and
    says why in a warning.
    """
    names = freeze_with(job)
    if not names:
        return None
    try:
        with env.catalog.session() as s:
            jobs = [s.scalar(select(Job).where(Job.name == n)) for n in names]
        missing = [n for n, j in zip(names, jobs, strict=True) if j is None]
        if missing:
            raise TapirError(f"job {', '.join(missing)} no longer exists")
        members = resolve_members(env, [j for j in jobs if j is not None], run_id)
    except Exception as exc:
        log.exception("run %s: listing the applications to freeze failed", run_id)
        return SnapshotFreezer(env, run_id, [], unresolved=describe_error(exc))
    runs.log_line(
        env.catalog,
        run_id,
        f"applications frozen around each snapshot: {', '.join(m.title for m in members)}",
    )
    return SnapshotFreezer(env, run_id, members, window=WINDOW)
