"""The catalog's tables: what is protected, how, where, and what exists.

A recovery point row is written last, after its manifest is durable on the
medium, so a row here always means a whole backup.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back time-zone aware.

    SQLite keeps no zone; without this, rows read back naive and comparisons with
    aware times fail.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the catalog; use an aware UTC time")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class RunState:
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    WARNING = "warning"  # succeeded with warnings
    FAILED = "failed"
    CANCELED = "canceled"
    FINISHED = (SUCCEEDED, WARNING, FAILED, CANCELED)


#: Seconds between two scheduled discoveries of an endpoint unless the operator says otherwise.
DEFAULT_DISCOVERY_INTERVAL = 3600


class Endpoint(Base):
    """A registered source of assets: a vCenter, a XenServer pool, a database server, a host."""

    __tablename__ = "endpoints"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    plugin: Mapped[str] = mapped_column(String(100))
    address: Mapped[str] = mapped_column(String(500), default="")
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret_name: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_discovery_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Seconds between scheduled discoveries; 0 turns scheduled discovery off.
    discovery_interval: Mapped[int] = mapped_column(
        Integer, default=DEFAULT_DISCOVERY_INTERVAL, server_default=str(DEFAULT_DISCOVERY_INTERVAL)
    )
    #: When the scheduler discovers next (None: at its next tick).
    next_discovery_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Why the last discovery failed; None after a successful one.
    last_discovery_error: Mapped[str | None] = mapped_column(Text)
    assets: Mapped[list[Asset]] = relationship(back_populates="endpoint")


class Asset(Base):
    """A discovered thing to protect: a VM, a database, a host's file systems."""

    __tablename__ = "assets"
    __table_args__ = (UniqueConstraint("plugin", "external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id", ondelete="SET NULL"))
    plugin: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(50))
    name: Mapped[str] = mapped_column(String(500))
    external_id: Mapped[str] = mapped_column(String(500))
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    present: Mapped[bool] = mapped_column(Boolean, default=True)  # False: gone from the source
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    endpoint: Mapped[Endpoint | None] = relationship(back_populates="assets")


class RetentionPolicy(Base):
    """How long recovery points are kept. Zero or None in a field means the rule is unused."""

    __tablename__ = "retention_policies"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    keep_within_days: Mapped[int | None] = mapped_column(Integer)
    keep_last: Mapped[int | None] = mapped_column(Integer)
    keep_daily: Mapped[int | None] = mapped_column(Integer)
    keep_weekly: Mapped[int | None] = mapped_column(Integer)
    keep_monthly: Mapped[int | None] = mapped_column(Integer)
    keep_yearly: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Pool(Base):
    """A storage pool: a disk folder, a set of tapes..."""

    __tablename__ = "pools"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    media: Mapped[str] = mapped_column(String(100))  # media plugin name: disk, tape...
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # path, compression...
    encrypted: Mapped[bool] = mapped_column(Boolean, default=False)
    compression: Mapped[str] = mapped_column(String(50), default="zstd:3")
    retention_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("retention_policies.id", ondelete="SET NULL")
    )
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    retention_policy: Mapped[RetentionPolicy | None] = relationship()
    volumes: Mapped[list[Volume]] = relationship(
        back_populates="pool", cascade="all, delete-orphan"
    )


