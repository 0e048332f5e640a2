"""The restore wizard: asset, recovery point, what, where, summary, start.

Pages (``/restore``) walk an operator through the steps; the JSON API
(``/api/v1/recovery-points...``) offers the same to scripts and to the wizard's own
script (``static/restore.js``), which loads the item tree one folder at a time.
A restore runs in a background thread of the panel's process as a run of kind
"restore" (``Appliance.start_restore``), followed on its run page; a download is a
tar stream of the chosen file items. Both are audited with who, what and where.

Files inside the disks of an image point (``static/image-tree.js`` adds them to the tree)
are chosen by their address ``DISK:VOLUME/PATH``; they are restored into a folder while
the request waits (``Appliance.restore_image_files``) or downloaded as a tar or zip
stream from the image download endpoint (``views/image_files.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from werkzeug.wrappers import Response

from ...catalog.models import RecoveryPoint
from ...engine.restore import OVERWRITE_MODES
from ...imagefs import ImageNotFound, parse_address
from ...imagefs.selection import check_addresses
from ...plugin_api.context import OptionSpec
from ...plugin_api.errors import TapirError
from ...plugin_api.items import Item, ItemKind
from .. import option_forms, progress
from ..auth import appliance, json_error
from ..openapi import body, query
from ..roles import requires
from . import restore_tar

bp = Blueprint("restore", __name__, url_prefix="/restore")
api_bp = Blueprint("restore_api", __name__, url_prefix="/api/v1")

DESTINATIONS = ("original", "folder", "download")
MAX_PATHS = 10_000
ARCHIVES = ("tar", "zip")
#: Image files are replaced or kept: the file systems' times do not say "older" reliably.
IMAGE_OVERWRITE = {"never": False, "always": True}


# --- what and where, from a form or a JSON object -------------------------------------


@dataclass
class Plan:
    """One restore as the operator chose it.

    With ``image_files`` the paths are addresses ``DISK:VOLUME/PATH`` inside the point's
    disk images (restored by the imagefs reader, not by the plugin), else item paths.
    """

    point: RecoveryPoint
    paths: list[bytes] = field(default_factory=list)  # empty: the whole point
    destination: str = "original"
    target: Path | None = None
    overwrite: str = "never"
    options: dict[str, Any] = field(default_factory=dict)
    image_files: bool = False
    archive: str = "tar"  # an image-files download: tar or zip

    def paths_text(self) -> list[str]:
        """The paths as shown (and posted back)."""
        return [p.decode("utf-8", "surrogateescape") for p in self.paths]


def restore_specs(point: RecoveryPoint) -> list[OptionSpec]:
    """The restore options the point's plugin declares; KeyError when it is not loaded."""
    return list(appliance().registry.source_plugin(point.plugin).restore_options())


def can_download(point: RecoveryPoint) -> bool:
    """A tar download is offered for file backups only (not disk images or databases)."""
    return point.kind == "files"


def _path_list(raw: Any) -> list[bytes]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(p, str) for p in raw):
        raise ValueError("paths must be a list of strings")
    paths = []
    for text in raw:
        text = text.strip().strip("/")
        if not text:
            continue
        if "\0" in text or any(part in (".", "..") for part in text.split("/")):
            raise ValueError(f"not a path inside the recovery point: {text!r}")
        paths.append(text.encode("utf-8", "surrogateescape"))
    if len(paths) > MAX_PATHS:
        raise ValueError(f"choose at most {MAX_PATHS} paths (or restore the whole point)")
    return sorted(set(paths))


