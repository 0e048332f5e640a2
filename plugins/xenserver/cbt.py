"""Changed block tracking: the bitmap ``VDI.list_changed_blocks`` answers, as byte extents.

The answer is base64 text of a bitmap with one bit per 64 KiB block of the VDI,
the most significant bit of the first byte standing for block 0.
"""

from __future__ import annotations

import base64
import binascii

from tapir.appliance.plugin_api import Extent, PluginError

BLOCK = 64 * 1024


def changed_extents(bitmap_b64: str, size: int) -> list[Extent]:
    """Merged extents of the changed blocks, clipped to ``size`` bytes."""
    try:
        bitmap = base64.b64decode(bitmap_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PluginError(f"list_changed_blocks answered a malformed bitmap: {exc}") from None
    blocks = (size + BLOCK - 1) // BLOCK
    if len(bitmap) * 8 < blocks and any(bitmap):
        # A shorter bitmap than the disk means the disk grew: refuse to guess.
        raise PluginError(
            f"the changed block bitmap covers {len(bitmap) * 8} blocks, the disk has {blocks}"
        )
    extents: list[Extent] = []
    start: int | None = None
    for i in range(blocks):
        byte = bitmap[i // 8] if i // 8 < len(bitmap) else 0
        changed = bool(byte & (0x80 >> (i % 8)))
        if changed and start is None:
            start = i
        elif not changed and start is not None:
            extents.append(_extent(start, i, size))
            start = None
    if start is not None:
        extents.append(_extent(start, blocks, size))
    return extents


def _extent(first: int, end: int, size: int) -> Extent:
    offset = first * BLOCK
    return Extent(offset, min(end * BLOCK, size) - offset)
