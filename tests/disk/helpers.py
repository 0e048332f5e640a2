"""Small helpers shared by the disk pool tests."""

from __future__ import annotations

import random
from pathlib import Path

from tapir.appliance.plugin_api import PoolInfo


def pool_info(path: Path, name: str = "test") -> PoolInfo:
    """A PoolInfo for a disk pool at ``path``."""
    return PoolInfo(id=1, name=name, media="disk", options={"path": str(path)})


def chunk(seed: object, size: int = 1000) -> tuple[bytes, bytes]:
    """A deterministic (32-byte id, blob) pair."""
    rnd = random.Random(str(seed))
    return rnd.randbytes(32), rnd.randbytes(size)