def _image_addresses(point: RecoveryPoint, raw: Any) -> list[str]:
    """The chosen ``DISK:VOLUME/PATH`` addresses of an image point (checked for form only).

    A colon marks an address, unless the text is the path of one of the point's items
    (a disk image file's name may hold a colon). Whole disks and files inside disks
    are not mixed in one restore: they go different ways (the plugin, the imagefs
    reader).
    """
    if point.kind != "image" or not isinstance(raw, list):
        return []
    texts = [t.strip() for t in raw if isinstance(t, str) and t.strip()]
    if not any(":" in t for t in texts):
        return []
    items = {
        i.path.decode("utf-8", "surrogateescape")
        for i in appliance().list_items(point.id, recursive=True)
    }
    addresses = [t for t in texts if ":" in t and t.strip("/") not in items]
    if not addresses:
        return []
    if len(addresses) != len(texts):
        raise ValueError(
            "restore whole disks and files inside disks one at a time (choose one kind)"
        )
    if len(addresses) > MAX_PATHS:
        raise ValueError(f"choose at most {MAX_PATHS} files or folders")
    for text in addresses:
        if "\0" in text or parse_address(text).volume is None:
            raise ValueError(f"{text!r} is not a file or folder address (DISK:VOLUME/PATH)")
    # The same place written twice ("0:1/etc", "0:1/etc/") is chosen once.
    return list(dict.fromkeys(str(parse_address(text)) for text in addresses))


def _image_plan(plan: Plan, addresses: list[str], archive: Any) -> Plan:
    if plan.destination == "original":
        raise ValueError(
            "files inside a disk image are restored into a folder or downloaded, not in place"
        )
    if plan.overwrite not in IMAGE_OVERWRITE:
        raise ValueError(
            "files inside a disk image are kept (never) or replaced (always); "
            f"{plan.overwrite!r} is not offered for them"
        )
    archive = archive or "tar"
    if archive not in ARCHIVES:
        raise ValueError(f"archive must be one of {', '.join(ARCHIVES)}")
    plan.paths = [a.encode("utf-8", "surrogateescape") for a in addresses]
    plan.image_files = True
    plan.archive = archive
    return plan


def make_plan(point: RecoveryPoint, data: Mapping[str, Any], options: dict[str, Any]) -> Plan:
    """Check what and where (ValueError with the reason); nothing is started."""
    destination = data.get("destination") or "original"
    if destination not in DESTINATIONS:
        raise ValueError(f"destination must be one of {', '.join(DESTINATIONS)}")
    overwrite = data.get("overwrite") or "never"
    if overwrite not in OVERWRITE_MODES:
        raise ValueError(f"overwrite must be one of {', '.join(OVERWRITE_MODES)}")
    addresses = _image_addresses(point, data.get("paths"))
    paths = [] if addresses else _path_list(data.get("paths"))
    plan = Plan(point, paths, destination, None, overwrite)
    if destination == "folder":
        raw = data.get("target")
        if not isinstance(raw, str) or not raw.strip():
            raise ValueError("give the folder on the appliance to restore into")
        target = Path(raw.strip())
        if not target.is_absolute():
            raise ValueError("the folder must be an absolute path")
        plan.target = target
    if addresses:
        # The plugin's restore options do not apply: the imagefs reader restores these.
        return _image_plan(plan, addresses, data.get("archive"))
    if destination == "download" and not can_download(point):
        raise ValueError(f"a {point.kind} backup cannot be downloaded as a tar archive")
    declared = {s.name for s in restore_specs(point)}
    unknown = sorted(set(options) - declared)
    if unknown:
        raise ValueError(f"{point.plugin} has no restore option {', '.join(unknown)}")
    plan.options = options
    return plan


def start(plan: Plan) -> int:
    """Start the restore in the background; returns its run id."""
    return appliance().start_restore(
        plan.point.id,
        plan.paths or None,
        target=plan.target,
        in_place=plan.destination == "original",
        overwrite=plan.overwrite,
        options=plan.options or None,
    )


def check_image_files(plan: Plan) -> None:
    """Every chosen address names a file or folder that can be read; nothing is written.

    ImageNotFound names an unknown disk, volume or path; ImageFsError a damaged file
    system or two choices with the same name.
    """
    addresses = [parse_address(text) for text in plan.paths_text()]
    check_addresses(addresses)
    with appliance().image_files(plan.point.id) as files:
        for address in addresses:
            files.stat(address)


