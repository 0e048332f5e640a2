"""Reading and writing datastore files over vCenter's HTTPS file access (``/folder/...``).

vCenter and ESXi serve every datastore file at
``/folder/<path>?dcPath=<datacenter>&dsName=<datastore>`` to a logged-in
session, with HTTP Range requests. That is enough to read a snapshot's base
disk while the snapshot holds it read-only, without a proprietary SDK, and
to upload a restored disk (``PUT``) before a VM is made to use it. The
requests carry the SOAP session's cookie and go through the same TLS settings
(CA, pinned fingerprint) as the SOAP connection.
"""

from __future__ import annotations

import http.client
import re
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

#: The largest descriptor accepted: real ones are well under a kilobyte.
MAX_DESCRIPTOR = 64 * 1024
SECTOR = 512

_DS_PATH = re.compile(r"^\[(?P<ds>[^\]]+)\]\s*(?P<path>.+)$")
# e.g.  RW 41943040 VMFS "disk1-flat.vmdk"   or   RW 2048 FLAT "disk1-flat.vmdk" 0
_EXTENT = re.compile(
    r"^(?P<access>RW|RDONLY|NOACCESS)\s+(?P<sectors>\d+)\s+(?P<type>\w+)"
    r'(?:\s+"(?P<file>[^"]*)"(?:\s+(?P<offset>\d+))?)?\s*$'
)
# Extent types whose file holds the disk's bytes as they are, offset 0 = disk offset 0.
_FLAT_TYPES = frozenset({"FLAT", "VMFS"})


@dataclass(frozen=True)
class DatastorePath:
    """A file on a datastore, as vSphere names it: ``[datastore] folder/file``."""

    datastore: str
    path: str

    @classmethod
    def parse(cls, text: str) -> DatastorePath:
        """``[LocalDS_0] vm1/disk1.vmdk`` into its parts; PluginError when malformed."""
        match = _DS_PATH.match(text.strip())
        if not match:
            raise PluginError(f"not a datastore path: {text!r} (expected '[datastore] path')")
        return cls(match["ds"], match["path"].strip())

    def sibling(self, name: str) -> DatastorePath:
        """A file in the same folder (a descriptor names its extents relative to itself)."""
        folder = self.path.rsplit("/", 1)[0] + "/" if "/" in self.path else ""
        return DatastorePath(self.datastore, folder + name)

    def __str__(self) -> str:
        return f"[{self.datastore}] {self.path}"


@dataclass(frozen=True)
class FlatExtent:
    """The one file holding a flat VMDK's bytes, and how many bytes it holds."""

    file: DatastorePath
    size: int


def flat_extent(descriptor: DatastorePath, text: str) -> FlatExtent:
    """The data file of a monolithic flat disk, from its descriptor's text.

    Anything else (sparse or split disks, several extents, an extent at an offset)
    is refused: reading those needs their grain tables, which this transport does
    not parse, and reading them as flat would store garbage.
    """
    extents = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _EXTENT.match(line)
        if match:
            extents.append(match)
    if not extents:
        raise PluginError(
            f"{descriptor}: no extent found in the disk descriptor (empty, or not a VMDK "
            "descriptor); the datastore transport reads flat VMDKs only"
        )
    if len(extents) != 1:
        raise PluginError(
            f"{descriptor}: the disk has {len(extents)} extents; the datastore transport "
            "reads single-extent flat VMDKs only"
        )
    ext = extents[0]
    kind = ext["type"].upper()
    if kind not in _FLAT_TYPES or not ext["file"]:
        raise PluginError(
            f"{descriptor}: the disk's extent is of type {kind}; the datastore transport "
            "reads flat (FLAT/VMFS) VMDKs only"
        )
    if ext["offset"] not in (None, "0"):
        raise PluginError(f"{descriptor}: the extent starts at sector {ext['offset']}, not 0")
    name = ext["file"]
    if "/" in name or name in (".", ".."):
        raise PluginError(f"{descriptor}: refusing the extent file name {name!r}")
    return FlatExtent(descriptor.sibling(name), int(ext["sectors"]) * SECTOR)