class Volume(Base):
    """One medium of a pool: a disk folder or a tape cartridge.

    States and locations are listed in docs/design/tape.md (and checked by
    engine/volumes.py, the only writer). A tape belongs to one media set of its pool,
    at a sequence number; cleaning cartridges carry the ``cleaning`` flag and count
    their uses.
    """

    __tablename__ = "volumes"
    id: Mapped[int] = mapped_column(primary_key=True)
    pool_id: Mapped[int | None] = mapped_column(ForeignKey("pools.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(200), unique=True)  # barcode or folder label
    uuid: Mapped[str | None] = mapped_column(String(64))  # written in the media label
    state: Mapped[str] = mapped_column(String(30), default="writable")
    location: Mapped[str] = mapped_column(String(200), default="")
    bytes_used: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    media_set: Mapped[str | None] = mapped_column(String(64), index=True)  # media set uuid
    media_set_seq: Mapped[int | None] = mapped_column(Integer)  # 0.. within the set
    worm: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cleaning: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    cleaning_uses: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_written_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    labeled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    media_type: Mapped[str] = mapped_column(String(50), default="", server_default="")
    error_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pool: Mapped[Pool | None] = relationship(back_populates="volumes")


class Job(Base):
    """What to back up (plugin, selection, options), where to (pool) and when (schedules)."""

    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    plugin: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(30), default="backup")
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("endpoints.id", ondelete="SET NULL"))
    selection: Mapped[dict[str, Any]] = mapped_column(default=dict)  # assets or rules
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)  # the plugin's job options
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="RESTRICT"))
    retention_policy_id: Mapped[int | None] = mapped_column(
        ForeignKey("retention_policies.id", ondelete="SET NULL")
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    full_every: Mapped[int | None] = mapped_column(Integer)  # force a full after N incrementals
    max_retries: Mapped[int] = mapped_column(Integer, default=0)
    # Scheduling (migration 0006): runs of this job at once (None or 0: no limit), and
    # the back-off before retry N: retry_delay * 2**(N-1) seconds, at most retry_delay_max.
    max_concurrent_runs: Mapped[int | None] = mapped_column(Integer, default=1, server_default="1")
    retry_delay: Mapped[int] = mapped_column(Integer, default=300, server_default="300")
    retry_delay_max: Mapped[int] = mapped_column(Integer, default=14400, server_default="14400")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    pool: Mapped[Pool] = relationship()
    retention_policy: Mapped[RetentionPolicy | None] = relationship()
    schedules: Mapped[list[Schedule]] = relationship(
        back_populates="job", cascade="all, delete-orphan"
    )


class Schedule(Base):
    """A cron expression that queues a job's runs."""

    __tablename__ = "schedules"
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    cron: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(100), default="UTC")
    level: Mapped[str] = mapped_column(String(30), default="auto")  # auto, full, incremental
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    last_fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: True when no zone was given: ``timezone`` follows the appliance's time zone setting.
    zone_from_appliance: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    job: Mapped[Job] = relationship(back_populates="schedules")


class Run(Base):
    """One execution of a job (or a maintenance task): queued, running, then finished."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_state_queued", "state", "queued_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(30), default="backup")  # backup, restore, verify...
    level: Mapped[str] = mapped_column(String(30), default="auto")
    state: Mapped[str] = mapped_column(String(20), default=RunState.QUEUED)
    trigger: Mapped[str] = mapped_column(String(30), default="manual")  # manual, schedule, retry
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime())  # retry back-off
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid of the claiming worker
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    bytes_total: Mapped[int | None] = mapped_column(BigInteger)
    bytes_done: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_read: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_written: Mapped[int] = mapped_column(
        BigInteger, default=0
    )  # new, after dedup+compression
    items_done: Mapped[int] = mapped_column(BigInteger, default=0)
    current: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    #: The failed run this one retries (trigger "retry").
    retry_of_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    #: Why a queued run is not started yet ("waiting for a slot of pool p"), None otherwise.
    waiting_for: Mapped[str | None] = mapped_column(Text)
    job: Mapped[Job | None] = relationship()
    log: Mapped[list[RunLogLine]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="RunLogLine.id"
    )


class RunLogLine(Base):
    __tablename__ = "run_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(10), default="INFO")
    message: Mapped[str] = mapped_column(Text)
    run: Mapped[Run] = relationship(back_populates="log")


class RecoveryPoint(Base):
    """A whole, committed backup of one asset in one pool. Its manifest names every chunk."""

    __tablename__ = "recovery_points"
    __table_args__ = (Index("ix_rp_asset_created", "asset_id", "created_at"),)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # manifest name on the medium
    asset_id: Mapped[int] = mapped_column(ForeignKey("assets.id", ondelete="RESTRICT"))
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    pool_id: Mapped[int] = mapped_column(ForeignKey("pools.id", ondelete="RESTRICT"))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    parent_id: Mapped[str | None] = mapped_column(String(64))  # previous point of the chain
    kind: Mapped[str] = mapped_column(String(30))  # files, image, application
    level: Mapped[str] = mapped_column(String(30))  # full, incremental, log
    plugin: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    items: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_logical: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_new: Mapped[int] = mapped_column(BigInteger, default=0)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    warnings: Mapped[int] = mapped_column(Integer, default=0)
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    asset: Mapped[Asset] = relationship()
    pool: Mapped[Pool] = relationship()
    job: Mapped[Job | None] = relationship()


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(500))
    role: Mapped[str] = mapped_column(String(20), default="read-only")  # admin, operator, read-only
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AuditEvent(Base):
    """Who changed or restored what, when and from where."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(500), default="")
    remote_addr: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Secret(Base):
    """A credential, sealed with the appliance's master key (never stored in plain text)."""

    __tablename__ = "secrets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Device(Base):
    """A tape library's media changer or tape drive, registered by an operator.

    A drive inside a library names its changer and its drive number there (0..M,
    as `tapir changer status` shows them), so the appliance can load it.
    """

    __tablename__ = "devices"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # changer, drive
    address: Mapped[str] = mapped_column(String(500))  # /dev/sgN or iscsi:// URL
    vendor: Mapped[str] = mapped_column(String(100), default="")
    model: Mapped[str] = mapped_column(String(100), default="")
    serial: Mapped[str] = mapped_column(String(100), default="")
    changer_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"))
    drive_number: Mapped[int | None] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApplianceSetting(Base):
    """One appliance-wide setting (the time zone schedules follow...), as a JSON value."""

    __tablename__ = "appliance_settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class NotificationTarget(Base):
    """Where notifications go (an email address list, a webhook URL) and for which events.

    The SMTP password or webhook signing secret is a sealed :class:`Secret` named
    ``secret_name``, never a column here.
    """

    __tablename__ = "notification_targets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # email, webhook
    events: Mapped[list[Any]] = mapped_column(default=list)  # failure, warning, success...
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)  # host, port, to / url...
    secret_name: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