def restore_image_files(plan: Plan) -> Any:
    """Restore the chosen image files into the plan's folder now; an ``ExtractReport``."""
    assert plan.target is not None
    return appliance().restore_image_files(
        plan.point.id,
        plan.paths_text(),
        plan.target,
        overwrite=IMAGE_OVERWRITE[plan.overwrite],
    )


def image_download_url(plan: Plan) -> str:
    """The image download endpoint for the chosen addresses (it checks and audits them)."""
    return url_for(
        "image_files_api.image_download",
        point_id=plan.point.id,
        address=plan.paths_text(),
        format=plan.archive,
    )


def restored_message(report: Any, target: Path) -> str:
    """One line for the operator: what a restore of image files wrote, and where."""
    text = (
        f"Restored {report.files} file(s), {report.folders} folder(s) and {report.links} "
        f"link(s), {report.bytes} bytes, into {target}."
    )
    if report.skipped:
        text += f" Skipped (special files): {', '.join(report.skipped)}."
    if report.warnings:
        text += f" Warnings: {'; '.join(report.warnings)}"
    return text


def download(plan: Plan) -> Response:
    """The chosen items as a tar stream; errors found before the first byte are raised."""

    def pieces() -> Any:
        with appliance().point_source(plan.point.id, plan.paths) as (_, source):
            yield b""  # checked and audited: from here on the archive streams
            yield from restore_tar.stream(source, source.items(plan.paths or None))

    stream = stream_with_context(pieces())
    next(stream)  # raises the errors above while an error page can still be sent
    name = f"{plan.point.asset.name}-{plan.point.created_at:%Y%m%d-%H%M%S}.tar"
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return Response(
        stream,
        mimetype="application/x-tar",
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )


# --- listings ------------------------------------------------------------------------


def point_record(rp: RecoveryPoint) -> dict[str, Any]:
    """A recovery point as the wizard and the API show it."""
    return {
        "id": rp.id,
        "asset": rp.asset.name,
        "asset_id": rp.asset_id,
        "plugin": rp.plugin,
        "kind": rp.kind,
        "level": rp.level,
        "created_at": rp.created_at,
        "items": rp.items,
        "bytes": rp.bytes_logical,
        "pool": rp.pool.name,
        "job": rp.job.name if rp.job else None,
        "legal_hold": rp.legal_hold,
        "warnings": rp.warnings,
    }


def item_record(item: Item) -> dict[str, Any]:
    """One entry of the item tree."""
    path = item.path.decode("utf-8", "surrogateescape")
    return {
        "path": path,
        "name": path.rsplit("/", 1)[-1],
        "kind": str(item.kind),
        "size": item.size,
        "mtime": datetime.fromtimestamp(item.mtime_ns / 1e9, UTC) if item.mtime_ns else None,
        # Folders open lazily. A disk is a leaf here: browsing the files inside a disk
        # image is a separate API (restore.js calls the expander registered for "disk").
        "folder": item.kind == ItemKind.DIRECTORY,
    }


def assets_with_points() -> list[dict[str, Any]]:
    """Every asset that has recovery points, with their count and the newest."""
    points = appliance().recovery_points()
    result = []
    for asset_id, group in groupby(sorted(points, key=lambda p: p.asset_id), lambda p: p.asset_id):
        rows = list(group)
        newest = max(rows, key=lambda p: p.created_at)
        result.append(
            {
                "id": asset_id,
                "name": newest.asset.name,
                "plugin": newest.asset.plugin,
                "kind": newest.asset.kind,
                "present": newest.asset.present,
                "points": len(rows),
                "newest": newest.created_at,
            }
        )
    return sorted(result, key=lambda a: (a["name"], a["plugin"]))


def points_of(asset_id: int) -> list[RecoveryPoint]:
    """The asset's recovery points, newest first; KeyError when it has none."""
    points = [p for p in appliance().recovery_points() if p.asset_id == asset_id]
    if not points:
        raise KeyError(f"no recovery points of asset {asset_id}")
    return points


