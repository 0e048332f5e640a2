"""The ``tape`` blueprint: the library picture and its actions (``/tape``).

Pages only look (read-only role); every POST changes the library and needs the
operator role (the panel's rule for plugin pages that state no role). Anything
that sends cartridges away or overwrites a tape asks for confirmation first; a
label written over another pool's or an unknown label is audited with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from tapir.appliance.plugin_api import PluginContext, TapirError
from tapir.hardware.errors import HardwareError

from ..inventory import is_in_library
from ..labelling import new_cartridges
from . import operations
from .context import tape_context
from .picture import picture

HERE = Path(__file__).parent
bp = Blueprint(
    "tape",
    __name__,
    url_prefix="/tape",
    template_folder=str(HERE / "templates"),
    static_folder=str(HERE / "static"),
    static_url_path="/static",
)

# TransportError (an OSError): the library or drive did not answer at all.
ERRORS = (TapirError, HardwareError, OSError, KeyError, ValueError)


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def _changers(ctx: PluginContext) -> list[str]:
    """Changers named by the tape pools whose volumes the catalog holds."""
    assert ctx.volumes is not None
    names = set()
    for pool in {v.pool for v in ctx.volumes.list() if v.pool}:
        try:
            info: Any = ctx.catalog["pool_info"](pool)
        except KeyError:
            continue
        if info.media == "tape" and (info.options or {}).get("changer"):
            names.add(str(info.options["changer"]))
    return sorted(names)


@bp.get("/")
def index() -> str | Response:
    """Choose a library: the changers of the tape pools, or any registered changer by name."""
    ctx = tape_context()
    wanted = (request.args.get("changer") or "").strip()
    if wanted:
        return redirect(url_for("tape.library", changer=wanted))
    changers = _changers(ctx)
    if len(changers) == 1:
        return redirect(url_for("tape.library", changer=changers[0]))
    return render_template("tape/index.html", changers=changers)


@bp.get("/<changer>")
def library(changer: str) -> str | tuple[str, int]:
    """The picture of the library: drives, slots and mail slots with their cartridges."""
    ctx = tape_context()
    assert ctx.devices is not None and ctx.volumes is not None
    try:
        device = ctx.devices.get(changer)
        if device.kind != "changer":
            raise TapirError(f"device {changer!r} is a {device.kind}, not a changer")
    except ERRORS as exc:
        return render_template("tape/index.html", changers=[], error=_message(exc)), 404
    lib = operations.Library(ctx, changer)
    try:
        pic = picture(ctx, changer, lib.inventory())
    except ERRORS as exc:
        return render_template("tape/unreachable.html", changer=changer, error=_message(exc)), 503
    finally:
        lib.close()
    pools = sorted({v.pool for v in ctx.volumes.list() if v.pool})
    media_sets = sorted(
        {(v.pool, v.media_set) for v in ctx.volumes.list() if v.pool and v.media_set},
        key=lambda pair: (str(pair[0]), str(pair[1])),
    )
    return render_template(
        "tape/library.html",
        pic=pic,
        pools=pools,
        media_sets=media_sets,
        unlabelled=new_cartridges(ctx.volumes.list()),
    )


def _done(changer: str, message: str, category: str = "ok") -> Response:
    flash(message, category)
    return redirect(url_for("tape.library", changer=changer))


@bp.post("/<changer>/move")
def move(changer: str) -> Response:
    """Move a cartridge between slots and mail slots."""
    try:
        message = operations.move(
            tape_context(), changer, request.form.get("source", ""), request.form.get("target", "")
        )
    except ERRORS as exc:
        return _done(changer, f"Move refused: {_message(exc)}", "error")
    return _done(changer, message[0].upper() + message[1:] + ".")


@bp.post("/<changer>/load")
def load(changer: str) -> Response:
    """Load a cartridge into a drive."""
    try:
        message = operations.load(
            tape_context(),
            changer,
            request.form.get("barcode", "").strip(),
            int(request.form.get("drive", "")),
        )
    except ERRORS as exc:
        return _done(changer, f"Load refused: {_message(exc)}", "error")
    return _done(changer, message[0].upper() + message[1:] + ".")


@bp.post("/<changer>/unload")
def unload(changer: str) -> Response:
    """Unload a drive into its cartridge's home slot."""
    try:
        message = operations.unload(tape_context(), changer, int(request.form.get("drive", "")))
    except ERRORS as exc:
        return _done(changer, f"Unload refused: {_message(exc)}", "error")
    return _done(changer, message[0].upper() + message[1:] + ".")


@bp.post("/<changer>/inventory")
def inventory(changer: str) -> str | Response:
    """Read the library's inventory into the catalog and show what changed."""
    try:
        report = operations.inventory(tape_context(), changer)
    except ERRORS as exc:
        return _done(changer, f"Inventory failed: {_message(exc)}", "error")
    lines = [f"new volume {b} (unlabelled scratch)" for b in report.created]
    lines += [f"new cleaning cartridge {b}" for b in report.cleaning_created]
    lines += [f"{b}: {before or 'unknown'} → {after}" for b, before, after in report.moved]
    lines += [f"{b}: not in the library, now offline" for b in report.offline]
    lines += [f"the cartridge in {w} has no readable barcode" for w in report.no_barcode]
    lines.append(f"{report.unchanged} unchanged")
    return render_template("tape/result.html", changer=changer, title="Inventory", lines=lines)


