"""Sealing: how one chunk's plain data becomes the opaque blob a medium stores.

Layout (see docs/format/chunks-and-manifests.md)::

    byte 0      0xB1: magic and format version 1
    byte 1      flags: bit 0 compressed (zstd), bit 1 encrypted (AES-256-GCM)
    encrypted:  12-byte nonce, then ciphertext + 16-byte tag of the payload,
                associated data = bytes 0-1 + the chunk id
    otherwise:  the payload
    payload:    a zstd frame (compressed) or the plain data

Binding the chunk id into the associated data means a blob copied or moved to another
id fails authentication. :meth:`BlobSealer.unseal` also recomputes the content id of the
plain data, so it never returns data other than what the id names.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..plugin_api.errors import ChunkCorrupt, TapirError
from .hashing import ChunkIdFn

BLOB_MAGIC = 0xB1
FLAG_COMPRESSED = 0x01
FLAG_ENCRYPTED = 0x02
_KNOWN_FLAGS = FLAG_COMPRESSED | FLAG_ENCRYPTED
HEADER_LENGTH = 2
NONCE_LENGTH = 12
TAG_LENGTH = 16
#: Upper bound of a chunk's plain size when unsealing (decompression-bomb guard).
MAX_PLAIN_LENGTH = 64 * 1024 * 1024


@dataclass(frozen=True)
class Compression:
    """A parsed compression setting: zstd at ``level``, or off when ``level`` is None."""

    level: int | None

    @classmethod
    def parse(cls, spec: str) -> Compression:
        """Parse ``"zstd:N"`` (N from 1 to 22), ``"zstd"`` (level 3) or ``"none"``."""
        text = spec.strip().lower()
        if text == "none":
            return cls(None)
        if text == "zstd":
            return cls(3)
        name, sep, level = text.partition(":")
        if name == "zstd" and sep and level.isdigit() and 1 <= int(level) <= 22:
            return cls(int(level))
        raise TapirError(f"unknown compression {spec!r}: use 'zstd:N' (N 1-22) or 'none'")

    def __str__(self) -> str:
        return "none" if self.level is None else f"zstd:{self.level}"


class BlobSealer:
    """Seals and unseals chunk blobs for one pool. Thread-safe."""

    def __init__(
        self,
        *,
        compression: Compression,
        enc_key: bytes | None,
        chunk_id: ChunkIdFn,
        max_plain_length: int = MAX_PLAIN_LENGTH,
    ) -> None:
        self.compression = compression
        self._aead = AESGCM(enc_key) if enc_key is not None else None
        self._chunk_id = chunk_id
        self._max_plain = max_plain_length
        # zstd contexts are not thread-safe; each worker thread keeps its own.
        self._local = threading.local()

    @property
    def encrypted(self) -> bool:
        """True when blobs are encrypted."""
        return self._aead is not None

    def _compressor(self) -> zstandard.ZstdCompressor:
        comp = getattr(self._local, "compressor", None)
        if comp is None:
            comp = zstandard.ZstdCompressor(level=self.compression.level or 3)
            self._local.compressor = comp
        return comp

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        dec = getattr(self._local, "decompressor", None)
        if dec is None:
            dec = zstandard.ZstdDecompressor()
            self._local.decompressor = dec
        return dec

    def seal(self, data: bytes | memoryview, chunk_id: bytes) -> bytes:
        """The blob for ``data`` stored under ``chunk_id`` (its content id)."""
        flags = 0
        payload: bytes | memoryview = data
        if self.compression.level is not None and len(data):
            packed = self._compressor().compress(data)
            if len(packed) < len(data):
                payload, flags = packed, FLAG_COMPRESSED
        if self._aead is None:
            return bytes((BLOB_MAGIC, flags)) + payload
        flags |= FLAG_ENCRYPTED
        header = bytes((BLOB_MAGIC, flags))
        nonce = os.urandom(NONCE_LENGTH)
        return header + nonce + self._aead.encrypt(nonce, payload, header + chunk_id)

    def unseal(self, blob: bytes, chunk_id: bytes) -> bytes:
        """The plain data of ``blob``, authenticated and checked against ``chunk_id``.

        Raises :class:`ChunkCorrupt` naming the chunk on any mismatch.
        """
        if len(blob) < HEADER_LENGTH or blob[0] != BLOB_MAGIC:
            raise ChunkCorrupt(chunk_id, "not a Tapir blob (bad magic or truncated)")
        flags = blob[1]
        if flags & ~_KNOWN_FLAGS:
            raise ChunkCorrupt(chunk_id, f"unknown blob flags {flags:#04x}")
        encrypted = bool(flags & FLAG_ENCRYPTED)
        if encrypted != self.encrypted:
            state = "encrypted" if encrypted else "unencrypted"
            raise ChunkCorrupt(chunk_id, f"blob is {state}, unlike this pool")
        payload: bytes | memoryview = memoryview(blob)[HEADER_LENGTH:]
        if self._aead is not None:
            if len(payload) < NONCE_LENGTH + TAG_LENGTH:
                raise ChunkCorrupt(chunk_id, "encrypted blob truncated")
            try:
                payload = self._aead.decrypt(
                    payload[:NONCE_LENGTH], payload[NONCE_LENGTH:], blob[:HEADER_LENGTH] + chunk_id
                )
            except InvalidTag:
                raise ChunkCorrupt(
                    chunk_id, "authentication failed (damaged, or stored under another id)"
                ) from None
        if flags & FLAG_COMPRESSED:
            try:
                # max_output_size only bounds frames without a recorded content size.
                declared = zstandard.frame_content_size(payload)
                if declared > self._max_plain:
                    raise zstandard.ZstdError(f"frame declares {declared} bytes")
                plain = self._decompressor().decompress(payload, max_output_size=self._max_plain)
            except zstandard.ZstdError as exc:
                raise ChunkCorrupt(chunk_id, f"cannot decompress: {exc}") from None
        else:
            plain = bytes(payload)
        if self._chunk_id(plain) != chunk_id:
            raise ChunkCorrupt(chunk_id, "content hash does not match the chunk id")
        return plain