def children(point: RecoveryPoint, path: str) -> list[dict[str, Any]]:
    """The items directly below ``path`` (the top level when empty), folders first."""
    prefix = path.strip("/").encode("utf-8", "surrogateescape")
    if point.kind == "image":
        items = _with_implied_folders(point, prefix)
    else:
        items = [item_record(i) for i in appliance().list_items(point.id, prefix or None)]
    return sorted(items, key=lambda i: (not i["folder"], i["name"]))


def _with_implied_folders(point: RecoveryPoint, prefix: bytes) -> list[dict[str, Any]]:
    """The items below ``prefix``, with the folders their paths imply.

    Image plugins store disks as ``disks/N-NAME`` without an item for ``disks``; the
    tree shows that folder so that the disks can be reached.
    """
    records: dict[bytes, dict[str, Any]] = {}
    for item in appliance().list_items(point.id, prefix or None, recursive=True):
        rel = item.path[len(prefix) + 1 :] if prefix else item.path
        if item.path == prefix or b"/" not in rel:
            records[item.path] = item_record(item)
            continue
        folder = (prefix + b"/" if prefix else b"") + rel.split(b"/", 1)[0]
        if folder not in records:
            name = folder.decode("utf-8", "surrogateescape")
            records[folder] = {
                "path": name,
                "name": name.rsplit("/", 1)[-1],
                "kind": str(ItemKind.DIRECTORY),
                "size": 0,
                "mtime": None,
                "folder": True,
            }
    return list(records.values())


# --- pages ---------------------------------------------------------------------------


def _message(exc: Exception) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


@bp.get("/")
def index() -> str:
    """Step 1: the assets that have recovery points."""
    return render_template("restore/assets.html", assets=assets_with_points())


@bp.get("/assets/<int:asset_id>")
def asset(asset_id: int) -> str | tuple[str, int]:
    """Step 2: the asset's recovery points as a timeline, by day."""
    try:
        points = points_of(asset_id)
    except KeyError as exc:
        return _message(exc), 404
    days = [(day, list(group)) for day, group in groupby(points, key=lambda p: p.created_at.date())]
    return render_template("restore/points.html", asset=points[0].asset, days=days)


@bp.post("/points/<point_id>/hold")
@requires("operator")
def hold(point_id: str) -> Response | tuple[str, int]:
    """Place or lift a point's legal hold (a held point is never pruned); audited."""
    want = request.form.get("hold") == "yes"
    try:
        point = appliance().recovery_point(point_id)
        appliance().set_legal_hold(point.id, want)
    except KeyError as exc:
        return _message(exc), 404
    flash(f"Legal hold {'placed on' if want else 'lifted from'} {point.id[:12]}.", "ok")
    return redirect(url_for("restore.asset", asset_id=point.asset_id), 303)


@bp.get("/points/<point_id>")
@requires("operator")
def choose(point_id: str) -> str | tuple[str, int]:
    """Steps 3 and 4: what (the whole point, or items from the tree) and where."""
    try:
        point = appliance().recovery_point(point_id)
        specs = restore_specs(point)
    except KeyError as exc:
        return _message(exc), 404
    return _choose_page(point, specs, request.args)


def _choose_page(
    point: RecoveryPoint, specs: list[OptionSpec], form: Mapping[str, Any], posted: bool = False
) -> str:
    return render_template(
        "restore/choose.html",
        point=point,
        fields=option_forms.fields(specs, form if posted else None),
        form=form,
        overwrite_modes=OVERWRITE_MODES,
        downloadable=can_download(point),
    )


