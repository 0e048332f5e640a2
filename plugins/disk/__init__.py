"""The bundled ``disk`` media plugin: disk pools. Format: docs/format/disk-pool.md."""

from .plugin import DiskMediaPlugin, __version__
from .store import DiskStore

__all__ = ["DiskMediaPlugin", "DiskStore", "__version__"]
