"""Where things live inside a pool folder, and how a pool folder is created and recognised.

The marker file is written last when a pool is created, so a folder without it
is not a pool, whatever else it holds.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tapir.appliance.plugin_api import PluginError, PoolInfo

from .files import atomic_write, fsync_dir, make_dir

MARKER = "tapir-disk-pool.json"
FORMAT = "tapir-disk-pool"
FORMAT_VERSION = 1
FOLDERS = ("config", "packs", "index", "manifests", "tmp")
LOCK = "lock"
# A fresh ext2/3/4 file system holds lost+found: a pool may sit at a mount point.
_TOLERATED = {"lost+found"}


@dataclass(frozen=True)
class PoolLayout:
    """The paths of one pool folder."""

    root: Path

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def packs(self) -> Path:
        return self.root / "packs"

    @property
    def index(self) -> Path:
        return self.root / "index"

    @property
    def manifests(self) -> Path:
        return self.root / "manifests"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def pack_dir(self, pack_id: bytes) -> Path:
        """Packs are spread over 256 folders by the first byte of their id."""
        return self.packs / pack_id[:1].hex()

    def pack_path(self, pack_id: bytes) -> Path:
        """The committed location of a pack."""
        return self.pack_dir(pack_id) / f"{pack_id.hex()}.pack"


def _leftover_of_interrupted_create(root: Path, name: str) -> bool:
    path = root / name
    if name in _TOLERATED and path.is_dir():
        return True
    if name in FOLDERS and path.is_dir() and not path.is_symlink():
        return not any(path.iterdir())
    return name == LOCK and path.is_file() and path.stat().st_size == 0


def create_layout(root: Path, pool: PoolInfo) -> PoolLayout:
    """Create an empty pool in ``root``; refuse a folder that holds a pool or other files."""
    if not root.is_absolute():
        raise PluginError(f"disk pool path must be absolute, got {str(root)!r}")
    layout = PoolLayout(root)
    if not root.exists():
        # The parent must exist: creating it too could silently fill the root file
        # system when the disk meant to hold the pool is not mounted.
        if not root.parent.is_dir():
            raise PluginError(
                f"cannot create disk pool {root}: its parent folder {root.parent} does not exist"
            )
        make_dir(root)
    elif not root.is_dir():
        raise PluginError(f"cannot create disk pool at {root}: it is not a folder")
    if layout.marker.exists():
        raise PluginError(f"{root} already holds a Tapir disk pool; open it instead of creating")
    others = sorted(n for n in os.listdir(root) if not _leftover_of_interrupted_create(root, n))
    if others:
        shown = ", ".join(others[:5]) + (" ..." if len(others) > 5 else "")
        raise PluginError(
            f"cannot create disk pool in {root}: the folder is not empty ({shown}); "
            "choose an empty folder"
        )
    for name in FOLDERS:
        make_dir(root / name)
    layout.lock.touch(mode=0o600)
    fsync_dir(root)
    marker = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "pool_uuid": str(uuid.uuid4()),
        "pool_id": pool.id,
        "pool_name": pool.name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write(layout.marker, (json.dumps(marker, indent=2) + "\n").encode())
    return layout


def check_layout(root: Path) -> tuple[PoolLayout, dict[str, object]]:
    """The layout and marker of an existing pool; a clear error when ``root`` is none."""
    layout = PoolLayout(root)
    if not root.is_dir():
        raise PluginError(
            f"disk pool folder {root} does not exist or is not a folder "
            "(is the disk holding it mounted?)"
        )
    try:
        marker = json.loads(layout.marker.read_bytes())
    except FileNotFoundError:
        raise PluginError(
            f"{root} is not a Tapir disk pool: it has no {MARKER} file "
            "(is the right disk mounted? create the pool first)"
        ) from None
    except (OSError, ValueError) as exc:
        raise PluginError(f"{root}: the pool marker {MARKER} is unreadable: {exc}") from exc
    if not isinstance(marker, dict) or marker.get("format") != FORMAT:
        raise PluginError(f"{root} is not a Tapir disk pool: {MARKER} names another format")
    if marker.get("version") != FORMAT_VERSION:
        raise PluginError(
            f"disk pool {root} has format version {marker.get('version')}; "
            f"this Tapir reads version {FORMAT_VERSION}"
        )
    missing = [n for n in FOLDERS if not (root / n).is_dir()]
    if missing:
        raise PluginError(
            f"disk pool {root} is damaged: the folder(s) {', '.join(missing)} are missing"
        )
    if not layout.lock.exists():
        layout.lock.touch(mode=0o600)
    return layout, marker