@bp.post("/points/<point_id>")
@requires("operator")
def summary(point_id: str) -> str | Response | tuple[str, int]:
    """Step 5: the summary; "Start restore" starts it (or the download)."""
    app = appliance()
    try:
        point = app.recovery_point(point_id)
        specs = restore_specs(point)
    except KeyError as exc:
        return _message(exc), 404
    form = request.form
    data = {key: form.get(key) for key in ("destination", "target", "overwrite", "archive")}
    data["paths"] = []
    if form.get("what") == "items":
        data["paths"] = form.getlist("paths") + form.get("more_paths", "").splitlines()
    try:
        if form.get("what") == "items" and not any(p.strip().strip("/") for p in data["paths"]):
            raise ValueError("choose at least one item in the tree, or the whole point")
        plan = make_plan(point, data, option_forms.from_form(specs, form))
        if plan.image_files:
            check_image_files(plan)
    except ImageNotFound as exc:
        flash(str(exc), "error")
        return _choose_page(point, specs, form, posted=True), 404
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return _choose_page(point, specs, form, posted=True), 400
    if plan.image_files:
        return _image_files_step(point, specs, plan)
    if form.get("action") != "start":
        carried = [
            (k, v) for k, vs in form.lists() if k not in ("csrf_token", "action") for v in vs
        ]
        return render_template("restore/summary.html", plan=plan, carried=carried)
    try:
        if plan.destination == "download":
            return download(plan)
        run_id = start(plan)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return _choose_page(point, specs, request.form, posted=True), 400
    flash(f"Restore started (run {run_id}).", "ok")
    return redirect(url_for("restore.run", run_id=run_id))


def _image_files_step(point: RecoveryPoint, specs: list[OptionSpec], plan: Plan) -> Any:
    """The summary, then the restore into a folder or the download, of image files."""
    form = request.form
    if form.get("action") != "start":
        carried = [
            (k, v) for k, vs in form.lists() if k not in ("csrf_token", "action") for v in vs
        ]
        return render_template("restore/summary.html", plan=plan, carried=carried)
    if plan.destination == "download":
        return redirect(image_download_url(plan), 303)
    assert plan.target is not None
    try:
        report = restore_image_files(plan)
    except (ValueError, KeyError, TapirError) as exc:
        flash(_message(exc), "error")
        return _choose_page(point, specs, form, posted=True), 409
    flash(restored_message(report, plan.target), "ok")
    return redirect(url_for("restore.choose", point_id=point.id), 303)


@bp.get("/runs/<int:run_id>")
def run(run_id: int) -> str | tuple[str, int]:
    """A restore run: live progress and its log."""
    try:
        record = progress.run(appliance(), run_id)
    except KeyError as exc:
        return _message(exc), 404
    return render_template("restore/run.html", run=record)


@bp.post("/runs/<int:run_id>/cancel")
@requires("operator")
def cancel(run_id: int) -> Response:
    """Cancel a restore: it stops at its next item."""
    try:
        appliance().cancel_run(run_id)
    except (KeyError, TapirError, ValueError) as exc:
        flash(_message(exc), "error")
    else:
        flash(f"Cancel of run {run_id} requested.", "ok")
    return redirect(url_for("restore.run", run_id=run_id))


# --- JSON API ------------------------------------------------------------------------


@api_bp.errorhandler(ValueError)
def _bad_input(exc: ValueError) -> Response:
    return json_error(str(exc), 400)


@api_bp.errorhandler(KeyError)
def _unknown(exc: KeyError) -> Response:
    return json_error(_message(exc), 404)


@api_bp.errorhandler(TapirError)
def _refused(exc: TapirError) -> Response:
    return json_error(str(exc), 409)


@api_bp.errorhandler(ImageNotFound)
def _no_such_image_file(exc: ImageNotFound) -> Response:
    return json_error(str(exc), 404)


def _json_object() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


_RESTORE_BODY = {
    "type": "object",
    "properties": {
        "paths": {
            "type": "array",
            "items": {"type": "string"},
            "description": "paths inside the point; empty or absent: the whole point",
        },
        "destination": {"type": "string", "enum": list(DESTINATIONS)},
        "target": {"type": "string", "description": "absolute folder (destination folder)"},
        "overwrite": {"type": "string", "enum": list(OVERWRITE_MODES)},
        "options": {"type": "object", "description": "the plugin's restore options"},
        "archive": {
            "type": "string",
            "enum": list(ARCHIVES),
            "description": "image files only: the download's format",
        },
    },
}


