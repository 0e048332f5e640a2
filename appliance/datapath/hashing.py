"""Content ids: BLAKE3 of a chunk's plain data, keyed with the pool's id key when encrypted.

Keying the hash on encrypted pools keeps ids from revealing content (nobody without the
key can test whether a pool holds a known file). Plain pools use unkeyed BLAKE3 so any
BLAKE3 tool can check a chunk.
"""

from __future__ import annotations

from collections.abc import Callable

import blake3

ID_LENGTH = 32

ChunkIdFn = Callable[[bytes | memoryview], bytes]


def chunk_id_function(id_key: bytes | None) -> ChunkIdFn:
    """The id function of a pool: keyed BLAKE3 with ``id_key``, plain BLAKE3 without."""
    if id_key is None:

        def plain_id(data: bytes | memoryview) -> bytes:
            return blake3.blake3(data).digest()

        return plain_id
    if len(id_key) != ID_LENGTH:
        raise ValueError(f"id key must be {ID_LENGTH} bytes")
    key = bytes(id_key)

    def keyed_id(data: bytes | memoryview) -> bytes:
        return blake3.blake3(data, key=key).digest()

    return keyed_id
