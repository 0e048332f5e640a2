"""The ``files`` plugin's registration: the file source for physical and virtual servers."""

from __future__ import annotations

import platform
import socket

from tapir.appliance.plugin_api import (
    ApplicationPlugin,
    AssetInfo,
    BackupRequest,
    BackupResult,
    BackupSink,
    EndpointInfo,
    OptionSpec,
    PluginContext,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
    hookimpl,
)

from .backup import FileBackup
from .options import OPTION_SPECS, FilesOptions
from .restorer import FileRestore

__version__ = "0.1.0"

MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


class FilesPlugin(ApplicationPlugin):
    """Backs up and restores the files of the host Tapir runs on (or an agent's host)."""

    name = "files"
    title = "Files and folders"

    def job_options(self) -> list[OptionSpec]:
        """paths, include, exclude, one_file_system, exclude_caches."""
        return list(OPTION_SPECS)

    def capabilities(self) -> set[str]:
        """Incremental backups (unchanged files reuse their chunks) and file restore."""
        return {"incremental", "file-restore"}

    def discover(self, endpoint: EndpointInfo | None, ctx: PluginContext) -> list[AssetInfo]:
        """This host, once: kind "host", named by its hostname, identified by its machine id."""
        hostname = socket.gethostname()
        machine_id = _machine_id()
        return [
            AssetInfo(
                kind="host",
                name=hostname,
                external_id="files:" + (machine_id or hostname),
                metadata={"machine_id": machine_id, "system": platform.system()},
            )
        ]

    def backup(self, request: BackupRequest, sink: BackupSink, ctx: PluginContext) -> BackupResult:
        """Walk the job's paths into ``sink``; unchanged files reuse the parent's chunks."""
        options = FilesOptions.parse(request.options)
        return FileBackup(options, sink, ctx).run()

    def restore(
        self, request: RestoreRequest, source: RestoreSource, ctx: PluginContext
    ) -> RestoreResult:
        """Restore into ``request.target`` (or in place); failures are listed, never hidden."""
        return FileRestore(request, source, ctx).run()


def _machine_id() -> str | None:
    for path in MACHINE_ID_FILES:
        try:
            with open(path, encoding="ascii") as f:
                value = f.read().strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            return value
    return None


@hookimpl
def tapir_application_plugins() -> list[ApplicationPlugin]:
    """Register the file source."""
    return [FilesPlugin()]
