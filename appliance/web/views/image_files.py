"""JSON API for files inside image backups: disks, volumes, folders (one level at a
time, for a lazily loaded tree), search, and downloads as a file, tar or zip stream.

Every path of a point's file systems is an address ``DISK:VOLUME/PATH`` (see
docs/user-guide/file-restore.md, which documents each answer's shape).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flask import Blueprint, jsonify, request, stream_with_context
from werkzeug.wrappers import Response

from ...imagefs import Address, ImageNotFound, parse_address
from ...imagefs.selection import root_name
from ...plugin_api.errors import TapirError
from ..auth import appliance, json_error
from ..openapi import query
from ..roles import requires

bp = Blueprint("image_files_api", __name__, url_prefix="/api/v1/recovery-points/<point_id>/image")

MAX_FOUND = 1000
DOWNLOAD_FORMATS = ("file", "tar", "zip")


@bp.errorhandler(ValueError)
def _bad_input(exc: ValueError) -> Response:
    return json_error(str(exc), 400)


@bp.errorhandler(KeyError)
def _unknown_point(exc: KeyError) -> Response:
    return json_error(str(exc.args[0]) if exc.args else "not found", 404)


@bp.errorhandler(ImageNotFound)
def _not_found(exc: ImageNotFound) -> Response:
    return json_error(str(exc), 404)


@bp.errorhandler(TapirError)
def _unreadable(exc: TapirError) -> Response:
    return json_error(str(exc), 409)


def _address_arg() -> Address:
    text = request.args.get("address", "")
    address = parse_address(text)
    if address.volume is None:
        raise ValueError("address must be DISK:VOLUME or DISK:VOLUME/PATH")
    return address


def _with_address(address: Address, entry: Any) -> dict[str, Any]:
    return {"address": str(address), **entry.to_json()}


@bp.get("/disks")
def image_disks(point_id: str) -> Response:
    """The disks of an image recovery point, with their partition table."""
    with appliance().image_files(point_id) as point:
        return jsonify([point.disk(str(d.index)).to_json() for d in point.disks()])


@bp.get("/disks/<disk>/volumes")
def image_volumes(point_id: str, disk: str) -> Response:
    """The volumes of one disk (partitions, LVM volumes, or the whole disk)."""
    with appliance().image_files(point_id) as point:
        info = point.disk(disk)
        volumes = [
            {**v.to_json(), "address": f"{info.index}:{v.name}/"} for v in point.volumes(disk)
        ]
        return jsonify({"disk": info.to_json(), "volumes": volumes})


@bp.get("/entries")
@query(("address", "string", "DISK:VOLUME/PATH of a folder or file"))
def image_entries(point_id: str) -> Response:
    """One folder's entries (one level), or a file's own entry."""
    address = _address_arg()
    with appliance().image_files(point_id) as point:
        entry = point.stat(address)
        here = Address(address.disk, address.volume, entry.path)
        children = point.ls(here) if entry.is_dir else []
        return jsonify(
            {
                "address": str(here),
                "entry": entry.to_json(),
                "children": [_with_address(here.child(c.name), c) for c in children],
            }
        )


@bp.get("/find")
@query(
    ("address", "string", "DISK:VOLUME/PATH to search below"),
    ("pattern", "string", "a glob on names (with '/': on whole paths)"),
)
def image_find(point_id: str) -> Response:
    """Entries below an address whose name matches a glob (at most 1000)."""
    address = _address_arg()
    pattern = request.args.get("pattern", "")
    if not pattern:
        raise ValueError("pattern is required")
    found = []
    truncated = False
    with appliance().image_files(point_id) as point:
        for where, entry in point.find(address, pattern):
            if len(found) == MAX_FOUND:
                truncated = True
                break
            found.append(_with_address(where, entry))
    return jsonify({"found": found, "truncated": truncated})


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


@bp.get("/download")
@requires("operator")
@query(
    ("address", "string", "DISK:VOLUME/PATH; repeat for several"),
    ("format", "string", "file (one regular file as is), tar or zip; default: file or tar"),
)
def image_download(point_id: str) -> Response:
    """Download a file as is, or files and folders as a tar or zip stream."""
    texts = request.args.getlist("address")
    if not texts:
        raise ValueError("name at least one address")
    addresses = [parse_address(t) for t in texts]
    fmt = request.args.get("format", "")
    if fmt and fmt not in DOWNLOAD_FORMATS:
        raise ValueError(f"format must be one of {', '.join(DOWNLOAD_FORMATS)}")
    app = appliance()
    rp_id = app.recovery_point(point_id).id
    if fmt in ("", "file") and len(addresses) == 1:
        with app.image_files(rp_id) as point:
            entry = point.stat(addresses[0])
        if entry.kind == "file":
            fmt = "file"
    if fmt == "":
        fmt = "tar"
    chunks = app.image_archive(rp_id, texts, fmt)
    name = root_name(addresses[0]) if len(addresses) == 1 else f"{rp_id[:12]}-files"
    mimetype = {
        "file": "application/octet-stream",
        "tar": "application/x-tar",
        "zip": "application/zip",
    }[fmt]
    response = Response(stream_with_context(chunks), mimetype=mimetype)
    filename = name if fmt == "file" else f"{name}.{fmt}"
    response.headers["Content-Disposition"] = _disposition(filename)
    if fmt == "file":
        response.headers["Content-Length"] = str(entry.size)
    return response