@bp.post("/<changer>/import")
def import_(changer: str) -> str | Response:
    """Take every cartridge in the mail slots into free storage slots."""
    from ..vault import import_cartridges

    try:
        report = import_cartridges(tape_context(), changer)
    except ERRORS as exc:
        return _done(changer, f"Import failed: {_message(exc)}", "error")
    return render_template(
        "tape/result.html", changer=changer, title="Import", lines=report.lines()
    )


@bp.post("/<changer>/export")
def export(changer: str) -> str | Response:
    """Send a media set to the mail slots: first the list to confirm, then the move."""
    from ..vault import export_media_set

    ctx = tape_context()
    assert ctx.volumes is not None
    pool = request.form.get("pool", "").strip()
    media_set = request.form.get("media_set", "").strip()
    if "media_set_ref" in request.form:  # the library page's one select: "pool|uuid"
        pool, _, media_set = request.form["media_set_ref"].partition("|")
    note = request.form.get("note", "").strip()
    if not pool or not media_set:
        return _done(changer, "Export refused: choose a pool's media set", "error")
    volumes = ctx.volumes.list(pool=pool, media_set=media_set)
    if request.form.get("confirmed") != "yes":
        return render_template(
            "tape/confirm_export.html",
            changer=changer,
            pool=pool,
            media_set=media_set,
            note=note,
            volumes=volumes,
        )
    try:
        report = export_media_set(ctx, pool, changer, media_set=media_set, note=note)
    except ERRORS as exc:
        return _done(changer, f"Export failed: {_message(exc)}", "error")
    return render_template(
        "tape/result.html",
        changer=changer,
        title="Export",
        lines=report.lines(),
        vault_link=True,
    )


@bp.post("/<changer>/label")
def label(changer: str) -> str | Response:
    """Label cartridges for a pool: confirm, write, then confirm any overwrite by name."""
    ctx = tape_context()
    assert ctx.volumes is not None
    barcodes = sorted({b.strip() for b in request.form.getlist("barcodes") if b.strip()})
    target = request.form.get("pool_other", "").strip() or request.form.get("pool", "").strip()
    pool = None if target in ("", "(scratch)") else target
    step = request.form.get("step", "confirm")
    if not barcodes:
        return _done(changer, "Label refused: choose at least one cartridge", "error")
    if step == "confirm":
        rows = [ctx.volumes.get(b) for b in barcodes]
        return render_template(
            "tape/confirm_label.html",
            changer=changer,
            pool=pool,
            rows=list(zip(barcodes, rows, strict=True)),
        )
    force = step == "overwrite"
    try:
        outcomes = operations.label(ctx, changer, barcodes, pool=pool, force=force)
    except ERRORS as exc:
        return _done(changer, f"Labelling failed: {_message(exc)}", "error")
    refused = [o for o in outcomes if o.status == "refused"]
    return render_template(
        "tape/label_result.html",
        changer=changer,
        pool=pool,
        outcomes=outcomes,
        refused=refused if not force else [],
    )


@bp.post("/<changer>/clean")
def clean(changer: str) -> Response:
    """Clean a drive with the cleaning cartridge that has the most uses left."""
    from ..cleaning import clean_drive

    ctx = tape_context()
    try:
        drive = operations.drive_of(ctx, changer, int(request.form.get("drive", "")))
        result = clean_drive(ctx, changer, drive)
    except ERRORS as exc:
        return _done(changer, f"Cleaning failed: {_message(exc)}", "error")
    message = (
        f"Cleaned {result.drive} with {result.cartridge} (use {result.uses} of {result.max_uses})."
    )
    if result.retired:
        message += f" {result.cartridge} reached its maximum uses and is retired."
    return _done(changer, message)


@bp.post("/<changer>/alerts")
def alerts(changer: str) -> str | Response:
    """Read a drive's TapeAlert flags (this clears them in the drive)."""
    ctx = tape_context()
    try:
        drive = operations.drive_of(ctx, changer, int(request.form.get("drive", "")))
        flags = operations.tape_alerts(ctx, drive)
    except ERRORS as exc:
        return _done(changer, f"TapeAlert read failed: {_message(exc)}", "error")
    lines = flags or [f"{drive.name}: no TapeAlert flag is active"]
    return render_template(
        "tape/result.html", changer=changer, title=f"TapeAlert flags of {drive.name}", lines=lines
    )


@bp.get("/vault")
def vault() -> str:
    """The cartridges out of the library (offline or in a vault), and when they expire."""
    from ..vault import vault_report

    ctx = tape_context()
    # Which recovery points each cartridge holds needs the appliance's backup list,
    # which the panel does not hand to plugins yet; the rest of the report is whole.
    entries = vault_report(ctx, recovery_points=lambda: [])
    return render_template("tape/vault.html", entries=entries)


def in_library(location: str) -> bool:
    """For templates: the location is a slot, drive or mail slot."""
    return is_in_library(location)


bp.add_app_template_global(in_library, "tape_in_library")
