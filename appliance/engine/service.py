"""The appliance as one object: settings, catalog, plugins and every operation.

The CLI, the web panel, the scheduler and the workers all go through this facade,
so an operation behaves the same from every entry point. Methods return plain
dataclasses or catalog rows (detached from their session, with the relationships
they are shown with already loaded), never sessions.

Every change is written to the audit log. The actor is the OS user unless the
caller wraps the call in :meth:`Appliance.acting_as` (the web panel does, per
request).
"""

from __future__ import annotations

import contextvars
import fnmatch
import functools
import getpass
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from .. import security
from ..catalog.database import Catalog
from ..catalog.lookup import id_by_name, optional_id_by_name
from ..catalog.models import (
    DEFAULT_DISCOVERY_INTERVAL,
    Asset,
    AuditEvent,
    ConsistencyGroup,
    Device,
    Endpoint,
    GroupRun,
    Job,
    Pool,
    RecoveryPoint,
    RetentionPolicy,
    Run,
    RunLogLine,
    RunState,
    Schedule,
    User,
    utcnow,
)
from ..config import Settings, load_settings
from ..datapath.repository import (
    GcReport,
    Repository,
    VerifyReport,
    config_key_fingerprint,
    read_config,
)
from ..plugin_api.context import PluginContext
from ..plugin_api.errors import TapirError
from ..plugin_api.items import Item, ItemKind
from ..plugin_api.roles import RestoreResult
from ..plugin_manager import PluginRegistry, load_plugins
from . import about as about_mod
from . import admin as admin_mod
from . import appliance_settings, notifications, rule_assets, rule_preview, run_end, scheduler
from . import devices as devices_mod
from . import discovery as discovery_mod
from . import endpoints as endpoints_mod
from . import group_restore as group_restore_mod
from . import group_run as group_run_mod
from . import groups as groups_mod
from . import pools as pools_mod
from . import protection as protection_mod
from . import rescan as rescan_mod
from . import runs as runs_mod
from . import schedules as schedules_mod
from . import snapshot_freeze as snapshot_freeze_mod
from . import usage as usage_mod
from . import users as users_mod
from .assets import jsonable
from .backup import LEVELS, execute_backup
from .context import EngineContext
from .copy import COPY_KIND, COPY_PLUGIN, CopySelection, execute_copy
from .monitor import cancel_locally
from .progress import ProgressListener, ProgressSnapshot, RunProgress
from .prune import PruneDecision, PrunePlan
from .prune import prune as prune_points
from .rescan import MediumStatus, RescanReport, adopt_orphaned_points
from .restore import latest_point_of_job, restore_point, validate_restore_target
from .retention import RULE_NAMES
from .rule_assets import RuleSelection
from .selection import RuleSet

__all__ = [
    "Appliance",
    "ProgressListener",
    "ProgressSnapshot",
    "PruneDecision",
    "PrunePlan",
]

log = logging.getLogger(__name__)

ROLES = ("admin", "operator", "read-only")
_actor: contextvars.ContextVar[tuple[str, str | None] | None] = contextvars.ContextVar(
    "tapir_actor", default=None
)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return f"uid:{os.getuid()}"


