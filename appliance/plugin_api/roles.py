"""The three plugin roles, as abstract interfaces defined by the core.

A plugin implements one or more of these classes and returns instances from the
matching registration hook (see :mod:`.hookspecs`). The engine calls only the
methods declared here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from .context import AssetInfo, EndpointInfo, OptionSpec, PluginContext, PoolInfo
from .data import BackupSink, RestoreSource


class BackupLevel:
    FULL = "full"
    INCREMENTAL = "incremental"
    LOG = "log"


@dataclass
class BackupRequest:
    """One asset to back up within a run."""

    asset: AssetInfo
    level: str  # BackupLevel
    options: dict[str, object] = field(default_factory=dict)  # the job's plugin options
    endpoint: EndpointInfo | None = None


@dataclass
class BackupResult:
    """What a plugin reports after a backup; ``metadata`` is stored with the recovery point."""

    metadata: dict[str, object] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class RestoreRequest:
    """What to restore and where."""

    asset: AssetInfo
    target: Path | None = None  # a local folder; None means the original location
    paths: list[bytes] | None = None  # None: everything
    in_place: bool = False
    overwrite: str = "never"  # never | older | always
    options: dict[str, object] = field(default_factory=dict)
    endpoint: EndpointInfo | None = None


@dataclass
class RestoreResult:
    items_restored: int = 0
    bytes_restored: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: "path: reason" of every item that could not be restored (refused, data damaged...).
    failed: list[str] = field(default_factory=list)


class SourcePlugin(ABC):
    """Common ground of the hypervisor and application roles: things that produce backups."""

    #: Unique plugin name, e.g. "files", "vmware", "postgresql".
    name: str = ""
    #: Human-readable title for the CLI and web panel.
    title: str = ""

    def job_options(self) -> list[OptionSpec]:
        """Options a job using this plugin accepts (the panel builds its form from these)."""
        return []

    def restore_options(self) -> list[OptionSpec]:
        """Options a restore of this plugin's points accepts (``tapir restore --option``).

        They reach :meth:`restore` in ``request.options``, over the job's options
        (a restore option wins over a job option of the same name). The CLI refuses
        names not declared here; the panel builds the restore form from them.
        """
        return []

    def endpoint_options(self) -> list[OptionSpec]:
        """Options to register an endpoint of this plugin (address, user, secret...)."""
        return []

    def capabilities(self) -> set[str]:
        """What the plugin can do, e.g. {"incremental", "quiesce", "file-restore"}."""
        return set()

    @abstractmethod
    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """List the assets an endpoint offers (None: the appliance itself)."""

    def job_assets(
        self, endpoint: EndpointInfo | None, options: dict[str, object], ctx: PluginContext
    ) -> list[AssetInfo]:
        """The assets a job with these options protects, before the job's selection rules.

        The default is everything :meth:`discover` finds on the endpoint. A plugin
        whose assets are defined by the job itself (a set of image files, a list of
        paths on a host) overrides this.
        """
        return self.discover(endpoint, ctx)

    def watch(
        self, endpoint: EndpointInfo, ctx: PluginContext, on_change: Callable[[], None]
    ) -> None:
        """Follow the endpoint's inventory events; call ``on_change()`` when it changed.

        Optional. ``tapir serve`` calls it in a thread of its own for every endpoint
        of a plugin that overrides it; each ``on_change()`` makes the scheduler
        rediscover the endpoint at its next tick instead of waiting for the
        discovery interval (so call it freely: calls between two discoveries
        collapse into one). Block while following events (XenServer's
        ``event.from``, libvirt's domain events) and call ``ctx.check_canceled()``
        at least every few seconds: it raises
        :class:`~.errors.RunCanceled` when the appliance stops, which ends the
        watch. Any other exception is logged and the watch is restarted a minute
        later. The default raises NotImplementedError: the plugin has no event
        feed and scheduled discovery alone keeps the catalog current.
        """
        raise NotImplementedError(f"{self.name} has no inventory events to watch")

    @abstractmethod
    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """Write one recovery point of ``request.asset`` into ``sink``.

        For an incremental, ``sink.parent`` is the previous recovery point. Raise
        :class:`~.errors.PluginError` for failures an operator can act on; the engine
        discards everything written when this method raises.
        """

    @abstractmethod
    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Restore (part of) a recovery point read through ``source``."""


class ApplicationPlugin(SourcePlugin):
    """Guest applications and file systems: databases, mail, directories, a host's files."""

    def freeze(self, asset: AssetInfo, ctx: PluginContext) -> None:
        """Bring the application to a consistent state on disk (before a snapshot)."""
        return None

    def thaw(self, asset: AssetInfo, ctx: PluginContext) -> None:
        """Undo :meth:`freeze`; always called, also when the snapshot failed."""
        return None

    def mark(self, asset: AssetInfo, ctx: PluginContext, label: str) -> dict[str, object]:
        """Name the moment ``asset`` is frozen at, for a consistency group.

        Called between :meth:`freeze` and :meth:`thaw`, while every member of the
        group is frozen. Return a JSON dict that lets a later recovery point go
        back to exactly this moment (PostgreSQL: the restore point ``label`` and
        its WAL position; MariaDB: the binary log file and position read under the
        lock). The group's backup of the asset follows the thaw and receives a
        non-empty dict in ``request.options["consistency_mark"]`` (record it in
        ``BackupResult.metadata``); the catalog keeps it with the group run and
        gives it to :meth:`mark_restore_options` when the group is restored.
        A plugin with the ``"log"`` capability is backed up at level ``log`` after
        the mark (a full first, before the freeze, when the job has none), so that
        its point holds the log up to and past the mark. The default, {}, means
        the asset has no moment to name: its backup after the thaw is its point.
        """
        return {}

    def mark_restore_options(self, mark: dict[str, object]) -> dict[str, object]:
        """The restore options (of :meth:`restore_options`) that bring a point back to
        ``mark``, a dict :meth:`mark` returned; {} restores the point as it is."""
        return {}

    def restore_item(
        self, request: RestoreRequest, item: str, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Restore one application item (a database, a table, a mailbox...)."""
        raise NotImplementedError(f"{self.name} does not offer single item restore")


class HypervisorPlugin(SourcePlugin):
    """Hypervisors: image backups of whole machines through snapshots."""

    @abstractmethod
    def test_connection(self, endpoint: EndpointInfo, ctx: PluginContext) -> None:
        """Log in and out once; raise :class:`~.errors.ConnectionFailed` with the reason."""


@dataclass
class Capacity:
    """Space on a medium, in bytes; None where the medium cannot tell."""

    total: int | None
    used: int
    free: int | None


class WriteSession(ABC):
    """Chunks written during one backup. Nothing is durable or visible before :meth:`commit`."""

    @abstractmethod
    def put_chunk(self, chunk_id: bytes, blob: bytes) -> None:
        """Store one sealed blob (compressed and encrypted by the engine). Thread-safe."""

    @abstractmethod
    def commit(self) -> None:
        """Make every chunk put so far durable (fsync) and findable by later sessions."""

    @abstractmethod
    def abort(self) -> None:
        """Drop what this session wrote that no committed manifest references."""


class MediaStore(ABC):
    """An opened pool medium: a content-addressed store of sealed chunk blobs and manifests."""

    #: Whether :meth:`get_chunk` is cheap enough to call in the middle of a backup.
    #: The engine then completes a disk chunk that changed only in part from the
    #: parent's copy of it, so an incremental reads only the changed bytes from the
    #: source. A medium that must position or mount for a read (tape) says False;
    #: the engine then reads the whole chunk from the source.
    random_reads: bool = True

    @abstractmethod
    def get_config(self, name: str) -> bytes | None:
        """A small named file of the medium (format, wrapped keys), or None."""

    @abstractmethod
    def put_config(self, name: str, data: bytes) -> None:
        """Write a small named file atomically."""

    @abstractmethod
    def begin(self) -> WriteSession:
        """Start a write session."""

    @abstractmethod
    def has_chunk(self, chunk_id: bytes) -> bool:
        """True when a committed chunk with this id exists (deduplication)."""

    @abstractmethod
    def get_chunk(self, chunk_id: bytes) -> bytes:
        """A committed chunk's sealed blob; raises :class:`~.errors.ChunkMissing`."""

    @abstractmethod
    def chunk_ids(self) -> Iterator[bytes]:
        """Every committed chunk id."""

    @abstractmethod
    def put_manifest(self, name: str, blob: bytes) -> None:
        """Store a recovery point's sealed manifest atomically; call after commit."""

    @abstractmethod
    def get_manifest(self, name: str) -> bytes:
        """A sealed manifest; raises FileNotFoundError."""

    @abstractmethod
    def manifests(self) -> list[str]:
        """Names of every stored manifest (so the catalog can be rebuilt from the medium)."""

    @abstractmethod
    def delete_manifest(self, name: str) -> None:
        """Remove a manifest (prune); its chunks stay until garbage collection."""

    @abstractmethod
    def delete_chunks(self, chunk_ids: Iterable[bytes]) -> int:
        """Remove chunks no manifest references; returns bytes reclaimed."""

    @abstractmethod
    def capacity(self) -> Capacity:
        """Space used and free."""

    def can_reference(self, manifest_name: str) -> bool:
        """Whether a backup written now may reference the chunks of this stored point.

        An incremental keeps its parent's unchanged chunks by reference. A medium
        whose deduplication scope is narrower than the pool (a tape pool's media
        set, which must restore on its own) answers False for a point outside the
        scope the next write session will use; the engine then makes a full
        backup. The default, for media that keep every chunk findable, is True.
        """
        return True

    def guard(self, exclusive: bool = False) -> AbstractContextManager[object]:
        """Hold the medium against garbage collection.

        A backup holds a shared guard from its first chunk until its manifest is
        stored, so that chunks it deduplicated against or committed are never
        collected before a manifest references them; garbage collection holds the
        exclusive guard while it decides what is unreferenced and deletes it. The
        guard must work across processes that share the medium. The default does
        no locking, which is right only for a medium one process uses at a time.
        """
        return nullcontext()

    def close(self) -> None:
        """Release files, locks and devices."""
        return None


class MediaPlugin(ABC):
    """A pool backend: disk folders, tape libraries, LTFS..."""

    name: str = ""
    title: str = ""

    def pool_options(self) -> list[OptionSpec]:
        """Options to create a pool of this medium (path, library, drives...)."""
        return []

    @abstractmethod
    def create(self, pool: PoolInfo, ctx: PluginContext) -> MediaStore:
        """Initialise a new, empty medium for ``pool``; refuse one that holds data."""

    @abstractmethod
    def open(self, pool: PoolInfo, ctx: PluginContext) -> MediaStore:
        """Open an existing medium."""
