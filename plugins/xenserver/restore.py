"""Restoring a XenServer recovery point: a whole new VM, one disk into a VM, or image files.

- With a target folder: each disk is written there as a sparse raw image
  (``<userdevice>-<VDI uuid>.raw``), through a temporary name renamed when complete.
- Without one, ``restore=vm`` (the default): a new VM is created from the stored
  configuration (``VM.create``), a VDI per disk (``VDI.create``) filled over
  ``/import_raw_vdi``, and attached (``VBD.create``). The running original is
  never touched; the new VM is named ``<name> (restored <time>)`` and halted.
- ``restore=disk`` with ``vm=<uuid or name>`` (and optionally ``disk=<device number
  or VDI uuid>``): one disk restored into a new VDI attached to an existing VM.
- ``sr=<uuid>`` chooses the SR for new VDIs (default: the disk's original SR if
  it still exists, else the pool's default SR).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import XenAPI

from tapir.appliance.plugin_api import (
    Item,
    ItemKind,
    PluginContext,
    PluginError,
    RestoreRequest,
    RestoreResult,
    RestoreSource,
)

from . import connection
from .connection import Connection, ConnectionSettings, failure_code
from .transfer import import_raw

CONFIG_PATH = b"vm.json"
BLOCK = 4 << 20
#: VM.create fields that the pool sets itself or that refer to objects of the old pool.
_NOT_CREATED = ("uuid", "is_a_template", "appliance", "suspend_SR", "protection_policy")


def _disk_items(source: RestoreSource, request: RestoreRequest) -> list[Item]:
    return [i for i in source.items(request.paths) if i.kind == ItemKind.DISK]


def _config(source: RestoreSource) -> dict[str, Any]:
    for item in source.items([CONFIG_PATH]):
        if item.path == CONFIG_PATH:
            with source.open(item) as f:
                return dict(json.loads(f.read().decode("utf-8")))
    raise PluginError("this recovery point holds no VM configuration (vm.json)")


def download(items: list[Item], source: RestoreSource, target: Path, ctx: PluginContext) -> int:
    """Write each disk as a sparse raw image into ``target``; returns bytes written."""
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    for item in items:
        name = f"{item.extra.get('userdevice', 'x')}-{item.extra.get('vdi_uuid', 'disk')}.raw"
        final = target / name
        fd, tmp = tempfile.mkstemp(dir=target, prefix=f".{name}.")
        try:
            image = source.open_disk(item)
            with os.fdopen(fd, "wb") as out:
                offset = 0
                while offset < item.size:
                    ctx.check_canceled()
                    data = image.pread(offset, min(BLOCK, item.size - offset))
                    if data.count(0) != len(data):
                        out.seek(offset)
                        out.write(data)
                    offset += len(data)
                    ctx.progress.advance(bytes_done=len(data), current=name)
                out.truncate(item.size)
            os.replace(tmp, final)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        total += item.size
    return total


def _pick_sr(api: Any, item: Item, wanted: object) -> str:
    for uuid in (wanted, item.extra.get("sr_uuid")):
        if isinstance(uuid, str) and uuid:
            try:
                return str(api.SR.get_by_uuid(uuid))
            except XenAPI.Failure as exc:
                if failure_code(exc) != "UUID_INVALID" or uuid == wanted:
                    raise PluginError(f"SR {uuid} is not in the pool") from None
    pool = api.pool.get_all()[0]
    default = api.pool.get_default_SR(pool)
    if default == "OpaqueRef:NULL":
        raise PluginError("the disk's SR is gone and the pool has no default SR: give sr=<uuid>")
    return str(default)


def _restore_disk(
    conn: Connection,
    item: Item,
    source: RestoreSource,
    vm: str,
    sr: str,
    userdevice: str,
    ctx: PluginContext,
) -> str:
    """A new VDI with the disk's bytes, attached to ``vm``; returns the new VDI's uuid."""
    api = conn.api
    vdi = api.VDI.create(
        {
            "name_label": str(item.extra.get("name", "")) or item.path.decode(),
            "name_description": f"restored by Tapir from recovery point {source.recovery_point_id}",
            "SR": sr,
            "virtual_size": str(item.size),
            "type": "user",
            "sharable": bool(item.extra.get("sharable", False)),
            "read_only": False,
            "other_config": {},
            "xenstore_data": {},
            "sm_config": {},
            "tags": [],
        }
    )
    image = source.open_disk(item)
    try:
        import_raw(
            conn.settings,
            conn.ref,
            str(vdi),
            item.size,
            image.pread,
            progress=lambda n: ctx.progress.advance(bytes_done=n, current=item.path.decode()),
        )
        api.VBD.create(
            {
                "VM": vm,
                "VDI": vdi,
                "userdevice": userdevice,
                "bootable": bool(item.extra.get("bootable", False)),
                "mode": str(item.extra.get("mode", "RW")),
                "type": "Disk",
                "empty": False,
                "other_config": {},
                "qos_algorithm_type": "",
                "qos_algorithm_params": {},
            }
        )
    except BaseException:
        # No half-written disk is left behind.
        try:
            api.VDI.destroy(vdi)
        except Exception as exc:
            ctx.logger.error("could not remove the partly restored VDI %s: %s", vdi, exc)
        raise
    return str(api.VDI.get_uuid(vdi))


def _find_vm(api: Any, wanted: str) -> str:
    try:
        return str(api.VM.get_by_uuid(wanted))
    except XenAPI.Failure as exc:
        if failure_code(exc) != "UUID_INVALID":
            raise
    refs = [r for r in api.VM.get_by_name_label(wanted) if not api.VM.get_is_a_snapshot(r)]
    if len(refs) != 1:
        raise PluginError(
            f"restore=disk: {len(refs)} VMs are called {wanted!r}; give the VM's uuid"
        )
    return str(refs[0])


def restore_point(
    settings: ConnectionSettings | None,
    request: RestoreRequest,
    source: RestoreSource,
    ctx: PluginContext,
) -> RestoreResult:
    """Restore as the request asks (see the module docstring)."""
    result = RestoreResult()
    items = _disk_items(source, request)
    if not items:
        raise PluginError("nothing to restore: no disk in this recovery point matches")
    ctx.progress.set_total(bytes_total=sum(i.size for i in items), items_total=len(items))
    if request.target is not None:
        result.bytes_restored = download(items, source, request.target, ctx)
        result.items_restored = len(items)
        return result
    if settings is None:
        raise PluginError("restoring into the pool needs the job's endpoint")
    mode = str(request.options.get("restore", "vm"))
    if mode not in ("vm", "disk"):
        raise PluginError(f"option restore must be vm or disk, not {mode!r}")
    with connection.session(settings) as conn:
        api = conn.api
        if mode == "disk":
            wanted_vm = request.options.get("vm")
            if not isinstance(wanted_vm, str) or not wanted_vm:
                raise PluginError("restore=disk needs vm=<uuid or name> of the VM to attach it to")
            vm = _find_vm(api, wanted_vm)
            wanted = request.options.get("disk")
            if wanted is not None:
                items = [
                    i
                    for i in items
                    if str(wanted) in (i.extra.get("userdevice"), i.extra.get("vdi_uuid"))
                ]
            if len(items) != 1:
                raise PluginError(
                    f"restore=disk restores one disk; {len(items)} match (give disk=<device "
                    "number or VDI uuid>)"
                )
            sr = _pick_sr(api, items[0], request.options.get("sr"))
            new = _restore_disk(conn, items[0], source, vm, sr, "autodetect", ctx)
            result.warnings.append(f"disk restored as VDI {new}, attached to VM {wanted_vm}")
        else:
            config = _config(source)
            record = {k: v for k, v in config.items() if k not in _NOT_CREATED}
            stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
            record["name_label"] = f"{config.get('name_label', 'VM')} (restored {stamp})"
            vm = api.VM.create(record)
            created: list[str] = []
            try:
                for item in items:
                    sr = _pick_sr(api, item, request.options.get("sr"))
                    created.append(
                        _restore_disk(
                            conn, item, source, vm, sr, str(item.extra.get("userdevice")), ctx
                        )
                    )
            except BaseException:
                # Neither the new VM nor the disks restored so far are left behind.
                try:
                    api.VM.destroy(vm)
                    for uuid in created:
                        api.VDI.destroy(api.VDI.get_by_uuid(uuid))
                except Exception as exc:
                    ctx.logger.error("could not remove the partly restored VM: %s", exc)
                raise
            result.warnings.append(
                f"VM restored as {record['name_label']!r} ({api.VM.get_uuid(vm)}), halted"
            )
        result.items_restored = len(items)
        result.bytes_restored = sum(i.size for i in items)
    return result