class DatastoreFiles:
    """Reads datastore files of one datacenter through one logged-in session.

    One persistent HTTPS connection is reused for every request. A request that
    fails on a reused connection is tried once more on a fresh one (servers close
    idle keep-alive connections); a second failure is a :class:`ConnectionFailed`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        cookie: str,
        datacenter_path: str,
        timeout: float,
    ) -> None:
        self.host = host
        self.port = port
        self.context = context
        # pyvmomi keeps "name=value; Path=/; HttpOnly": only name=value is sent back.
        self.cookie = cookie.split(";", 1)[0].strip()
        self.datacenter_path = datacenter_path
        self.timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None
        self.requests = 0

    @property
    def address(self) -> str:
        """``host:port`` for messages."""
        return f"{self.host}:{self.port}"

    def url(self, file: DatastorePath) -> str:
        """The request target of a datastore file."""
        query = urlencode({"dcPath": self.datacenter_path, "dsName": file.datastore})
        return f"/folder/{quote(file.path)}?{query}"

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(
        self, file: DatastorePath, headers: dict[str, str], method: str = "GET"
    ) -> tuple[int, bytes]:
        headers = {"Cookie": self.cookie, **headers}
        for attempt in (1, 2):
            fresh = self._conn is None
            if self._conn is None:
                self._conn = http.client.HTTPSConnection(
                    self.host, self.port, context=self.context, timeout=self.timeout
                )
            try:
                self.requests += 1
                self._conn.request(method, self.url(file), headers=headers)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if fresh or attempt == 2 or isinstance(exc, ssl.SSLError | socket.timeout):
                    raise ConnectionFailed(
                        f"lost the connection to {self.address} while reading {file}: "
                        f"{exc or type(exc).__name__}"
                    ) from None
        raise AssertionError("unreachable")

    def _check(self, file: DatastorePath, status: int, body: bytes, expected: int) -> None:
        if status == expected:
            return
        detail = body[:200].decode("utf-8", "replace").strip()
        if status in (401, 403):
            raise ConnectionFailed(
                f"{self.address} refused to serve {file} (HTTP {status}): the session "
                "lacks the Datastore.Browse privilege or has expired"
            )
        if status == 404:
            raise PluginError(f"{file} does not exist on the datastore (HTTP 404)")
        raise PluginError(f"reading {file} from {self.address} failed: HTTP {status} {detail}")

    def read_small(self, file: DatastorePath, limit: int = MAX_DESCRIPTOR) -> bytes:
        """A whole small file (a descriptor); PluginError when it is larger than ``limit``."""
        status, body = self._request(file, {"Range": f"bytes=0-{limit}"})
        if status == 416:  # an empty file has no byte 0
            return b""
        if status not in (200, 206):
            self._check(file, status, body, 200)
        if len(body) > limit:
            raise PluginError(f"{file} is larger than {limit} bytes: not a disk descriptor")
        return body

    def read_range(self, file: DatastorePath, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes of ``file`` from ``offset`` (a Range request)."""
        if length <= 0:
            return b""
        status, body = self._request(file, {"Range": f"bytes={offset}-{offset + length - 1}"})
        if status == 416:
            raise PluginError(f"{file} ends before byte {offset}: the extent is truncated")
        self._check(file, status, body, 206)
        if len(body) != length:
            raise PluginError(
                f"{file}: asked for {length} bytes at {offset}, got {len(body)} "
                "(the extent is shorter than the disk)"
            )
        return body

    def exists(self, file: DatastorePath) -> bool:
        """Whether ``file`` exists on the datastore (a HEAD request)."""
        status, body = self._request(file, {}, method="HEAD")
        if status == 404:
            return False
        self._check(file, status, body, 200)
        return True

    def put(self, file: DatastorePath, length: int, body: Iterable[bytes]) -> None:
        """Upload ``file`` (created or replaced) from ``body``, exactly ``length`` bytes.

        The body is streamed with a Content-Length (ESXi refuses chunked uploads)
        on a connection of its own: a generator cannot be sent twice, so a lost
        connection is a :class:`ConnectionFailed`, never a silent retry.
        """
        conn = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=self.timeout
        )
        headers = {
            "Cookie": self.cookie,
            "Content-Length": str(length),
            "Content-Type": "application/octet-stream",
        }
        try:
            self.requests += 1
            conn.request("PUT", self.url(file), body=_exactly(body, length, file), headers=headers)
            response = conn.getresponse()
            status, answer = response.status, response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise ConnectionFailed(
                f"lost the connection to {self.address} while uploading {file}: "
                f"{exc or type(exc).__name__}"
            ) from None
        finally:
            conn.close()
        if status not in (200, 201, 204):
            detail = answer[:200].decode("utf-8", "replace").strip()
            if status in (401, 403):
                raise ConnectionFailed(
                    f"{self.address} refused the upload of {file} (HTTP {status}): the session "
                    "lacks the Datastore.FileManagement privilege or has expired"
                )
            raise PluginError(f"uploading {file} to {self.address} failed: HTTP {status} {detail}")


def _exactly(body: Iterable[bytes], length: int, file: DatastorePath) -> Iterable[bytes]:
    """``body``, checked to add up to ``length`` bytes (a short body would hang the server)."""
    sent = 0
    for data in body:
        sent += len(data)
        if sent > length:
            raise PluginError(f"{file}: the upload is longer than the announced {length} bytes")
        yield data
    if sent != length:
        raise PluginError(f"{file}: the upload ended after {sent} of {length} bytes")
