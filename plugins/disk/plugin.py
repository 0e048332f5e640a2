"""The ``disk`` media plugin: pools kept in a folder of a local or mounted file system."""

from __future__ import annotations

from pathlib import Path

from tapir.appliance.plugin_api import (
    MediaPlugin,
    OptionSpec,
    PluginContext,
    PluginError,
    PoolInfo,
    hookimpl,
)

from .layout import create_layout
from .store import DiskStore

__version__ = "0.1.0"


def _pool_path(pool: PoolInfo) -> Path:
    value = pool.options.get("path")
    if not isinstance(value, str | Path) or not str(value).strip():
        raise PluginError(f"disk pool {pool.name!r}: the option 'path' (a folder) is required")
    path = Path(value)
    if not path.is_absolute():
        raise PluginError(f"disk pool {pool.name!r}: 'path' must be absolute, got {str(value)!r}")
    return path


class DiskMediaPlugin(MediaPlugin):
    """Disk pools: chunks in pack files, an index, manifests and config in one folder."""

    name = "disk"
    title = "Disk pool"

    def pool_options(self) -> list[OptionSpec]:
        """A disk pool needs only its folder."""
        return [
            OptionSpec(
                "path",
                type="path",
                required=True,
                help="Absolute path of an empty folder on the disk that holds the pool "
                "(its parent folder must exist, e.g. the disk's mount point).",
            )
        ]

    def create(self, pool: PoolInfo, ctx: PluginContext) -> DiskStore:
        """Initialise an empty folder as a pool; refuses a pool or a folder with other files."""
        path = _pool_path(pool)
        create_layout(path, pool)
        ctx.logger.info("created disk pool %r in %s", pool.name, path)
        return DiskStore(path)

    def open(self, pool: PoolInfo, ctx: PluginContext) -> DiskStore:
        """Open an existing pool; refuses a folder that is not a Tapir disk pool."""
        return DiskStore(_pool_path(pool))


@hookimpl
def tapir_media_plugins() -> list[MediaPlugin]:
    """Register the disk pool medium."""
    return [DiskMediaPlugin()]
