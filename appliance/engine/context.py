"""What the engine's modules share: settings, catalog, plugins, the master key.

The factories for the recovery point writer and reader are attributes so that
tests can swap in small fakes; by default they are the data path's classes.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import security
from ..catalog.database import Catalog
from ..config import Settings
from ..plugin_api.context import NullProgress, PluginContext, PoolInfo, ProgressReporter
from ..plugin_manager import PluginRegistry
from . import usage
from .monitor import RunLogHandler
from .volumes import CatalogDeviceLookup, CatalogVolumeRegistry


def _default_writer(*args: Any, **kwargs: Any) -> Any:
    from ..datapath.sink import RecoveryPointWriter

    return RecoveryPointWriter(*args, **kwargs)


def _default_reader(*args: Any, **kwargs: Any) -> Any:
    from ..datapath.reader import RecoveryPointReader

    return RecoveryPointReader(*args, **kwargs)


@dataclass
class EngineContext:
    """Shared state of one opened appliance."""

    settings: Settings
    catalog: Catalog
    registry: PluginRegistry
    #: RecoveryPointWriter(repo, *, asset, kind, level, job, parent, progress, check_canceled)
    writer_factory: Callable[..., Any] = _default_writer
    #: RecoveryPointReader(repo, manifest)
    reader_factory: Callable[..., Any] = _default_reader
    #: Writes an audit event (action, target, **details); the Appliance sets it so that
    #: changes plugins make (volume rows) are attributed to the acting operator.
    audit: Callable[..., None] | None = None
    _master_key: bytes | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def master_key(self) -> bytes:
        """The appliance's master key, read once."""
        with self._lock:
            if self._master_key is None:
                self._master_key = security.load_master_key(self.settings)
            return self._master_key

    def read_secret(self, name: str) -> str:
        """The plain text of a sealed catalog secret (KeyError when there is none)."""
        key = self.master_key()
        with self.catalog.session() as s:
            return security.read_secret(s, key, name)

    def store_plugin_secret(self, plugin: str, name: str, value: str) -> None:
        """Seal a secret a plugin owns; its name must start with ``<plugin>.``."""
        if not name.startswith(f"{plugin}.") or len(name) <= len(plugin) + 1:
            raise ValueError(
                f"plugin {plugin!r} may only store secrets named {plugin}.<name>, not {name!r}"
            )
        key = self.master_key()
        with self.catalog.session() as s:
            security.store_secret(s, key, name, value)
        if self.audit is not None:
            self.audit("secret.set", name, plugin=plugin)

    def _catalog_calls(self, media: bool) -> dict[str, Callable[..., object]]:
        calls: dict[str, Callable[..., object]] = {"pool_info": self.pool_info}
        if media:
            # What a tape drive last reported, for the dashboard's library status.
            calls["record_tape_alerts"] = functools.partial(usage.record_tape_alerts, self.catalog)
        return calls

    def plugin_audit(self, plugin: str, action: str, target: str = "", **details: Any) -> None:
        """An audit event from ``plugin``: its action is named ``<plugin>.<action>``."""
        if self.audit is not None:
            self.audit(f"{plugin}.{action}", target, **details)

    def plugin_context(
        self,
        plugin: str,
        *,
        run_id: int | None = None,
        progress: ProgressReporter | None = None,
        check_canceled: Callable[[], None] | None = None,
    ) -> PluginContext:
        """The narrow context a plugin call receives."""
        state_dir = self.settings.home / "state" / plugin
        state_dir.mkdir(parents=True, exist_ok=True)
        suffix = f".run{run_id}" if run_id is not None else ""
        logger = logging.getLogger(f"tapir.plugin.{plugin}{suffix}")
        if run_id is not None:
            # The run's log keeps the plugin's INFO lines whatever the root logger's level;
            # every plugin a run involves (its source and its pool's medium) logs into it.
            logger.setLevel(logging.INFO)
            if not any(isinstance(h, RunLogHandler) for h in logger.handlers):
                logger.addHandler(RunLogHandler(self.catalog, run_id))
        media = plugin in self.registry.media
        return PluginContext(
            logger=logger,
            progress=progress or NullProgress(),
            check_canceled=check_canceled or (lambda: None),
            read_secret=self.read_secret,
            store_secret=functools.partial(self.store_plugin_secret, plugin),
            audit=functools.partial(self.plugin_audit, plugin),
            request_operator=functools.partial(self.request_operator, plugin, run_id),
            state_dir=state_dir,
            # Volumes and devices are a media plugin's business only.
            volumes=CatalogVolumeRegistry(self.catalog, self.audit, plugin) if media else None,
            devices=CatalogDeviceLookup(self.catalog) if media else None,
            catalog=self._catalog_calls(media),
        )

    def request_operator(self, plugin: str, run_id: int | None, subject: str, body: str) -> None:
        """A plugin's ``ctx.request_operator``: run log and ``operator-request`` targets."""
        from .run_end import request_operator  # run_end's modules import this one

        request_operator(self, plugin, run_id, subject, body)

    def release_run_loggers(self, run_id: int) -> None:
        """Detach and forget the loggers :meth:`plugin_context` made for a finished run."""
        suffix = f".run{run_id}"
        manager = logging.Logger.manager
        for name in [n for n in list(manager.loggerDict) if n.startswith("tapir.plugin.")]:
            if not name.endswith(suffix):
                continue
            logger = manager.loggerDict.pop(name)
            if isinstance(logger, logging.Logger):
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)

    def pool_info(self, name: str) -> PoolInfo:
        """A pool as its media plugin sees it (the ``pool_info`` catalog look-up)."""
        from .pools import get_pool, pool_info

        return pool_info(get_pool(self, name))