def local_timezone() -> str:
    """The host's zone name (TZ, /etc/timezone or /etc/localtime), else UTC."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz:
        return tz
    try:
        text = Path("/etc/timezone").read_text().strip()
        if text:
            return text
    except OSError:
        pass
    try:
        target = os.readlink("/etc/localtime")
        if "zoneinfo/" in target:
            return target.split("zoneinfo/", 1)[1]
    except OSError:
        pass
    return "UTC"


def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


class Appliance:
    """Every operation of the appliance; see the module docstring."""

    settings: Settings
    catalog: Catalog
    registry: PluginRegistry

    def __init__(self, settings: Settings, catalog: Catalog, registry: PluginRegistry) -> None:
        self.settings = settings
        self.catalog = catalog
        self.registry = registry
        self.env = EngineContext(settings, catalog, registry, audit=self._audit)
        self.worker = runs_mod.worker_name()

    @classmethod
    def open(
        cls, settings: Settings | None = None, registry: PluginRegistry | None = None
    ) -> Appliance:
        """Open the catalog (migrating it) and load plugins; runs crash recovery of stale runs."""
        settings = settings or load_settings()
        catalog = Catalog(settings.database_url)
        try:
            catalog.upgrade()
            app = cls(settings, catalog, registry if registry is not None else load_plugins())
            app.recover_stale_runs()
        except BaseException:
            catalog.dispose()
            raise
        return app

    def initialize(self) -> str | None:
        """Prepare a new home: folders, master key, catalog, the 'default' disk pool under
        home/pools/default and an 'admin' user. Returns the generated admin password the
        first time (it is printed once, never stored in plain text), None afterwards."""
        for folder in (self.settings.home, self.settings.pools_dir, self.settings.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        security.create_master_key(self.settings)
        self.catalog.upgrade()
        with self.catalog.session() as s:
            has_default = s.scalar(select(Pool.id).where(Pool.name == pools_mod.DEFAULT_POOL))
        if has_default is None:
            self.create_pool(
                pools_mod.DEFAULT_POOL,
                "disk",
                path=self.settings.pools_dir / pools_mod.DEFAULT_POOL,
            )
        password = None
        with self.catalog.session() as s:
            if s.scalar(select(User.id).where(User.username == "admin")) is None:
                password = security.generate_password()
                s.add(
                    User(
                        username="admin",
                        password_hash=security.hash_password(password),
                        role="admin",
                        must_change_password=True,
                    )
                )
        if password is not None:
            self.audit(self._actor(), "init", str(self.settings.home))
        return password

    def close(self) -> None:
        """Release the catalog's connections."""
        self.catalog.dispose()

    def __enter__(self) -> Appliance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Audit and actors

    @contextmanager
    def acting_as(self, actor: str, remote_addr: str | None = None) -> Iterator[None]:
        """Attribute the changes made inside the block to ``actor`` (a web user)."""
        token = _actor.set((actor, remote_addr))
        try:
            yield
        finally:
            _actor.reset(token)

    def _actor(self) -> str:
        current = _actor.get()
        return current[0] if current else _os_user()

    def _audit(self, action: str, target: str = "", **details: Any) -> None:
        self.audit(self._actor(), action, target, **details)

    def audit(self, actor: str, action: str, target: str = "", **details: Any) -> None:
        """Record who changed what (the remote address comes from :meth:`acting_as`)."""
        current = _actor.get()
        remote = details.pop("remote_addr", None) or (current[1] if current else None)
        with self.catalog.session() as s:
            s.add(
                AuditEvent(
                    at=utcnow(),
                    actor=actor,
                    action=action,
                    target=target,
                    remote_addr=remote,
                    details=jsonable(details),
                )
            )

    def audit_events(self, limit: int = 100) -> list[AuditEvent]:
        """The newest audit events first."""
        with self.catalog.session() as s:
            q = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
            return list(s.scalars(q))

    # Secrets and users

    def set_secret(self, name: str, value: str) -> None:
        """Store a credential sealed with the master key."""
        key = self.env.master_key()
        with self.catalog.session() as s:
            security.store_secret(s, key, name, value)
        self._audit("secret.set", name)

    def read_secret(self, name: str) -> str:
        """The plain text of a sealed credential; KeyError when unknown."""
        return self.env.read_secret(name)

    def create_user(self, username: str, password: str, role: str = "read-only") -> User:
        """Add a panel user; ValueError for a taken name or an unknown role."""
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r} (choose from {', '.join(ROLES)})")
        if not username or len(username) > 100:
            raise ValueError("a user name is 1 to 100 characters")
        with self.catalog.session() as s:
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise ValueError(f"a user named {username!r} already exists")
            user = User(
                username=username, password_hash=security.hash_password(password), role=role
            )
            s.add(user)
        self._audit("user.create", username, role=role)
        return user

    def set_password(self, username: str, password: str) -> None:
        """Replace a user's password (and clear 'must change password')."""
        with self.catalog.session() as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None:
                raise KeyError(f"no user named {username!r}")
            user.password_hash = security.hash_password(password)
            user.must_change_password = False
        self._audit("user.password", username)

    def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password matches, else None (same cost either way)."""
        with self.catalog.session() as s:
            user = s.scalar(select(User).where(User.username == username))
        encoded = user.password_hash if user else _dummy_hash()
        ok = security.verify_password(password, encoded)
        return user if ok and user is not None else None

    # Endpoints

    def register_endpoint(
        self,
        name: str,
        plugin: str,
        address: str,
        *,
        options: dict[str, Any],
        password: str | None = None,
        discovery_interval: int = DEFAULT_DISCOVERY_INTERVAL,
    ) -> Endpoint:
        """Register a vCenter, hypervisor pool or server; its password is sealed, never plain.

        ``discovery_interval``: seconds between scheduled discoveries (0: none).
        """
        row = endpoints_mod.register_endpoint(
            self.env,
            name,
            plugin,
            address,
            options=options,
            password=password,
            discovery_interval=discovery_interval,
        )
        # The audit keeps the options (a secret's name, not its value).
        self._audit(
            "endpoint.register",
            name,
            plugin=plugin,
            address=address,
            options=row.options,
            discovery_interval=discovery_interval,
        )
        return row

    def set_discovery_interval(self, name: str, seconds: int) -> Endpoint:
        """How often ``tapir serve`` discovers the endpoint, in seconds (0: never)."""
        row = endpoints_mod.set_discovery_interval(self.env, name, seconds)
        self._audit("endpoint.set", name, discovery_interval=seconds)
        return row

    def run_due_discoveries(
        self, now: datetime | None = None, stop: threading.Event | None = None
    ) -> list[discovery_mod.DiscoveryOutcome]:
        """Discover the endpoints whose discovery interval has passed (the scheduler's part)."""
        return discovery_mod.run_due_discoveries(
            self.env,
            now,
            audit=lambda action, target, **details: self.audit(
                "scheduler", action, target, **details
            ),
            stop=stop,
        )

    def endpoints(self) -> list[Endpoint]:
        """Every registered endpoint, by name."""
        return endpoints_mod.endpoints(self.env)

    def endpoint(self, name: str) -> Endpoint:
        """One endpoint; KeyError when unknown."""
        return endpoints_mod.get_endpoint(self.env, name)

    def test_endpoint(self, name: str) -> None:
        """Log in to the endpoint once; raises ConnectionFailed with the reason."""
        endpoints_mod.test_endpoint(self.env, name)

    def discover_endpoint(self, name: str) -> endpoints_mod.DiscoveryReport:
        """Discover the endpoint's assets now; vanished ones are kept, marked not present."""
        report = endpoints_mod.discover_endpoint(self.env, name)
        self._audit(
            "endpoint.discover",
            name,
            found=report.found,
            added=len(report.added),
            gone=len(report.gone),
        )
        return report

    def endpoint_assets(self, name: str) -> list[Asset]:
        """The assets recorded for an endpoint, present or gone."""
        return endpoints_mod.endpoint_assets(self.env, name)

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
        max_concurrent_runs: int | None = None,
    ) -> Pool:
        """Record a pool and create its medium and repository (no row is left on failure)."""
        pool = pools_mod.create_pool(
            self.env,
            name,
            media,
            path=path,
            encrypted=encrypted,
            compression=compression,
            retention=retention,
            options=options,
            max_concurrent_runs=max_concurrent_runs,
        )
        self._audit(
            "pool.create",
            name,
            media=media,
            options=pool.options,
            encrypted=encrypted,
            compression=compression,
            retention=retention,
        )
        return self._pool(name)

    def pools(self) -> list[Pool]:
        """Every pool, by name."""
        with self.catalog.session() as s:
            q = select(Pool).options(selectinload(Pool.retention_policy)).order_by(Pool.name)
            return list(s.scalars(q))

    def _pool(self, name: str) -> Pool:
        with self.catalog.session() as s:
            pool = s.scalar(
                select(Pool).options(selectinload(Pool.retention_policy)).where(Pool.name == name)
            )
            if pool is None:
                raise KeyError(f"no pool named {name!r}")
            return pool

    def pool_usage(self, name: str) -> dict[str, Any]:
        """{"used", "free", "total", "logical", "dedup_ratio", "recovery_points"}."""
        pool = self._pool(name)
        with pools_mod.open_repository(self.env, pool) as repo:
            cap = repo.store.capacity()
        with self.catalog.session() as s:
            count, logical = s.execute(
                select(
                    func.count(RecoveryPoint.id),
                    func.coalesce(func.sum(RecoveryPoint.bytes_logical), 0),
                ).where(RecoveryPoint.pool_id == pool.id)
            ).one()
        return {
            "used": cap.used,
            "free": cap.free,
            "total": cap.total,
            "logical": int(logical),
            # Logical bytes protected per byte stored (dedup and compression together).
            "dedup_ratio": (int(logical) / cap.used) if cap.used else None,
            "recovery_points": int(count),
        }

    def repository(self, pool_name: str) -> Repository:
        """The pool's opened repository; call ``repo.store.close()`` when done."""
        pool = self._pool(pool_name)
        store = self.registry.media_plugin(pool.media).open(
            pools_mod.pool_info(pool), self.env.plugin_context(pool.media)
        )
        try:
            return Repository.open(store, master_key=self.env.master_key())
        except BaseException:
            store.close()
            raise

    def export_pool_key(self, pool_name: str, passphrase: str) -> bytes:
        """The pool's keys protected by ``passphrase`` (keep it apart from the appliance)."""
        if not passphrase:
            raise ValueError("an exported key needs a passphrase")
        with pools_mod.open_repository(self.env, self._pool(pool_name)) as repo:
            data = repo.export_key(passphrase)
        self._audit("pool.key.export", pool_name)
        return data

    def pool_key_fingerprint(self, pool_name: str) -> str | None:
        """The pool keys' public fingerprint (None when not encrypted).

        Read from the repository config without the master key, so it works on a
        pool whose key is not imported yet; the media-set labels of a tape pool
        carry the same string, which matches a key file to its cartridges.
        """
        pool = self._pool(pool_name)
        store = self.registry.media_plugin(pool.media).open(
            pools_mod.pool_info(pool), self.env.plugin_context(pool.media)
        )
        try:
            return config_key_fingerprint(read_config(store))
        finally:
            store.close()

    def import_pool_key(self, pool_name: str, exported: bytes, passphrase: str) -> None:
        """Re-wrap an exported key with this appliance's master key on the pool's medium."""
        pool = self._pool(pool_name)
        store = self.registry.media_plugin(pool.media).open(
            pools_mod.pool_info(pool), self.env.plugin_context(pool.media)
        )
        try:
            Repository.import_key(store, exported, passphrase, master_key=self.env.master_key())
        finally:
            store.close()
        self._audit("pool.key.import", pool_name)

    def attach_pool(
        self,
        name: str,
        media: str = "disk",
        *,
        path: Path | None,
        options: dict[str, Any] | None = None,
    ) -> Pool:
        """Register an existing, initialised medium as pool ``name`` (see engine/rescan.py).

        An encrypted pool from another appliance is registered too; until its key is
        imported, :meth:`pool_medium_status` says so and :meth:`rescan_pool` refuses.
        """
        pool = rescan_mod.attach_pool(self.env, name, media, path=path, options=options)
        status = rescan_mod.medium_status(self.env, pool)
        if status.message:
            log.warning("%s", status.message)
        self._audit(
            "pool.attach",
            name,
            media=media,
            options=pool.options,
            encrypted=status.encrypted,
            keys_usable=status.keys_usable,
            manifests=status.manifests,
        )
        return self._pool(name)

    def pool_medium_status(self, name: str) -> MediumStatus:
        """Encryption, key usability and recovery point count, read from the medium."""
        return rescan_mod.medium_status(self.env, self._pool(name))

    def rescan_pool(self, name: str, *, prune_missing: bool = False) -> RescanReport:
        """Rebuild the pool's catalog rows from its manifests; see engine/rescan.py."""
        report = rescan_mod.rescan_pool(self.env, self._pool(name), prune_missing=prune_missing)
        self._audit(
            "pool.rescan",
            name,
            added=len(report.added),
            unreadable=[p.recovery_point for p in report.unreadable],
            missing=report.missing,
            pruned=report.pruned,
        )
        return report

    def create_retention_policy(self, name: str, **rules: int | None) -> RetentionPolicy:
        """Rules: keep_within_days, keep_last, keep_daily/weekly/monthly/yearly."""
        pools_mod.validate_name("retention policy", name)
        unknown = sorted(set(rules) - set(RULE_NAMES))
        if unknown:
            raise ValueError(f"unknown retention rules: {', '.join(unknown)}")
        for rule, value in rules.items():
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{rule} must be a whole number >= 0, not {value!r}")
        if not any(rules.values()):
            raise ValueError("a retention policy needs at least one rule")
        with self.catalog.session() as s:
            if s.scalar(select(RetentionPolicy.id).where(RetentionPolicy.name == name)):
                raise ValueError(f"a retention policy named {name!r} already exists")
            policy = RetentionPolicy(name=name, **rules)
            s.add(policy)
        self._audit("retention.create", name, **rules)
        return policy

    def retention_policies(self) -> list[RetentionPolicy]:
        """Every retention policy, by name."""
        with self.catalog.session() as s:
            return list(s.scalars(select(RetentionPolicy).order_by(RetentionPolicy.name)))

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
        timezone: str | None = None,
        full_every: int | None = None,
        max_retries: int = 0,
        endpoint: str | None = None,
        freeze_with: list[str] | None = None,
    ) -> Job:
        """Create a backup job; ``schedule`` is a cron expression in ``timezone``
        (default: the appliance's zone, followed when it changes). ``endpoint`` names a
        registered endpoint of the same plugin (a vCenter...) whose assets the job protects.
        ``freeze_with`` names application jobs a hypervisor job freezes around each
        snapshot (engine/snapshot_freeze.py)."""
        pools_mod.validate_name("job", name)
        source = self.registry.source_plugin(plugin)
        opts = dict(options or {})
        specs = {o.name: o for o in source.job_options()}
        if specs:
            unknown = sorted(set(opts) - set(specs))
            if unknown:
                raise ValueError(
                    f"plugin {plugin!r} has no job option {', '.join(unknown)} "
                    f"(known: {', '.join(sorted(specs))})"
                )
            missing = [n for n, o in specs.items() if o.required and n not in opts]
            if missing:
                raise ValueError(f"plugin {plugin!r} needs the job option {', '.join(missing)}")
        tz = timezone or self.timezone()
        cron = None
        if schedule:
            cron = scheduler.validate_cron(schedule)
            scheduler.zone(tz)
        if full_every is not None and full_every < 1:
            raise ValueError("full_every must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries cannot be negative")
        selection = _checked_selection(selection)
        with self.catalog.session() as s:
            if s.scalar(select(Job.id).where(Job.name == name)) is not None:
                raise ValueError(f"a job named {name!r} already exists")
            pool_id = id_by_name(s, Pool, pool, "pool")
            policy_id = optional_id_by_name(s, RetentionPolicy, retention, "retention policy")
            endpoint_id = optional_id_by_name(s, Endpoint, endpoint, "endpoint")
            if endpoint_id is not None:
                endpoint_plugin = s.scalar(
                    select(Endpoint.plugin).where(Endpoint.id == endpoint_id)
                )
                if endpoint_plugin != plugin:
                    raise ValueError(
                        f"endpoint {endpoint!r} belongs to plugin {endpoint_plugin!r}, "
                        f"not {plugin!r}"
                    )
            job = Job(
                name=name,
                plugin=plugin,
                pool_id=pool_id,
                endpoint_id=endpoint_id,
                options=jsonable(opts),
                selection=selection,
                retention_policy_id=policy_id,
                full_every=full_every,
                max_retries=max_retries,
            )
            if cron:
                job.schedules.append(
                    Schedule(
                        cron=cron,
                        timezone=tz,
                        zone_from_appliance=timezone is None,
                        next_run_at=scheduler.next_fire(cron, tz, utcnow()),
                    )
                )
            s.add(job)
        self._audit(
            "job.create",
            name,
            plugin=plugin,
            pool=pool,
            options=opts,
            schedule=cron,
            timezone=tz,
            selection=selection,
        )
        if freeze_with:
            try:
                self.update_job(name, freeze_with=freeze_with)
            except Exception:
                admin_mod.delete_job(self.env, name)  # a bad --freeze-with saves nothing
                raise
        return self._job(name)

    def create_copy_job(
        self,
        name: str,
        source_pool: str,
        target_pool: str,
        *,
        jobs: list[str] | None = None,
        max_age_days: int | None = None,
        tier: str | None = None,
        schedule: str | None = None,
        retention: str | None = None,
        timezone: str | None = None,
    ) -> Job:
        """Create a copy job: recovery points of ``source_pool`` copied into ``target_pool``.

        ``jobs`` limits the copy to points of those jobs, ``max_age_days`` to points
        younger than that, ``tier`` ("daily", "weekly", "monthly", "yearly") to one
        point per period of each chain (see engine/copy.py). ``schedule`` is a cron
        expression in ``timezone`` (default: the appliance's zone, followed when it
        changes); ``retention`` a policy for the copies (default: the target pool's).
        """
        pools_mod.validate_name("job", name)
        selection = CopySelection(
            source_pool=source_pool,
            jobs=tuple(jobs) if jobs is not None else None,
            max_age_days=max_age_days,
            tier=tier,
        )
        tz = timezone or self.timezone()
        cron = None
        if schedule:
            cron = scheduler.validate_cron(schedule)
            scheduler.zone(tz)
        with self.catalog.session() as s:
            if s.scalar(select(Job.id).where(Job.name == name)) is not None:
                raise ValueError(f"a job named {name!r} already exists")
            source_id = id_by_name(s, Pool, source_pool, "pool")
            target_id = id_by_name(s, Pool, target_pool, "pool")
            if source_id == target_id:
                raise ValueError("a copy job needs two different pools")
            for source_job in jobs or []:
                if s.scalar(select(Job.id).where(Job.name == source_job)) is None:
                    raise KeyError(f"no job named {source_job!r}")
            policy_id = optional_id_by_name(s, RetentionPolicy, retention, "retention policy")
            job = Job(
                name=name,
                plugin=COPY_PLUGIN,
                kind=COPY_KIND,
                pool_id=target_id,
                options={},
                selection=selection.as_dict(),
                retention_policy_id=policy_id,
            )
            if cron:
                job.schedules.append(
                    Schedule(
                        cron=cron,
                        timezone=tz,
                        zone_from_appliance=timezone is None,
                        next_run_at=scheduler.next_fire(cron, tz, utcnow()),
                    )
                )
            s.add(job)
        self._audit(
            "job.create",
            name,
            kind=COPY_KIND,
            pool=target_pool,
            selection=selection.as_dict(),
            schedule=cron,
            timezone=tz,
            retention=retention,
        )
        return self._job(name)

    def job_rules(self, name: str) -> RuleSet | None:
        """The job's selection rules; None for a job that lists its assets or takes all."""
        return RuleSet.from_selection(self._job(name).selection)

    def set_job_rules(
        self,
        name: str,
        include: list[str],
        exclude: list[str],
        *,
        discover: bool | None = None,
    ) -> RuleSet | None:
        """Replace a backup job's selection rules (ValueError for a bad rule, nothing saved).

        Giving no rule at all returns the job to backing up every asset of its
        endpoint. ``discover`` (default: unchanged) makes runs rediscover the
        endpoint before selecting.
        """
        job = self._job(name)
        if job.kind == COPY_KIND:
            raise ValueError(f"job {name!r} copies recovery points: it has no selection rules")
        old = RuleSet.from_selection(job.selection)
        keep = old.discover if old is not None else True
        rules = RuleSet.parse(include, exclude, keep if discover is None else discover)
        selection = rules.as_selection() if rules.include or rules.exclude else {}
        if job.selection and snapshot_freeze_mod.FREEZE_WITH in job.selection:
            selection[snapshot_freeze_mod.FREEZE_WITH] = job.selection[
                snapshot_freeze_mod.FREEZE_WITH
            ]
        with self.catalog.session() as s:
            row = s.get(Job, job.id)
            if row is None:
                raise KeyError(f"no job named {name!r}")
            row.selection = selection
        self._audit("job.rules", name, **selection)
        return RuleSet.from_selection(selection)

    def preview_selection(self, name: str, *, discover: bool = False) -> RuleSelection:
        """Which assets a run of the job would back up now, and the rule behind each.

        Evaluated on the catalog; with ``discover`` the endpoint is rediscovered first.
        """
        return rule_assets.preview(self.env, self._job(name), discover=discover)

    def _job(self, name: str) -> Job:
        with self.catalog.session() as s:
            job = s.scalar(_job_query().where(Job.name == name))
            if job is None:
                raise KeyError(f"no job named {name!r}")
            return job

    def jobs(self) -> list[Job]:
        """Every job, by name, with its pool, policy and schedules loaded."""
        with self.catalog.session() as s:
            return list(s.scalars(_job_query().order_by(Job.name)))

    def next_runs(self, job_name: str, n: int = 5) -> list[datetime]:
        """The next ``n`` scheduled times of a job (UTC), over all its schedules."""
        job = self._job(job_name)
        times = sorted(
            t for sched in job.schedules if sched.enabled for t in scheduler.next_runs(sched, n)
        )
        return times[:n]

    def tick_scheduler(self, now: datetime | None = None) -> list[int]:
        """Queue the runs whose schedules are due; returns their ids."""
        return scheduler.tick(self.catalog, now)

    def queue_run(self, job_name: str, level: str = "auto", trigger: str = "manual") -> int:
        """Put a run of the job in the queue for a worker; returns its id."""
        job = self._check_runnable(job_name, level)
        run_id = runs_mod.queue_run(
            self.catalog, job.id, kind=_run_kind(job), level=level, trigger=trigger
        )
        runs_mod.log_line(self.catalog, run_id, f"queued ({trigger}, level {level})")
        self._audit("run.queue", job_name, run=run_id, level=level, trigger=trigger)
        return run_id

    def _check_runnable(self, job_name: str, level: str) -> Job:
        if level not in LEVELS:
            raise ValueError(f"unknown backup level {level!r} (choose from {', '.join(LEVELS)})")
        job = self._job(job_name)
        if not job.enabled:
            raise TapirError(f"job {job_name!r} is disabled")
        if job.kind == COPY_KIND and level != "auto":
            raise ValueError(f"job {job_name!r} copies recovery points: it has no backup level")
        return job

    def claim_next_run(self, worker: str) -> int | None:
        """Atomically move the oldest runnable queued run to 'running' for ``worker``."""
        return runs_mod.claim_next_run(self.catalog, worker)

    def execute_run(
        self,
        run_id: int,
        progress: ProgressListener | None = None,
        *,
        worker: str | None = None,
    ) -> Run:
        """Execute a claimed run in this process; returns the finished run row.

        ``worker`` is the name the run was claimed with (default: this process's).
        """
        worker = worker or self.worker
        run = self.run(run_id)
        if run.kind not in ("backup", COPY_KIND):
            runs_mod.finish_run(
                self.catalog, run_id, RunState.FAILED, f"unknown run kind {run.kind!r}"
            )
            return self.run(run_id)
        self._execute(run, worker, progress)
        return self.run(run_id)

    def _execute(self, run: Run, worker: str, progress: ProgressListener | None) -> None:
        if run.kind == COPY_KIND:
            execute_copy(self.env, run.id, worker, progress, tz=self.zone())
        else:
            execute_backup(self.env, run.id, worker, progress)

    def run_job(
        self, job_name: str, level: str = "auto", progress: ProgressListener | None = None
    ) -> Run:
        """Queue, claim and execute at once (the CLI's foreground mode).

        The run is created already claimed by this process, so a worker of
        ``tapir serve`` cannot take it in between; the pool's concurrency limit
        does not hold back a run the operator starts in the foreground.
        """
        job = self._check_runnable(job_name, level)
        now = utcnow()
        with self.catalog.session() as s:
            run = Run(
                job_id=job.id,
                kind=_run_kind(job),
                level=level,
                trigger="manual",
                state=RunState.RUNNING,
                queued_at=now,
                started_at=now,
                heartbeat_at=now,
                worker=self.worker,
            )
            s.add(run)
            s.flush()
            run_id = run.id
        self._audit("run.start", job_name, run=run_id, level=level)
        self._execute(self.run(run_id), self.worker, progress)
        return self.run(run_id)

    def cancel_run(self, run_id: int) -> None:
        """Cancel a run: a queued one at once, a running one at its next progress call."""
        state = runs_mod.request_cancel(self.catalog, run_id)
        cancel_locally(run_id)
        runs_mod.log_line(self.catalog, run_id, f"cancel requested by {self._actor()}", "WARNING")
        self._audit("run.cancel", str(run_id), state=state)

    def runs(self, limit: int = 50, job: str | None = None) -> list[Run]:
        """The newest runs first (of one job, when given)."""
        with self.catalog.session() as s:
            q = select(Run).options(selectinload(Run.job)).order_by(Run.id.desc()).limit(limit)
            if job is not None:
                job_id = id_by_name(s, Job, job, "job")
                q = q.where(Run.job_id == job_id)
            return list(s.scalars(q))

    def run(self, run_id: int) -> Run:
        """One run; KeyError when unknown."""
        with self.catalog.session() as s:
            run = s.scalar(select(Run).options(selectinload(Run.job)).where(Run.id == run_id))
            if run is None:
                raise KeyError(f"no run {run_id}")
            return run

    def run_log(self, run_id: int) -> list[tuple[datetime, str, str]]:
        """(time, level, message) of every log line of a run, oldest first."""
        self.run(run_id)
        with self.catalog.session() as s:
            q = select(RunLogLine).where(RunLogLine.run_id == run_id).order_by(RunLogLine.id)
            return [(line.at, line.level, line.message) for line in s.scalars(q)]

    def recover_stale_runs(self) -> list[int]:
        """Mark runs left 'running' by a dead worker as failed; returns their ids.

        A worker killed after storing a manifest but before recording it left a whole
        backup the catalog does not list: the pools of those runs are rescanned so
        that such a point is adopted (and linked to its run) instead of lying unseen.
        """
        ids = runs_mod.recover_stale_runs(self.catalog)
        if ids:
            adopt_orphaned_points(self.env, ids)
        for run_id in ids:
            run_end.run_finished(self.env, run_id)  # retry and notify, as any failed run
        return ids

    def plugin_context(self, plugin: str) -> PluginContext:
        """The narrow context a plugin's role ``plugin`` receives (for plugin CLI commands)."""
        if plugin not in self.registry.media and plugin not in self.registry.sources:
            raise KeyError(f"no plugin role named {plugin!r}")
        return self.env.plugin_context(plugin)

    # Scheduling: time zone, limits, retries, notifications

    def timezone(self) -> str:
        """The appliance's time zone (schedules without their own follow it)."""
        return appliance_settings.timezone(self.catalog, local_timezone())

    def zone(self) -> tzinfo:
        """The appliance's time zone as a tzinfo: GFS retention counts its calendar days."""
        return _zone(self.timezone())

    def set_timezone(self, name: str) -> int:
        """Set the appliance's time zone; returns how many schedules moved to it."""
        old = self.timezone()
        moved = appliance_settings.set_timezone(self.catalog, name)
        self._audit("settings.timezone", name.strip(), previous=old, schedules_moved=moved)
        return moved

    def set_job_limits(
        self,
        name: str,
        *,
        max_concurrent_runs: int | None = None,
        max_retries: int | None = None,
        retry_delay: int | None = None,
        retry_delay_max: int | None = None,
    ) -> Job:
        """Change a job's concurrency limit (0: none) and retry policy; None leaves a field.

        ValueError for a negative number or a delay cap below the delay (nothing saved).
        """
        changes = {
            "max_concurrent_runs": max_concurrent_runs,
            "max_retries": max_retries,
            "retry_delay": retry_delay,
            "retry_delay_max": retry_delay_max,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        for key, value in changes.items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{key} must be a whole number of at least 0, not {value!r}")
        with self.catalog.session() as s:
            row = s.scalar(select(Job).where(Job.name == name))
            if row is None:
                raise KeyError(f"no job named {name!r}")
            delay = changes.get("retry_delay", row.retry_delay)
            cap = changes.get("retry_delay_max", row.retry_delay_max)
            if cap < delay:
                raise ValueError(f"retry_delay_max ({cap} s) is below retry_delay ({delay} s)")
            for key, value in changes.items():
                setattr(row, key, value)
        self._audit("job.limits", name, **changes)
        return self._job(name)

    def set_pool_limit(self, name: str, max_concurrent_runs: int) -> None:
        """How many runs may write into a pool at once (0: no limit)."""
        if not isinstance(max_concurrent_runs, int) or max_concurrent_runs < 0:
            raise ValueError("max_concurrent_runs must be a whole number of at least 0")
        with self.catalog.session() as s:
            row = s.scalar(select(Pool).where(Pool.name == name))
            if row is None:
                raise KeyError(f"no pool named {name!r}")
            row.max_concurrent_runs = max_concurrent_runs or None
        self._audit("pool.limit", name, max_concurrent_runs=max_concurrent_runs)

    def add_notification_target(
        self,
        name: str,
        kind: str,
        config: dict[str, Any],
        *,
        events: list[str] | None = None,
        secret: str | None = None,
    ) -> Any:
        """Add an email or webhook target (see engine/notifications.py); the secret is sealed."""
        target = notifications.add_target(
            self.env, name, kind, config, events=events, secret=secret
        )
        self._audit("notification.add", name, kind=kind, events=target.events, secret=bool(secret))
        return target

    def notification_targets(self) -> list[Any]:
        """Every notification target, by name."""
        return notifications.list_targets(self.env)

    def remove_notification_target(self, name: str) -> None:
        """Delete a target and its sealed secret."""
        notifications.remove_target(self.env, name)
        self._audit("notification.remove", name)

    def test_notification_target(self, name: str) -> notifications.Delivery:
        """Send a test message to one target now; the outcome says whether it arrived."""
        delivery = notifications.send_test(self.env, name)
        self._audit("notification.test", name, error=delivery.error)
        return delivery

    # Tape devices

    def register_device(
        self,
        name: str,
        kind: str,
        address: str,
        *,
        changer: str | None = None,
        drive_number: int | None = None,
        check: bool = True,
    ) -> Device:
        """Register a tape changer or drive (probed with INQUIRY unless ``check`` is off)."""
        device = devices_mod.register_device(
            self.env,
            name,
            kind,
            address,
            changer=changer,
            drive_number=drive_number,
            check=check,
        )
        self._audit("device.register", name, kind=kind, address=address)
        return device

    def devices(self) -> list[Device]:
        return devices_mod.devices(self.env)

    def resolve_device(self, name: str) -> str:
        """A registered device's path or URL."""
        return devices_mod.resolve(self.env, name)

    def remove_device(self, name: str) -> None:
        devices_mod.remove_device(self.env, name)
        self._audit("device.remove", name)

    # Recovery points

    def recovery_points(
        self, asset: str | None = None, job: str | None = None
    ) -> list[RecoveryPoint]:
        """Recovery points, newest first, of one asset (name or external id) and/or job."""
        with self.catalog.session() as s:
            q = _rp_query().order_by(RecoveryPoint.created_at.desc(), RecoveryPoint.id.desc())
            if asset is not None:
                q = q.join(Asset, RecoveryPoint.asset_id == Asset.id).where(
                    (Asset.name == asset) | (Asset.external_id == asset)
                )
            if job is not None:
                job_id = id_by_name(s, Job, job, "job")
                q = q.where(RecoveryPoint.job_id == job_id)
            return list(s.scalars(q))

    def recovery_point(self, ref: str) -> RecoveryPoint:
        """By id or unique id prefix (at least 6 characters); 'JOB:latest' also works."""
        ref = ref.strip()
        if ref.endswith(":latest"):
            rp_id = latest_point_of_job(self.env, ref[: -len(":latest")]).id
        else:
            rp_id = ref
        with self.catalog.session() as s:
            rp = s.scalar(_rp_query().where(RecoveryPoint.id == rp_id))
            if rp is not None:
                return rp
            if len(ref) < 6:
                raise KeyError(f"no recovery point {ref!r} (a prefix needs 6 characters or more)")
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            found = list(
                s.scalars(
                    _rp_query().where(RecoveryPoint.id.like(escaped + "%", escape="\\")).limit(2)
                )
            )
        if not found:
            raise KeyError(f"no recovery point {ref!r}")
        if len(found) > 1:
            raise KeyError(f"recovery point prefix {ref!r} is ambiguous; give more characters")
        return found[0]

    def list_items(
        self, ref: str, path: bytes | None = None, recursive: bool = False
    ) -> Iterator[Item]:
        """Items of a recovery point under ``path`` (default: the top level).

        Without ``recursive``, only the entries directly below ``path`` (and the
        item at ``path`` itself when it is not a directory).
        """
        rp = self.recovery_point(ref)
        prefix = (path or b"").strip(b"/")
        with pools_mod.open_repository(self.env, rp.pool) as repo:
            manifest = repo.read_manifest(rp.id)
            for item in repo.iter_items(manifest):
                if item.path == prefix and item.kind == ItemKind.DIRECTORY:
                    continue  # listing a folder shows what is in it
                if _listed(item.path, prefix, recursive):
                    yield item

    def find(self, pattern: str, job: str | None = None) -> Iterator[tuple[RecoveryPoint, Item]]:
        """Items whose path matches the glob, across recovery points (newest first).

        A pattern without '/' is matched against the base name, one with '/' against
        the whole path.
        """
        whole = "/" in pattern
        for rp in self.recovery_points(job=job):
            with pools_mod.open_repository(self.env, rp.pool) as repo:
                manifest = repo.read_manifest(rp.id)
                for item in repo.iter_items(manifest):
                    text = item.path.decode(errors="surrogateescape")
                    subject = text if whole else text.rsplit("/", 1)[-1]
                    if fnmatch.fnmatchcase(subject, pattern):
                        yield rp, item

    def restore(
        self,
        ref: str,
        paths: list[bytes] | None = None,
        *,
        target: Path | None = None,
        in_place: bool = False,
        overwrite: str = "never",
        progress: ProgressListener | None = None,
        options: dict[str, object] | None = None,
    ) -> RestoreResult:
        """Restore a recovery point (or some of its paths) to ``target`` or in place.

        ``options`` are the plugin's restore options (its ``restore_options()``).
        """
        rp = self.recovery_point(ref)
        validate_restore_target(target, in_place, overwrite)
        self._audit(
            "restore",
            rp.id,
            paths=[p.decode(errors="replace") for p in paths or []],
            destination=str(target) if target else None,
            in_place=in_place,
            overwrite=overwrite,
            options=dict(options or {}),
        )
        _, result = restore_point(
            self.env,
            rp.id,
            self.worker,
            paths,
            target=target,
            in_place=in_place,
            overwrite=overwrite,
            listener=progress,
            options=options,
        )
        return result

    # Restores started from the web panel: in the background, and as a download

    def start_restore(
        self,
        ref: str,
        paths: list[bytes] | None = None,
        *,
        target: Path | None = None,
        in_place: bool = False,
        overwrite: str = "never",
        options: dict[str, object] | None = None,
    ) -> int:
        """Start :meth:`restore` in a thread of this process; returns its run's id.

        The run is recorded (state, progress, log) as a foreground restore records it,
        so the caller follows it like any run; the thread's outcome is the run's state.
        Audited like :meth:`restore`, with the run id. If this process dies, crash
        recovery marks the run failed (its worker names this process).
        """
        rp = self.recovery_point(ref)
        validate_restore_target(target, in_place, overwrite)
        self.registry.source_plugin(rp.plugin)  # KeyError now, before a run row exists
        worker = runs_mod.worker_name(f"restore-{os.urandom(4).hex()}")

        def work() -> None:
            try:
                restore_point(
                    self.env,
                    rp.id,
                    worker,
                    paths,
                    target=target,
                    in_place=in_place,
                    overwrite=overwrite,
                    options=options,
                )
            except Exception as exc:  # recorded in the run row by restore_point
                log.info("background restore of %s failed: %s", rp.id, exc)

        # The copied context keeps the acting user for the plugin's own audit events.
        thread = threading.Thread(
            target=contextvars.copy_context().run, args=(work,), name=worker, daemon=True
        )
        thread.start()
        run_id = self._restore_run_of(worker, thread)
        self._audit(
            "restore",
            rp.id,
            run=run_id,
            paths=[p.decode(errors="replace") for p in paths or []],
            destination=str(target) if target else None,
            in_place=in_place,
            overwrite=overwrite,
            options=dict(options or {}),
        )
        return run_id

    def _restore_run_of(self, worker: str, thread: threading.Thread) -> int:
        # restore_point records its run before any slow step: wait for that row.
        pause = threading.Event()
        while True:
            alive = thread.is_alive()
            with self.catalog.session() as s:
                run_id = s.scalar(select(Run.id).where(Run.worker == worker))
            if run_id is not None:
                return int(run_id)
            if not alive:
                raise TapirError("the restore ended before it was recorded; see the log")
            pause.wait(0.02)

    @contextmanager
    def point_source(
        self, ref: str, paths: list[bytes] | None = None
    ) -> Iterator[tuple[RecoveryPoint, Any]]:
        """A recovery point and a reader of its items and verified data (a RestoreSource).

        For restores that leave the appliance as a stream (the panel's download of
        ``paths``): KeyError naming the paths the point does not hold, else audited
        as a restore with destination "download".
        """
        from .restore import _missing_paths

        rp = self.recovery_point(ref)
        with pools_mod.open_repository(self.env, rp.pool) as repo:
            manifest = repo.read_manifest(rp.id)
            missing = _missing_paths(repo, manifest, paths or [])
            if missing:
                shown = ", ".join(p.decode("utf-8", "backslashreplace") for p in missing)
                raise KeyError(f"not in recovery point {rp.id}: {shown}")
            self._audit(
                "restore",
                rp.id,
                paths=[p.decode(errors="replace") for p in paths or []],
                destination="download",
            )
            yield rp, self.env.reader_factory(repo, manifest)

    def verify(self, ref_or_pool: str, progress: ProgressListener | None = None) -> VerifyReport:
        """Re-read and check every chunk of a recovery point, or of a whole pool."""
        reporter = RunProgress(None, "verify", listener=progress)
        with self.catalog.session() as s:
            pool = s.scalar(select(Pool).where(Pool.name == ref_or_pool))
        if pool is not None:
            with pools_mod.open_repository(self.env, pool) as repo:
                report = repo.verify(None, progress=reporter)
        else:
            rp = self.recovery_point(ref_or_pool)
            with pools_mod.open_repository(self.env, rp.pool) as repo:
                report = repo.verify([rp.id], progress=reporter)
        reporter.flush()
        return report

    def prune(self, dry_run: bool = True, job: str | None = None) -> PrunePlan:
        """Apply retention; a dry run only returns the plan."""
        plan = prune_points(self.env, dry_run=dry_run, job=job, tz=self.zone())
        if not dry_run:
            deleted = [d.recovery_point_id for d in plan.decisions if not d.keep]
            self._audit("prune", job or "*", deleted=deleted)
        return plan

    def gc(self, pool_name: str, dry_run: bool = False) -> GcReport:
        """Delete chunks no manifest references; refused while backups write to the pool."""
        pool = self._pool(pool_name)
        if not dry_run:
            with self.catalog.session() as s:
                busy = s.scalar(
                    select(func.count(Run.id))
                    .join(Job, Run.job_id == Job.id)
                    .where(Job.pool_id == pool.id, Run.state == RunState.RUNNING)
                )
            if busy:
                # A running backup references chunks its manifest does not name yet.
                raise TapirError(
                    f"pool {pool_name!r} has {busy} running run(s); gc would delete their chunks"
                )
        with pools_mod.open_repository(self.env, pool) as repo:
            report = repo.gc(dry_run=dry_run)
        if not dry_run:
            self._audit(
                "gc",
                pool_name,
                chunks=report.chunks_unreferenced,
                bytes=report.bytes_reclaimed,
            )
        return report

    # Files inside image backups (appliance/imagefs): browse, find, restore, download

    @contextmanager
    def image_files(self, ref: str) -> Iterator[Any]:
        """The file systems in a recovery point's disk images (an ``imagefs.PointFiles``).

        The point's pool stays open while the context lasts; only the chunks that a
        listing or a read touches are loaded from it.
        """
        from ..imagefs import PointFiles

        rp = self.recovery_point(ref)
        with pools_mod.open_repository(self.env, rp.pool) as repo:
            source = self.env.reader_factory(repo, repo.read_manifest(rp.id))
            yield PointFiles(source, label=f"recovery point {rp.id}")

    def restore_image_files(
        self, ref: str, addresses: list[str], target: Path, *, overwrite: bool = False
    ) -> Any:
        """Restore files or folders (``DISK:VOLUME/PATH``) of an image point into ``target``.

        Returns an ``imagefs.extract.ExtractReport``; nothing is overwritten unless asked.
        """
        from ..imagefs import parse_address
        from ..imagefs.extract import extract

        parsed = [parse_address(a) for a in addresses]
        with self.image_files(ref) as files:
            rp_id = self.recovery_point(ref).id
            for address in parsed:
                files.stat(address)  # a typo fails before anything is audited or written
            self._audit(
                "restore.image_files",
                rp_id,
                paths=addresses,
                destination=str(target),
                overwrite=overwrite,
            )
            return extract(files, parsed, Path(target), overwrite=overwrite)

    def image_archive(self, ref: str, addresses: list[str], fmt: str = "tar") -> Iterator[bytes]:
        """Files or folders of an image point as a ``tar`` or ``zip`` stream, or one file as is.

        ``fmt`` is ``tar``, ``zip`` or ``file`` (one regular file's bytes).

        The addresses are checked before this returns (bad input raises here); the
        stream then reads the point as it is consumed.
        """
        from ..imagefs import parse_address
        from ..imagefs.archive import FORMATS, archive_stream
        from ..imagefs.selection import check_addresses

        if fmt not in FORMATS:
            raise ValueError(f"unknown archive format {fmt!r} (choose {', '.join(FORMATS)})")
        parsed = [parse_address(a) for a in addresses]
        check_addresses(parsed)
        if fmt == "file" and len(parsed) != 1:
            raise ValueError("a plain file download takes exactly one address")
        rp_id = self.recovery_point(ref).id
        with self.image_files(rp_id) as files:
            for address in parsed:
                entry = files.stat(address)
                if fmt == "file" and entry.kind != "file":
                    raise ValueError(f"{address} is a {entry.kind}; download it as tar or zip")
        self._audit("download.image_files", rp_id, paths=addresses, format=fmt)

        def stream() -> Iterator[bytes]:
            with self.image_files(rp_id) as files:
                yield from archive_stream(files, parsed, fmt)

        return stream()

    def set_legal_hold(self, ref: str, hold: bool) -> None:
        """Place or lift a legal hold: a held point is never pruned."""
        rp = self.recovery_point(ref)
        with self.catalog.session() as s:
            row = s.get(RecoveryPoint, rp.id)
            if row is None:
                raise KeyError(f"no recovery point {ref!r}")
            row.legal_hold = hold
        self._audit("hold" if hold else "unhold", rp.id)

    # Administration: editing and removing pools, policies, jobs and users (engine/admin.py,
    # engine/users.py), protection state (engine/protection.py), appliance information.

    def update_pool(
        self,
        name: str,
        *,
        retention: str | admin_mod.Keep | None = admin_mod.KEEP,
        max_concurrent_runs: int | admin_mod.Keep | None = admin_mod.KEEP,
    ) -> Pool:
        """Set or clear (None) a pool's retention policy and concurrency limit."""
        changes = admin_mod.update_pool(
            self.env, name, retention=retention, max_concurrent_runs=max_concurrent_runs
        )
        if changes.fields:
            self._audit("pool.update", name, **changes.audit_details())
        return self._pool(name)

    def pool_delete_refusals(self, name: str) -> list[str]:
        """Why the pool cannot be deleted now (empty: it can)."""
        return admin_mod.pool_users(self.env, name)

    def delete_pool(self, name: str) -> None:
        """Remove an empty, unused pool from the catalog (its medium's files stay)."""
        pool = admin_mod.delete_pool(self.env, name)
        self._audit("pool.delete", name, media=pool.media, options=dict(pool.options or {}))

    def update_retention_policy(self, name: str, **rules: int | None) -> RetentionPolicy:
        """Replace a policy's rules (a rule not given is cleared)."""
        changes = admin_mod.update_retention_policy(self.env, name, rules)
        if changes.fields:
            self._audit("retention.update", name, **changes.audit_details())
        return next(p for p in self.retention_policies() if p.name == name)

    def delete_retention_policy(self, name: str) -> None:
        """Delete a policy no pool or job uses (TapirError naming them otherwise)."""
        admin_mod.delete_retention_policy(self.env, name)
        self._audit("retention.delete", name)

    def update_job(
        self,
        name: str,
        *,
        options: dict[str, Any] | admin_mod.Keep = admin_mod.KEEP,
        schedule: str | admin_mod.Keep | None = admin_mod.KEEP,
        timezone: str | None = None,
        pool: str | admin_mod.Keep = admin_mod.KEEP,
        retention: str | admin_mod.Keep | None = admin_mod.KEEP,
        freeze_with: list[str] | None = None,
    ) -> Job:
        """Change a job's options (replaced whole), schedule (None: none), pool or policy;
        ``freeze_with`` replaces the application jobs it freezes ([]: none)."""
        if freeze_with is not None:
            frozen = snapshot_freeze_mod.set_freeze_with(self.env, name, freeze_with)
            self._audit("job.freeze_with", name, jobs=frozen)
        changes = admin_mod.update_job(
            self.env,
            name,
            options=options,
            schedule=schedule,
            timezone=timezone,
            pool=pool,
            retention=retention,
            default_timezone=self.timezone(),
        )
        if changes.fields:
            self._audit("job.update", name, **changes.audit_details())
        return self._job(name)

    def set_job_enabled(self, name: str, enabled: bool) -> None:
        """Enable or disable a job (a disabled job is neither scheduled nor startable)."""
        if admin_mod.set_job_enabled(self.env, name, enabled):
            self._audit("job.enable" if enabled else "job.disable", name)

    def delete_job(self, name: str) -> int:
        """Delete a job; its recovery points stay. Returns how many it leaves."""
        points = admin_mod.delete_job(self.env, name)
        self._audit("job.delete", name, recovery_points_kept=points)
        return points

    def preview_rules(self, name: str, include: list[str], exclude: list[str]) -> RuleSelection:
        """What the job would back up with these draft rules (nothing is saved)."""
        return rule_preview.preview_draft(self.env, self._job(name), include, exclude)

    def users(self) -> list[User]:
        """Every panel user, by name."""
        return users_mod.users(self.env)

    def set_user_role(self, username: str, role: str) -> None:
        """Change a user's role (the last admin keeps theirs)."""
        old = users_mod.set_role(self.env, username, role)
        if old != role:
            self._audit("user.role", username, **{"from": old, "to": role})

    def delete_user(self, username: str) -> None:
        """Delete a user and their API tokens (never the last admin)."""
        users_mod.delete_user(self.env, username)
        self._audit("user.delete", username)

    def asset_protection(self, endpoint: str | None = None) -> list[protection_mod.Protection]:
        """Every asset with the jobs protecting it and its last recovery point."""
        return protection_mod.protection(self.env, endpoint)

    def unprotected_assets(self) -> list[protection_mod.Protection]:
        """Present assets no enabled job protects."""
        return protection_mod.unprotected(self.env)

    def about(self) -> dict[str, Any]:
        """Version, home, catalog URL (password masked) and time zone."""
        return about_mod.about(self.settings, self.timezone())

    # Consistency groups (engine/groups.py, group_run.py, group_restore.py)

    def create_group(
        self,
        name: str,
        members: list[str],
        *,
        freeze_window: float | str = groups_mod.DEFAULT_FREEZE_WINDOW,
        schedule: str | None = None,
        timezone: str | None = None,
    ) -> ConsistencyGroup:
        """A consistency group of the jobs ``members`` (application jobs, at least two)."""
        group = groups_mod.create_group(
            self.env,
            name,
            members,
            freeze_window=freeze_window,
            schedule=schedule,
            timezone=timezone or self.timezone(),
        )
        self._audit(
            "group.create",
            name,
            members=members,
            freeze_window=group.freeze_window,
            schedule=schedule,
        )
        return group

    def groups(self) -> list[ConsistencyGroup]:
        """Every consistency group, by name."""
        return groups_mod.list_groups(self.env)

    def group(self, name: str) -> ConsistencyGroup:
        """One consistency group; KeyError when unknown."""
        return groups_mod.get_group(self.env, name)

    def delete_group(self, name: str) -> None:
        """Delete a group and its run records; the members' recovery points stay."""
        runs = groups_mod.delete_group(self.env, name)
        self._audit("group.delete", name, group_runs=runs)

    def run_group(self, name: str, level: str = "auto", trigger: str = "manual") -> GroupRun:
        """Freeze, mark, thaw and back up every member now (in this process)."""
        if level not in LEVELS:
            raise ValueError(f"unknown backup level {level!r} (choose from {', '.join(LEVELS)})")
        self.group(name)
        self._audit("group.run", name, level=level, trigger=trigger)
        grun_id = group_run_mod.run_group(self.env, name, self.worker, level=level, trigger=trigger)
        return self.group_run(grun_id)

    def run_due_groups(self, now: datetime | None = None) -> list[GroupRun]:
        """Run every scheduled group whose time has come (the scheduler's tick calls this)."""
        return [
            self.run_group(name, trigger="schedule")
            for name in groups_mod.due_groups(self.env, now)
        ]

    def group_runs(self, name: str, limit: int = 20) -> list[GroupRun]:
        """A group's runs, newest first, with their members."""
        group = self.group(name)
        with self.catalog.session() as s:
            q = (
                select(GroupRun)
                .options(selectinload(GroupRun.members))
                .where(GroupRun.group_id == group.id)
                .order_by(GroupRun.id.desc())
                .limit(limit)
            )
            return list(s.scalars(q))

    def group_run(self, run_id: int) -> GroupRun:
        """One group run with its members; KeyError when unknown."""
        with self.catalog.session() as s:
            q = select(GroupRun).options(selectinload(GroupRun.members))
            grun = s.scalar(q.where(GroupRun.id == run_id))
            if grun is None:
                raise KeyError(f"no group run {run_id}")
            return grun

    def restore_group(
        self,
        name: str,
        target: Path,
        *,
        run_id: int | None = None,
        options: dict[str, object] | None = None,
        member_options: dict[str, dict[str, object]] | None = None,
        overwrite: str = "never",
    ) -> group_restore_mod.GroupRestore:
        """Restore every member of one group run (default: the newest succeeded) under
        ``target``/<job>, each to the group's mark."""
        self._audit(
            "group.restore",
            name,
            run=run_id,
            destination=str(target),
            options=dict(options or {}),
            member_options=dict(member_options or {}),
        )
        return group_restore_mod.restore_group(
            self.env,
            name,
            target,
            self.worker,
            run_id=run_id,
            options=options,
            member_options=member_options,
            overwrite=overwrite,
        )

    # Pool usage over time and the tape library's state (engine/usage.py)

    def record_pool_usage(self, now: datetime | None = None) -> list[str]:
        """Sample the usage of every pool not sampled within the last hour; the pools sampled.

        Called by the scheduler's tick; a pool whose medium cannot be read is skipped.
        """
        return usage_mod.record_samples(self.catalog, self.pool_usage, now)

    def pool_usage_history(self, name: str, days: int = 90) -> list[dict[str, Any]]:
        """A pool's usage samples (``at``, ``used``, ``free``, ``logical``) of the last days."""
        if not isinstance(days, int) or not 1 <= days <= 3660:
            raise ValueError("days must be a whole number from 1 to 3660")
        return usage_mod.samples(self.catalog, name, usage_mod.days_ago(days))

    def library_status(self) -> usage_mod.LibraryStatus:
        """Drives, cartridge counts and TapeAlerts last seen, from the catalog alone."""
        return usage_mod.library_status(self.catalog)

    def record_tape_alerts(self, drive: str, flags: list[str]) -> None:
        """Remember the TapeAlert flags just read from a drive, for the dashboard."""
        usage_mod.record_tape_alerts(self.catalog, drive, flags)

    # --- a job's schedules (several, each with its level) ---------------------------

    def add_schedule(
        self, job: str, cron: str, *, level: str = "auto", timezone: str | None = None
    ) -> schedules_mod.ScheduleInfo:
        """Add a schedule to a job (e.g. its log every 5 minutes beside a weekly full)."""
        info = schedules_mod.add_schedule(
            self.env, job, cron, level=level, timezone=timezone, default_tz=self.timezone()
        )
        self._audit("job.schedule.add", job, cron=info.cron, level=level, timezone=info.timezone)
        return info

    def job_schedules(self, job: str) -> list[schedules_mod.ScheduleInfo]:
        """Every schedule of a job."""
        return schedules_mod.schedules(self.env, job)

    def remove_schedule(self, job: str, schedule_id: int) -> None:
        """Remove one schedule of a job."""
        schedules_mod.remove_schedule(self.env, job, schedule_id)
        self._audit("job.schedule.remove", job, schedule=schedule_id)


@functools.cache
def _dummy_hash() -> str:
    # Checked against when the user does not exist, so a wrong name costs as much time.
    return security.hash_password("tapir-dummy-password-for-timing")


def _checked_selection(selection: dict[str, Any] | None) -> dict[str, Any]:
    """A job's selection as stored: rules parsed and written back in their canonical form."""
    selection = jsonable(dict(selection or {}))
    rules = RuleSet.from_selection(selection)
    if rules is None:
        return selection
    if selection.get("assets"):
        raise ValueError("give explicit assets as asset=NAME rules when a job has rules")
    return rules.as_selection()


def _job_query() -> Any:
    return select(Job).options(
        selectinload(Job.pool), selectinload(Job.retention_policy), selectinload(Job.schedules)
    )


def _run_kind(job: Job) -> str:
    return COPY_KIND if job.kind == COPY_KIND else "backup"


def _rp_query() -> Any:
    return select(RecoveryPoint).options(
        selectinload(RecoveryPoint.asset),
        selectinload(RecoveryPoint.pool),
        selectinload(RecoveryPoint.job),
    )


def _listed(path: bytes, prefix: bytes, recursive: bool) -> bool:
    if not prefix:
        return recursive or b"/" not in path
    if path == prefix:
        return True
    if not path.startswith(prefix + b"/"):
        return False
    return recursive or b"/" not in path[len(prefix) + 1 :]
