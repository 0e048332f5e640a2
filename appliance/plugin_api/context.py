"""The narrow view of the appliance that a plugin receives.

A plugin never imports the engine. Everything it may use (a logger, a progress
reporter, cancellation, secrets, a private state folder and a few catalog look-ups)
arrives in a :class:`PluginContext`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .media import DeviceLookup, VolumeRegistry


class ProgressReporter(Protocol):
    """Reports how far a long operation is; the CLI and web panel show bytes, rate and ETA."""

    def set_total(self, bytes_total: int | None = None, items_total: int | None = None) -> None:
        """Announce what is expected, when the plugin knows it (otherwise it stays unknown)."""

    def advance(self, bytes_done: int = 0, items_done: int = 0, current: str | None = None) -> None:
        """Add to the done counters; ``current`` names what is being worked on."""


class NullProgress:
    """A progress reporter that records nothing (tests, dry runs)."""

    def set_total(self, bytes_total: int | None = None, items_total: int | None = None) -> None:
        return None

    def advance(self, bytes_done: int = 0, items_done: int = 0, current: str | None = None) -> None:
        return None


@dataclass(frozen=True)
class AssetInfo:
    """Something to protect, as a plugin discovers it (a VM, a database, a host's files)."""

    kind: str
    name: str
    external_id: str
    metadata: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class EndpointInfo:
    """A registered endpoint (vCenter, XenServer pool, database server, file agent)."""

    name: str
    plugin: str
    address: str
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class PoolInfo:
    """A pool as the media plugin sees it: its name, id and the operator's options."""

    id: int
    name: str
    media: str
    options: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class OptionSpec:
    """An option a plugin accepts (job, endpoint or pool); forms are built from it."""

    name: str
    type: str = "str"  # str, int, bool, path, list[str], secret, choice
    help: str = ""
    required: bool = False
    default: object = None
    choices: tuple[str, ...] = ()


def _no_secret(name: str) -> str:
    raise KeyError(f"no secret store in this context (asked for {name!r})")


def _no_secret_store(name: str) -> None:
    raise RuntimeError(f"no secret store in this context (storing {name!r})")


@dataclass
class PluginContext:
    """Everything a plugin may use from the appliance during one call."""

    logger: logging.Logger
    progress: ProgressReporter = field(default_factory=NullProgress)
    #: Raises :class:`~tapir.appliance.plugin_api.errors.RunCanceled` once the operator cancels.
    check_canceled: Callable[[], None] = lambda: None
    #: Returns the plain text of a named secret (an endpoint password...) or raises KeyError.
    read_secret: Callable[[str], str] = field(default=lambda name: _no_secret(name))
    #: Creates or replaces a sealed secret the plugin owns: its name must start with
    #: ``<plugin name>.`` (ValueError otherwise), so that a plugin never overwrites an
    #: operator's credential. Read it back with ``read_secret``.
    store_secret: Callable[[str, str], None] = field(
        default=lambda name, value: _no_secret_store(name)
    )
    #: Records an audit event ``(action, target, **details)`` attributed to the acting
    #: operator. The action is prefixed with ``<plugin name>.`` by the appliance, so a
    #: plugin's events never pass for the core's. Use it for what an auditor asks about:
    #: keys exported or imported, media overwritten on an operator's word.
    audit: Callable[..., None] = lambda action, target="", **details: None
    #: Asks a person for something the plugin cannot do itself, ``(subject, body)``: put
    #: cartridge X into the library, replace a drive. The request goes to the run's log
    #: and to every notification target that wants ``operator-request`` (email, webhook,
    #: the ``tapir_notify`` hook). It returns at once and never raises; the plugin then
    #: waits, or fails with a clear error, as it would anyway.
    request_operator: Callable[[str, str], None] = lambda subject, body: None
    #: Hypervisor plugins: wrap exactly the call that takes the snapshot (or the backup
    #: start point) in ``with ctx.snapshot_window():``. The appliance freezes the
    #: applications inside the VM that the job names (``freeze_with``) on entry and thaws
    #: them on exit, also when the call raises; keep the block short, the applications
    #: are stopped meanwhile. It never raises for a failed freeze (the snapshot is then
    #: crash-consistent and the run says so). Outside such a job it does nothing.
    snapshot_window: Callable[[], AbstractContextManager[None]] = nullcontext
    #: A folder the plugin owns for caches and state; it survives restarts.
    state_dir: Path | None = None
    #: Catalog look-ups offered to plugins, by name (documented in docs/plugin-guide.md).
    catalog: dict[str, Callable[..., object]] = field(default_factory=dict)
    #: Volume rows of the catalog (media plugins only; None elsewhere).
    volumes: VolumeRegistry | None = None
    #: Registered tape changers and drives by name (media plugins only; None elsewhere).
    devices: DeviceLookup | None = None
