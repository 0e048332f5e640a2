"""The library under the panel's JSON API: ``/api/v1/tape/...``.

The same actions as the pages, for scripts (API token) and dynamic pages (session
cookie plus ``X-CSRFToken``). GET needs the read-only role, everything else the
operator role (the panel's rule for routes that state none). Errors are
``{"error": "..."}``: 400 malformed input, 404 unknown changer or drive, 409 refused
by the library or the catalog (a full slot, a busy drive, a tape that holds data).
An API client has no confirmation step: ``force`` must be given to overwrite
another pool's or an unknown label, and such an overwrite is audited.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request
from werkzeug.wrappers import Response

from tapir.appliance.plugin_api import TapirError
from tapir.hardware.errors import HardwareError

from . import operations
from .context import tape_context
from .picture import Place, picture

api = Blueprint("tape_api", __name__, url_prefix="/api/v1/tape")


def _error(message: str, status: int) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    return response


@api.errorhandler(ValueError)
def _bad_input(exc: ValueError) -> Response:
    return _error(str(exc), 400)


@api.errorhandler(KeyError)
def _unknown(exc: KeyError) -> Response:
    return _error(str(exc.args[0]) if exc.args else "not found", 404)


@api.errorhandler(TapirError)
@api.errorhandler(HardwareError)
@api.errorhandler(OSError)
def _refused(exc: Exception) -> Response:
    return _error(str(exc), 409)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if data is None and not request.get_data():
        return {}
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{key} is required (a string)")
    return value.strip()


def _number(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{key} must be a whole number >= 0")
    return value


def _place(p: Place) -> dict[str, Any]:
    v = p.volume
    return {
        "element": p.name,
        "full": p.full,
        "barcode": p.barcode,
        "state": p.state,
        "pool": v.pool if v else None,
        "media_set": v.media_set if v else None,
        "labeled": v.labeled if v else None,
        "drive": p.device.name if p.device else None,
        "busy": p.busy or None,
    }


def _changer(name: str) -> None:
    ctx = tape_context()
    assert ctx.devices is not None
    if ctx.devices.get(name).kind != "changer":
        raise KeyError(f"device {name!r} is not a changer")


@api.get("/<changer>")
def library(changer: str) -> Response:
    """The library's drives, slots and mail slots with their cartridges and volume states."""
    _changer(changer)
    ctx = tape_context()
    lib = operations.Library(ctx, changer)
    try:
        pic = picture(ctx, changer, lib.inventory())
    finally:
        lib.close()
    return jsonify(
        {
            "changer": changer,
            "drives": [_place(p) for p in pic.drives],
            "slots": [_place(p) for p in pic.slots],
            "mail_slots": [_place(p) for p in pic.mail_slots],
            "offline": [{"barcode": v.label, "location": v.location} for v in pic.offline],
        }
    )


@api.post("/<changer>/move")
def move(changer: str) -> Response:
    """Move a cartridge: {"source": "slot:1", "target": "slot:6"} (slots and mail slots)."""
    _changer(changer)
    data = _body()
    message = operations.move(tape_context(), changer, _text(data, "source"), _text(data, "target"))
    return jsonify({"message": message})


@api.post("/<changer>/load")
def load(changer: str) -> Response:
    """Load a cartridge into a drive: {"barcode": "TAP001L8", "drive": 0}."""
    _changer(changer)
    data = _body()
    message = operations.load(
        tape_context(), changer, _text(data, "barcode"), _number(data, "drive")
    )
    return jsonify({"message": message})


@api.post("/<changer>/unload")
def unload(changer: str) -> Response:
    """Unload a drive into its cartridge's home slot: {"drive": 0}."""
    _changer(changer)
    message = operations.unload(tape_context(), changer, _number(_body(), "drive"))
    return jsonify({"message": message})


@api.post("/<changer>/inventory")
def inventory(changer: str) -> Response:
    """Read the library's inventory into the catalog; answers what changed."""
    _changer(changer)
    return jsonify(operations.inventory(tape_context(), changer).as_dict())


@api.post("/<changer>/import")
def import_(changer: str) -> Response:
    """Take every cartridge in the mail slots into free storage slots."""
    from ..vault import import_cartridges

    _changer(changer)
    return jsonify(import_cartridges(tape_context(), changer).as_dict())


@api.post("/<changer>/label")
def label(changer: str) -> Response:
    """Label cartridges: {"barcodes": [...], "pool": "NAME" or null, "force": false}."""
    _changer(changer)
    data = _body()
    barcodes = data.get("barcodes")
    if (
        not isinstance(barcodes, list)
        or not barcodes
        or not all(isinstance(b, str) and b.strip() for b in barcodes)
    ):
        raise ValueError("barcodes must be a non-empty list of strings")
    pool = data.get("pool")
    if pool is not None and not isinstance(pool, str):
        raise ValueError("pool must be a string or null (the common scratch pool)")
    force = data.get("force", False)
    if not isinstance(force, bool):
        raise ValueError("force must be true or false")
    outcomes = operations.label(
        tape_context(), changer, [b.strip() for b in barcodes], pool=pool or None, force=force
    )
    return jsonify([o.as_dict() for o in outcomes])


@api.post("/<changer>/export")
def export(changer: str) -> Response:
    """Send a media set to the mail slots: {"pool": ..., "media_set": ..., "note": ...}."""
    from ..vault import export_media_set

    _changer(changer)
    data = _body()
    note = data.get("note", "")
    if not isinstance(note, str):
        raise ValueError("note must be a string")
    report = export_media_set(
        tape_context(),
        _text(data, "pool"),
        changer,
        media_set=_text(data, "media_set"),
        note=note,
    )
    return jsonify(report.as_dict())


@api.post("/<changer>/clean")
def clean(changer: str) -> Response:
    """Clean a drive: {"drive": 0}."""
    from ..cleaning import clean_drive

    _changer(changer)
    ctx = tape_context()
    drive = operations.drive_of(ctx, changer, _number(_body(), "drive"))
    return jsonify(clean_drive(ctx, changer, drive).as_dict())
