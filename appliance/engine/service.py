"""The appliance as one object: settings, catalog, plugins and every operation.

The CLI, the web panel, the scheduler and the workers all go through this facade,
so an operation behaves the same from every entry point. Methods return plain
dataclasses or catalog rows (detached from their session), never sessions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..catalog.database import Catalog
from ..catalog.models import Job, Pool, RecoveryPoint, RetentionPolicy, Run
from ..config import Settings
from ..datapath.repository import GcReport, Repository, VerifyReport
from ..plugin_api.items import Item
from ..plugin_api.roles import RestoreResult
from ..plugin_manager import PluginRegistry


@dataclass
class ProgressSnapshot:
    """What a progress listener receives, several times a second at most."""

    run_id: int | None
    phase: str  # "backup", "restore", "verify"...
    bytes_done: int
    bytes_total: int | None
    items_done: int
    items_total: int | None
    current: str | None
    elapsed: float  # seconds
    rate: float  # bytes per second, smoothed

    @property
    def eta(self) -> float | None:
        if not self.bytes_total or self.rate <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)


ProgressListener = Callable[[ProgressSnapshot], None]


@dataclass
class PruneDecision:
    recovery_point_id: str
    asset: str
    job: str | None
    created_at: datetime
    keep: bool
    reasons: list[str] = field(default_factory=list)  # e.g. ["keep-last 3", "daily"]


@dataclass
class PrunePlan:
    decisions: list[PruneDecision]
    dry_run: bool
    deleted: int = 0


class Appliance:
    settings: Settings
    catalog: Catalog
    registry: PluginRegistry

    @classmethod
    def open(
        cls, settings: Settings | None = None, registry: PluginRegistry | None = None
    ) -> Appliance:
        """Open the catalog (migrating it) and load plugins; runs crash recovery of stale runs."""
        raise NotImplementedError

    def initialize(self) -> str | None:
        """Prepare a new home: folders, master key, catalog, the 'default' disk pool under
        home/pools/default and an 'admin' user. Returns the generated admin password the
        first time (it is printed once, never stored in plain text), None afterwards."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # Pools and retention
    def create_pool(
        self,
        name: str,
        media: str = "disk",
        *,
        path: Path | None = None,
        encrypted: bool = False,
        compression: str = "zstd:3",
        retention: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Pool:
        raise NotImplementedError

    def pools(self) -> list[Pool]:
        raise NotImplementedError

    def pool_usage(self, name: str) -> dict[str, Any]:
        """{"used", "free", "total", "logical", "dedup_ratio", "recovery_points"}."""
        raise NotImplementedError

    def repository(self, pool_name: str) -> Repository:
        raise NotImplementedError

    def export_pool_key(self, pool_name: str, passphrase: str) -> bytes:
        raise NotImplementedError

    def import_pool_key(self, pool_name: str, exported: bytes, passphrase: str) -> None:
        raise NotImplementedError

    def create_retention_policy(self, name: str, **rules: int | None) -> RetentionPolicy:
        """Rules: keep_within_days, keep_last, keep_daily/weekly/monthly/yearly."""
        raise NotImplementedError

    def retention_policies(self) -> list[RetentionPolicy]:
        raise NotImplementedError

    # Jobs and runs
    def create_job(
        self,
        name: str,
        plugin: str,
        pool: str,
        *,
        options: dict[str, Any] | None = None,
        schedule: str | None = None,
        retention: str | None = None,
        selection: dict[str, Any] | None = None,
    ) -> Job:
        raise NotImplementedError

    def jobs(self) -> list[Job]:
        raise NotImplementedError

    def queue_run(self, job_name: str, level: str = "auto", trigger: str = "manual") -> int:
        raise NotImplementedError

    def claim_next_run(self, worker: str) -> int | None:
        """Atomically move the oldest runnable queued run to 'running' for ``worker``."""
        raise NotImplementedError

    def execute_run(self, run_id: int, progress: ProgressListener | None = None) -> Run:
        """Execute a claimed run in this process; returns the finished run row."""
        raise NotImplementedError

    def run_job(
        self, job_name: str, level: str = "auto", progress: ProgressListener | None = None
    ) -> Run:
        """Queue, claim and execute at once (the CLI's foreground mode)."""
        raise NotImplementedError

    def cancel_run(self, run_id: int) -> None:
        raise NotImplementedError

    def runs(self, limit: int = 50, job: str | None = None) -> list[Run]:
        raise NotImplementedError

    def run(self, run_id: int) -> Run:
        raise NotImplementedError

    def run_log(self, run_id: int) -> list[tuple[datetime, str, str]]:
        raise NotImplementedError

    def recover_stale_runs(self) -> list[int]:
        """Mark runs left 'running' by a dead worker as failed; returns their ids."""
        raise NotImplementedError

    # Recovery points
    def recovery_points(
        self, asset: str | None = None, job: str | None = None
    ) -> list[RecoveryPoint]:
        raise NotImplementedError

    def recovery_point(self, ref: str) -> RecoveryPoint:
        """By id or unique id prefix (at least 6 characters); 'JOB:latest' also works."""
        raise NotImplementedError

    def list_items(
        self, ref: str, path: bytes | None = None, recursive: bool = False
    ) -> Iterator[Item]:
        raise NotImplementedError

    def find(self, pattern: str, job: str | None = None) -> Iterator[tuple[RecoveryPoint, Item]]:
        raise NotImplementedError

    def restore(
        self,
        ref: str,
        paths: list[bytes] | None = None,
        *,
        target: Path | None = None,
        in_place: bool = False,
        overwrite: str = "never",
        progress: ProgressListener | None = None,
    ) -> RestoreResult:
        raise NotImplementedError

    def verify(self, ref_or_pool: str, progress: ProgressListener | None = None) -> VerifyReport:
        raise NotImplementedError

    def prune(self, dry_run: bool = True, job: str | None = None) -> PrunePlan:
        raise NotImplementedError

    def gc(self, pool_name: str, dry_run: bool = False) -> GcReport:
        raise NotImplementedError

    def set_legal_hold(self, ref: str, hold: bool) -> None:
        raise NotImplementedError

    def audit(self, actor: str, action: str, target: str = "", **details: Any) -> None:
        raise NotImplementedError
