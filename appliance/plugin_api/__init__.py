"""The documented plugin API: the only part of Tapir a plugin may import.

See docs/plugin-guide.md. Everything a plugin needs is re-exported here::

    from tapir.appliance.plugin_api import hookimpl, ApplicationPlugin, Item, ItemKind
"""

from . import attributes
from .attributes import POWER_STATES, normalize_power_state
from .context import (
    AssetInfo,
    EndpointInfo,
    NullProgress,
    OptionSpec,
    PluginContext,
    PoolInfo,
    ProgressReporter,
)
from .data import BackupSink, DiskImage, DiskReadFn, FileWriter, ParentIndex, RestoreSource
from .errors import (
    ChunkCorrupt,
    ChunkMissing,
    ConnectionFailed,
    MediaFull,
    PluginError,
    RunCanceled,
    TapirError,
)
from .hookspecs import PROJECT, hookimpl, hookspec
from .items import ChunkRef, Extent, Item, ItemKind
from .media import (
    VOLUME_LOCATIONS,
    VOLUME_STATES,
    DeviceInfo,
    DeviceLookup,
    VolumeInfo,
    VolumeRegistry,
)
from .roles import (
    ApplicationPlugin,
    BackupLevel,
    BackupRequest,
    BackupResult,
    Capacity,
    HypervisorPlugin,
    MediaPlugin,
    MediaStore,
    RestoreRequest,
    RestoreResult,
    SourcePlugin,
    WriteSession,
)

API_VERSION = 1

__all__ = [
    "API_VERSION",
    "POWER_STATES",
    "PROJECT",
    "VOLUME_LOCATIONS",
    "VOLUME_STATES",
    "ApplicationPlugin",
    "AssetInfo",
    "BackupLevel",
    "BackupRequest",
    "BackupResult",
    "BackupSink",
    "Capacity",
    "ChunkCorrupt",
    "ChunkMissing",
    "ChunkRef",
    "ConnectionFailed",
    "DeviceInfo",
    "DeviceLookup",
    "DiskImage",
    "DiskReadFn",
    "EndpointInfo",
    "Extent",
    "FileWriter",
    "HypervisorPlugin",
    "Item",
    "ItemKind",
    "MediaFull",
    "MediaPlugin",
    "MediaStore",
    "NullProgress",
    "OptionSpec",
    "ParentIndex",
    "PluginContext",
    "PluginError",
    "PoolInfo",
    "ProgressReporter",
    "RestoreRequest",
    "RestoreResult",
    "RestoreSource",
    "RunCanceled",
    "SourcePlugin",
    "TapirError",
    "VolumeInfo",
    "VolumeRegistry",
    "WriteSession",
    "attributes",
    "hookimpl",
    "hookspec",
    "normalize_power_state",
]