@api_bp.get("/restore/assets")
def api_assets() -> Response:
    """Assets that have recovery points, with their count and the newest."""
    return jsonify(assets_with_points())


@api_bp.get("/restore/assets/<int:asset_id>/points")
def api_points(asset_id: int) -> Response:
    """One asset's recovery points, newest first."""
    return jsonify([point_record(p) for p in points_of(asset_id)])


@api_bp.get("/recovery-points/<point_id>")
def api_point(point_id: str) -> Response:
    """One recovery point, with the restore options its plugin declares."""
    point = appliance().recovery_point(point_id)
    record = point_record(point)
    record["restore_options"] = [
        {"name": s.name, "type": s.type, "help": s.help, "default": s.default}
        for s in restore_specs(point)
    ]
    record["downloadable"] = can_download(point)
    return jsonify(record)


@api_bp.get("/recovery-points/<point_id>/items")
@query(("path", "string", "a folder inside the point; default: the top level"))
def api_items(point_id: str) -> Response:
    """The items directly below a folder of a recovery point (the tree, one level)."""
    point = appliance().recovery_point(point_id)
    return jsonify(children(point, request.args.get("path", "")))


@api_bp.post("/recovery-points/<point_id>/restore")
@requires("operator")
@body(_RESTORE_BODY)
def api_restore(point_id: str) -> tuple[Response, int]:
    """Start a restore in the background; answers its run (follow it at /runs/{id}).

    Paths ``DISK:VOLUME/PATH`` of an image point are files inside its disks: they are
    restored into ``target`` before the answer (200, what was written).
    """
    data = _json_object()
    point = appliance().recovery_point(point_id)
    options = option_forms.from_json(restore_specs(point), data.get("options"))
    plan = make_plan(point, data, options)
    if plan.destination == "download":
        raise ValueError("use POST /recovery-points/{id}/download for a download")
    if plan.image_files:
        if options:
            raise ValueError("restore options do not apply to files inside disk images")
        assert plan.target is not None
        report = restore_image_files(plan)
        return jsonify({"target": str(plan.target), **report.to_json()}), 200
    run_id = start(plan)
    return jsonify(progress.run(appliance(), run_id)), 202


@api_bp.post("/recovery-points/<point_id>/hold")
@requires("operator")
@body({"type": "object", "required": ["hold"], "properties": {"hold": {"type": "boolean"}}})
def api_hold(point_id: str) -> Response:
    """Place (``{"hold": true}``) or lift a point's legal hold; a held point is never pruned."""
    data = _json_object()
    want = data.get("hold")
    if not isinstance(want, bool) or set(data) != {"hold"}:
        raise ValueError('the body must be {"hold": true} or {"hold": false}')
    point = appliance().recovery_point(point_id)
    appliance().set_legal_hold(point.id, want)
    return jsonify({"recovery_point": point.id, "legal_hold": want})


@api_bp.post("/recovery-points/<point_id>/download")
@requires("operator")
@body(
    {
        "type": "object",
        "properties": {
            "paths": _RESTORE_BODY["properties"]["paths"],
            "archive": _RESTORE_BODY["properties"]["archive"],
        },
    }
)
def api_download(point_id: str) -> Response:
    """The chosen file items (or the whole point) as a tar stream.

    Paths ``DISK:VOLUME/PATH`` of an image point: a redirect (303) to the image
    download endpoint, as a tar or (``archive``) zip stream.
    """
    data = _json_object()
    point = appliance().recovery_point(point_id)
    plan = make_plan(point, {**data, "destination": "download"}, {})
    if plan.image_files:
        check_image_files(plan)
        return redirect(image_download_url(plan), 303)
    return download(plan)