# Consistency groups (engine/groups.py): several jobs frozen, marked and thawed together.


class ConsistencyGroup(Base):
    """Jobs whose assets are frozen together so that their points share one moment."""

    __tablename__ = "consistency_groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Seconds from the first freeze to the last thaw, at most.
    freeze_window: Mapped[float] = mapped_column(Float, default=10.0)
    schedule: Mapped[str | None] = mapped_column(String(200))  # cron, in ``timezone``
    timezone: Mapped[str] = mapped_column(String(100), default="UTC")
    next_run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    members: Mapped[list[ConsistencyGroupMember]] = relationship(
        back_populates="group",
        cascade="all, delete-orphan",
        order_by="ConsistencyGroupMember.position",
    )


class ConsistencyGroupMember(Base):
    """One job of a group (a job cannot be deleted while a group names it)."""

    __tablename__ = "consistency_group_members"
    __table_args__ = (UniqueConstraint("group_id", "job_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("consistency_groups.id", ondelete="CASCADE"), index=True
    )
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="RESTRICT"))
    position: Mapped[int] = mapped_column(Integer, default=0)
    group: Mapped[ConsistencyGroup] = relationship(back_populates="members")
    job: Mapped[Job] = relationship()


class GroupRun(Base):
    """One run of a group: all members' points share its marks, or none was kept."""

    __tablename__ = "group_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    group_id: Mapped[int] = mapped_column(
        ForeignKey("consistency_groups.id", ondelete="CASCADE"), index=True
    )
    state: Mapped[str] = mapped_column(String(20), default=RunState.RUNNING)
    trigger: Mapped[str] = mapped_column(String(30), default="manual")
    label: Mapped[str] = mapped_column(String(200), default="")  # the marks' name
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    #: Measured seconds from the first freeze call to the last thaw's return.
    freeze_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    members: Mapped[list[GroupRunMember]] = relationship(
        back_populates="group_run", cascade="all, delete-orphan", order_by="GroupRunMember.id"
    )


class GroupRunMember(Base):
    """One asset of one member job in a group run: its mark, its run and its point."""

    __tablename__ = "group_run_members"
    id: Mapped[int] = mapped_column(primary_key=True)
    group_run_id: Mapped[int] = mapped_column(
        ForeignKey("group_runs.id", ondelete="CASCADE"), index=True
    )
    job_name: Mapped[str] = mapped_column(String(200))
    asset_name: Mapped[str] = mapped_column(String(500), default="")
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    recovery_point_id: Mapped[str | None] = mapped_column(String(64))
    mark: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default=RunState.RUNNING)
    error: Mapped[str | None] = mapped_column(Text)
    group_run: Mapped[GroupRun] = relationship(back_populates="members")


from . import web_models as web_models  # noqa: E402  (the panel's tables, same metadata)
