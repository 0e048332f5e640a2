"""Pool keys: an AES-256-GCM data key and a BLAKE3 id key, wrapped by the master key."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PoolKeys:
    enc_key: bytes  # 32 bytes, AES-256-GCM
    id_key: bytes  # 32 bytes, keys BLAKE3 so chunk ids reveal nothing about content
