"""A protocol-faithful XAPI test server: XML-RPC and the raw VDI HTTP handlers on 127.0.0.1.

No XenServer or XCP-ng can run here and no XAPI simulator is packaged, so the
tests talk to this server through the real ``XenAPI`` library. It speaks XAPI's
wire protocol as the XenAPI reference documents it:

- XML-RPC ``POST /`` with the result envelope ``{"Status": "Success", "Value": ...}``
  or ``{"Status": "Failure", "ErrorDescription": [CODE, params...]}``; the first
  parameter of every call but ``session.login_with_password`` is the session
  reference; 64-bit integers travel as strings (XML-RPC's ints are 32-bit).
- Real error codes: SESSION_AUTHENTICATION_FAILED, SESSION_INVALID, HOST_IS_SLAVE
  (with the master's address), HANDLE_INVALID, MESSAGE_METHOD_UNKNOWN,
  MESSAGE_PARAMETER_COUNT_MISMATCH, VDI_IN_USE, SR_OPERATION_NOT_SUPPORTED,
  VDI_NO_CBT_METADATA, VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED, UUID_INVALID.
- ``GET /export_raw_vdi?session_id=&vdi=&format=raw`` streams a VDI's real bytes
  from a file; ``PUT /import_raw_vdi?session_id=&vdi=&format=raw`` writes them.
- ``VDI.list_changed_blocks`` answers a base64 bitmap, one bit per 64 KiB block,
  the most significant bit of the first byte for block 0, computed from real
  block differences (see :class:`Xapi`).

Scope and deliberate differences (documented in docs/plugins/xenserver.md):

- One server socket plays the whole pool: a request whose ``Host`` header names
  one of ``slave_names`` (``localhost`` by default) reaches a pool member, which
  refuses logins with HOST_IS_SLAVE naming the master (``127.0.0.1``).
- CBT: a snapshot of a CBT-enabled VDI records a digest of each 64 KiB block; a
  block counts as changed when its digest differs (real CBT counts every write,
  even one writing the same bytes).
- ``GET /export_raw_vdi`` honours a ``Range: bytes=A-B`` header with a 206
  answer. Real XAPI sends the whole VDI (status 200); the plugin handles both.
- Only the classes, fields and calls the plugin uses are modelled.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import re
import shutil
import ssl
import threading
import time
import uuid as uuidlib
import xmlrpc.client
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .nbd_server import NbdServer

CBT_BLOCK = 64 * 1024
CLASSES = ("pool", "host", "SR", "VM", "VBD", "VDI", "session")


class XapiFailure(Exception):
    """A failure answered in XAPI's envelope."""

    def __init__(self, *description: object) -> None:
        super().__init__(description)
        self.description = [str(d) for d in description]


def new_ref() -> str:
    return f"OpaqueRef:{uuidlib.uuid4()}"


def _xml_value(value: Any) -> Any:
    """XAPI sends int64 fields as strings over XML-RPC."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {k: _xml_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_xml_value(v) for v in value]
    return value


@dataclass
class Faults:
    """Failures a test arranges: XAPI errors for a call, an export cut short."""

    calls: dict[str, list[str]] = field(default_factory=dict)
    #: How many calls of a method in ``calls`` succeed before it fails.
    skip: dict[str, int] = field(default_factory=dict)
    #: Close the connection of the next export after this many bytes of the body.
    cut_export_after: int | None = None
    #: False: ignore Range headers as real XAPI does (200 and the whole VDI).
    honour_range: bool = True


class Xapi:
    """The pool's database, its VDIs' bytes, and the calls the plugin makes."""

    def __init__(self, root: Path, user: str, password: str) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.user = user
        self.password = password
        self.lock = threading.RLock()
        self.db: dict[str, dict[str, dict[str, Any]]] = {c: {} for c in CLASSES}
        self.cbt_digests: dict[str, list[bytes]] = {}
        self.calls: Counter[str] = Counter()
        self.bytes_exported = 0
        self.faults = Faults()
        self.master_address = "127.0.0.1"
        #: event.from: the generation counter and each object's last seen state.
        self.generation = 0
        self.seen: dict[tuple[str, str], tuple[int, str, dict[str, Any] | None]] = {}
        self.slave_names = {"localhost"}
        #: The NBD server of the pool's "nbd" network (None: no network has that purpose).
        self.nbd: NbdServer | None = None
        self.nbd_cert = ""
        self._session = ""
        self.pool = self._add("pool", name_label="pool0", master="", default_SR="")
        self.master = self.add_host("xs-master", self.master_address)

    # ----- building the pool (tests) -----

    def _add(self, cls: str, **fields: Any) -> str:
        ref = new_ref()
        record = {"uuid": str(uuidlib.uuid4()), "other_config": {}}
        record.update(fields)
        self.db[cls][ref] = record
        return ref

    def add_host(self, name: str, address: str) -> str:
        ref = self._add(
            "host",
            name_label=name,
            hostname=name,
            address=address,
            enabled=True,
            resident_VMs=[],
            API_version_major=2,
            API_version_minor=21,
            software_version={"product_brand": "XCP-ng", "product_version": "8.3.0"},
        )
        if not self.db["pool"][self.pool]["master"]:
            self.db["pool"][self.pool]["master"] = ref
        return ref

    def add_sr(self, name: str, cbt: bool = True, default: bool = False) -> str:
        ref = self._add(
            "SR",
            name_label=name,
            name_description="",
            type="lvm" if cbt else "iso-like",
            content_type="user",
            shared=False,
            VDIs=[],
            physical_size=1 << 40,
            physical_utilisation=0,
        )
        self.db["SR"][ref]["_cbt"] = cbt
        if default:
            self.db["pool"][self.pool]["default_SR"] = ref
        return ref

    def vdi_path(self, ref: str) -> Path:
        return self.root / f"{self.db['VDI'][ref]['uuid']}.img"

    def add_vdi(self, sr: str, name: str, data: bytes, **fields: Any) -> str:
        ref = self._add(
            "VDI",
            name_label=name,
            name_description="",
            SR=sr,
            virtual_size=len(data),
            physical_utilisation=len(data),
            type="user",
            sharable=False,
            read_only=False,
            is_a_snapshot=False,
            snapshot_of="OpaqueRef:NULL",
            snapshots=[],
            snapshot_time=datetime.datetime(1970, 1, 1),
            cbt_enabled=False,
            VBDs=[],
            managed=True,
            missing=False,
        )
        self.db["VDI"][ref].update(fields)
        self.vdi_path(ref).write_bytes(data)
        self.db["SR"][sr]["VDIs"].append(ref)
        return ref

    def add_vm(
        self,
        name: str,
        host: str | None = None,
        power_state: str = "Running",
        quiesce: bool = False,
        **fields: Any,
    ) -> str:
        allowed = ["snapshot", "clone", "copy", "export"]
        if quiesce:
            allowed.append("snapshot_with_quiesce")
        ref = self._add(
            "VM",
            name_label=name,
            name_description="",
            power_state=power_state,
            is_a_template=False,
            is_control_domain=False,
            is_a_snapshot=False,
            snapshot_of="OpaqueRef:NULL",
            snapshots=[],
            snapshot_time=datetime.datetime(1970, 1, 1),
            resident_on=host if power_state == "Running" and host else "OpaqueRef:NULL",
            affinity=host or "OpaqueRef:NULL",
            tags=[],
            VBDs=[],
            allowed_operations=allowed,
            memory_static_max=1 << 30,
            memory_static_min=1 << 28,
            memory_dynamic_max=1 << 30,
            memory_dynamic_min=1 << 30,
            VCPUs_max=2,
            VCPUs_at_startup=2,
            HVM_boot_policy="BIOS order",
            HVM_boot_params={"order": "cd"},
            platform={"acpi": "1", "apic": "true", "pae": "true", "viridian": "true"},
            domain_type="hvm",
            PV_bootloader="",
            PV_kernel="",
            PV_ramdisk="",
            PV_args="",
            actions_after_shutdown="destroy",
            actions_after_reboot="restart",
            actions_after_crash="restart",
            user_version=1,
        )
        self.db["VM"][ref].update(fields)
        if host and power_state == "Running":
            self.db["host"][host]["resident_VMs"].append(ref)
        return ref

    def attach(self, vm: str, vdi: str, userdevice: str, bootable: bool = False) -> str:
        running = self.db["VM"][vm]["power_state"] == "Running"
        ref = self._add(
            "VBD",
            VM=vm,
            VDI=vdi,
            userdevice=userdevice,
            device=f"xvd{chr(ord('a') + int(userdevice))}",
            bootable=bootable,
            mode="RW",
            type="Disk",
            empty=False,
            unpluggable=True,
            currently_attached=running,
            qos_algorithm_type="",
            qos_algorithm_params={},
        )
        self.db["VM"][vm]["VBDs"].append(ref)
        self.db["VDI"][vdi]["VBDs"].append(ref)
        return ref

    def write(self, vdi: str, offset: int, data: bytes) -> None:
        """What the guest does: change a disk's bytes in place."""
        with self.lock, open(self.vdi_path(vdi), "r+b") as f:
            f.seek(offset)
            f.write(data)

    def read_vdi(self, vdi: str) -> bytes:
        return self.vdi_path(vdi).read_bytes()

    def find(self, cls: str, **match: Any) -> list[str]:
        with self.lock:
            return [
                ref
                for ref, rec in self.db[cls].items()
                if all(rec.get(k) == v for k, v in match.items())
            ]

    # ----- the XML-RPC side -----

    def call(self, method: str, params: tuple[Any, ...], host_name: str) -> Any:
        if method == "event.from":
            with self.lock:
                self.calls[method] += 1
                if not params or params[0] not in self.db["session"]:
                    raise XapiFailure("SESSION_INVALID", params[0] if params else "")
            self._arity(method, self._event_from, params[1:])
            return self._event_from(*params[1:])
        with self.lock:
            self.calls[method] += 1
            if method in self.faults.calls:
                if self.faults.skip.get(method, 0) > 0:
                    self.faults.skip[method] -= 1
                else:
                    raise XapiFailure(*self.faults.calls.pop(method))
            if method == "session.login_with_password":
                return self._login(params, host_name)
            if not params:
                raise XapiFailure("SESSION_INVALID", "")
            session, args = params[0], params[1:]
            if session not in self.db["session"]:
                raise XapiFailure("SESSION_INVALID", session)
            self._session = session
            if method == "session.logout":
                del self.db["session"][session]
                return ""
            cls, _, name = method.partition(".")
            handler = getattr(self, f"_{cls}_{name}", None)
            if handler is not None:
                return handler(*self._arity(method, handler, args))
            if cls in self.db and cls != "session":
                return self._generic(cls, name, method, args)
            raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)

    @staticmethod
    def _arity(method: str, handler: Callable[..., Any], args: tuple[Any, ...]) -> tuple:
        code = handler.__code__
        wanted = code.co_argcount - 1
        optional = len(handler.__defaults__ or ())
        if not wanted - optional <= len(args) <= wanted:
            raise XapiFailure("MESSAGE_PARAMETER_COUNT_MISMATCH", method, wanted, len(args))
        return args

    def _login(self, params: tuple[Any, ...], host_name: str) -> str:
        if len(params) < 2:
            raise XapiFailure(
                "MESSAGE_PARAMETER_COUNT_MISMATCH", "session.login_with_password", 2, len(params)
            )
        user, password = params[0], params[1]
        if host_name in self.slave_names:
            raise XapiFailure("HOST_IS_SLAVE", self.master_address)
        if user != self.user or password != self.password:
            raise XapiFailure("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
        ref = new_ref()
        self.db["session"][ref] = {"uuid": str(uuidlib.uuid4()), "this_user": user}
        return ref

    def _record(self, cls: str, ref: str) -> dict[str, Any]:
        rec = self.db[cls].get(ref)
        if rec is None:
            raise XapiFailure("HANDLE_INVALID", cls, ref)
        return rec

    @staticmethod
    def _public(rec: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in rec.items() if not k.startswith("_")}

    def _generic(self, cls: str, name: str, method: str, args: tuple[Any, ...]) -> Any:
        if name == "get_all_records" and not args:
            return {ref: self._public(rec) for ref, rec in self.db[cls].items()}
        if name == "get_all" and not args:
            return list(self.db[cls])
        if name == "get_by_uuid" and len(args) == 1:
            for ref, rec in self.db[cls].items():
                if rec["uuid"] == args[0]:
                    return ref
            raise XapiFailure("UUID_INVALID", cls, args[0])
        if name == "get_by_name_label" and len(args) == 1:
            return [r for r, rec in self.db[cls].items() if rec.get("name_label") == args[0]]
        if name == "get_record" and len(args) == 1:
            return self._public(self._record(cls, args[0]))
        if name.startswith("get_") and len(args) == 1:
            rec = self._record(cls, args[0])
            key = name[4:]
            if key in rec and not key.startswith("_"):
                return rec[key]
        if name.startswith("set_") and len(args) == 2:
            rec = self._record(cls, args[0])
            key = name[4:]
            if key in ("name_label", "name_description", "other_config", "tags"):
                rec[key] = args[1]
                return ""
        raise XapiFailure("MESSAGE_METHOD_UNKNOWN", method)

    # --- event ---

    def _scan(self) -> None:
        """Give every object added, changed or deleted since the last scan a new generation.

        Changes are found by comparing records, so that whatever changed the
        database (a call, or a test playing the administrator) makes an event.
        """
        current = {}
        for cls in ("VM", "host", "SR", "VDI", "VBD", "pool"):
            for ref, rec in self.db[cls].items():
                current[(cls, ref)] = rec
        for key, rec in current.items():
            text = repr(sorted(self._public(rec).items()))
            old = self.seen.get(key)
            if old is None or old[1] != text:
                self.generation += 1
                op = "add" if old is None or old[2] is None else "mod"
                self.seen[key] = (self.generation, text, dict(rec) | {"_op": op})
        for key, old in list(self.seen.items()):
            if key not in current and old[2] is not None:
                self.generation += 1
                self.seen[key] = (self.generation, "", None)

    def _event_from(self, classes: list[str], token: str, timeout: float) -> dict[str, Any]:
        try:
            since = int(token) if token else -1
        except ValueError:
            raise XapiFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
        wanted = {c.lower() for c in classes}
        deadline = time.monotonic() + float(timeout)
        while True:
            with self.lock:
                self._scan()
                events = []
                for (cls, ref), (gen, _, rec) in sorted(self.seen.items(), key=lambda i: i[1][0]):
                    if gen <= since or ("*" not in wanted and cls.lower() not in wanted):
                        continue
                    if since < 0 and rec is None:
                        continue
                    event = {
                        "id": str(gen),
                        "class": cls.lower(),
                        "operation": "del" if rec is None else rec["_op"] if since >= 0 else "add",
                        "ref": ref,
                    }
                    if rec is not None:
                        event["snapshot"] = self._public(rec)
                    events.append(event)
                if events or time.monotonic() >= deadline:
                    return {
                        "events": events,
                        "valid_ref_counts": {c: len(self.db.get(c, {})) for c in classes},
                        "token": str(self.generation),
                    }
            time.sleep(0.05)

    # --- VM ---

    def _snapshot_vdi(self, vdi: str, when: datetime.datetime) -> str:
        rec = self._record("VDI", vdi)
        snap = self._add(
            "VDI",
            **{
                k: v
                for k, v in rec.items()
                if k not in ("uuid", "VBDs", "snapshots", "other_config", "_digests")
            },
        )
        srec = self.db["VDI"][snap]
        srec.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=when, VBDs=[])
        srec["snapshots"] = []
        shutil.copyfile(self.vdi_path(vdi), self.vdi_path(snap))
        rec["snapshots"].append(snap)
        self.db["SR"][rec["SR"]]["VDIs"].append(snap)
        if rec["cbt_enabled"]:
            self.cbt_digests[snap] = _digests(self.vdi_path(snap))
        return snap

    def _VM_snapshot(self, vm: str, new_name: str, ignore_vdis: list[str] | None = None) -> str:
        rec = self._record("VM", vm)
        if rec["is_a_snapshot"] or rec["is_a_template"]:
            raise XapiFailure("VM_IS_TEMPLATE" if rec["is_a_template"] else "VM_IS_SNAPSHOT", vm)
        when = datetime.datetime.now(datetime.UTC).replace(tzinfo=None, microsecond=0)
        skip = set(ignore_vdis or [])
        snap = self._add(
            "VM",
            **{
                k: v
                for k, v in rec.items()
                if k not in ("uuid", "VBDs", "snapshots", "other_config", "tags")
            },
        )
        srec = self.db["VM"][snap]
        srec.update(
            name_label=new_name,
            name_description="",
            is_a_snapshot=True,
            snapshot_of=vm,
            snapshot_time=when,
            power_state="Halted",
            resident_on="OpaqueRef:NULL",
            VBDs=[],
            snapshots=[],
            tags=list(rec["tags"]),
            other_config=dict(rec["other_config"]),
            allowed_operations=["destroy", "clone", "copy", "export"],
        )
        for vbd in rec["VBDs"]:
            vrec = self.db["VBD"][vbd]
            if vrec["empty"] or vrec["type"] != "Disk" or vrec["VDI"] in skip:
                continue
            vdi_snap = self._snapshot_vdi(vrec["VDI"], when)
            nref = self._add(
                "VBD",
                **{k: v for k, v in vrec.items() if k not in ("uuid", "VM", "VDI")},
            )
            self.db["VBD"][nref].update(VM=snap, VDI=vdi_snap, currently_attached=False)
            srec["VBDs"].append(nref)
            self.db["VDI"][vdi_snap]["VBDs"].append(nref)
        rec["snapshots"].append(snap)
        return snap

    def _VM_snapshot_with_quiesce(self, vm: str, new_name: str) -> str:
        rec = self._record("VM", vm)
        if "snapshot_with_quiesce" not in rec["allowed_operations"]:
            raise XapiFailure("VM_SNAPSHOT_WITH_QUIESCE_NOT_SUPPORTED", vm)
        snap = self._VM_snapshot(vm, new_name)
        self.db["VM"][snap]["_quiesced"] = True
        return snap

    def _VM_destroy(self, vm: str) -> str:
        rec = self._record("VM", vm)
        if rec["power_state"] != "Halted" and not rec["is_a_snapshot"]:
            raise XapiFailure("VM_BAD_POWER_STATE", vm, "halted", rec["power_state"].lower())
        for vbd in rec["VBDs"]:
            vdi = self.db["VBD"].pop(vbd)["VDI"]
            if vdi in self.db["VDI"]:
                self.db["VDI"][vdi]["VBDs"].remove(vbd)
        parent = rec.get("snapshot_of")
        if parent in self.db["VM"]:
            self.db["VM"][parent]["snapshots"].remove(vm)
        del self.db["VM"][vm]
        return ""

    def _VM_create(self, record: dict[str, Any]) -> str:
        required = ("name_label", "memory_static_max", "VCPUs_max", "VCPUs_at_startup")
        missing = [k for k in required if k not in record]
        if missing:
            raise XapiFailure("FIELD_TYPE_ERROR", missing[0])
        fields = {
            k: int(v) if k in _INT_FIELDS else v
            for k, v in record.items()
            if k not in ("uuid", "VBDs", "snapshots", "power_state", "name_label")
        }
        return self.add_vm(record["name_label"], power_state="Halted", **fields)

    # --- VBD ---

    def _VBD_create(self, record: dict[str, Any]) -> str:
        vm = record.get("VM", "")
        self._record("VM", vm)
        vdi = record.get("VDI", "OpaqueRef:NULL")
        if vdi != "OpaqueRef:NULL":
            self._record("VDI", vdi)
        used = {self.db["VBD"][b]["userdevice"] for b in self.db["VM"][vm]["VBDs"]}
        device = str(record.get("userdevice", "autodetect"))
        if device == "autodetect":
            device = str(next(i for i in range(16) if str(i) not in used))
        if device in used:
            raise XapiFailure("DEVICE_ALREADY_EXISTS", device)
        ref = self.attach(vm, vdi, device, bool(record.get("bootable", False)))
        self.db["VBD"][ref].update(
            currently_attached=False,
            mode=record.get("mode", "RW"),
            type=record.get("type", "Disk"),
            empty=bool(record.get("empty", False)),
            other_config=dict(record.get("other_config", {})),
        )
        return ref

    def _VBD_plug(self, vbd: str) -> str:
        rec = self._record("VBD", vbd)
        rec["currently_attached"] = True
        return ""

    # --- VDI ---

    def _attached(self, vdi: str) -> bool:
        rec = self.db["VDI"][vdi]
        return any(self.db["VBD"][b]["currently_attached"] for b in rec["VBDs"])

    def _VDI_create(self, record: dict[str, Any]) -> str:
        sr = record.get("SR", "")
        self._record("SR", sr)
        size = int(record.get("virtual_size", 0))
        fields = {
            k: v
            for k, v in record.items()
            if k in ("name_description", "sharable", "read_only", "type", "other_config")
        }
        return self.add_vdi(sr, str(record.get("name_label", "")), bytes(size), **fields)

    def _VDI_destroy(self, vdi: str) -> str:
        rec = self._record("VDI", vdi)
        if self._attached(vdi):
            raise XapiFailure("VDI_IN_USE", vdi, "destroy")
        for vbd in list(rec["VBDs"]):
            self.db["VBD"][vbd]["VDI"] = "OpaqueRef:NULL"
            self.db["VBD"][vbd]["empty"] = True
        parent = rec.get("snapshot_of")
        if parent in self.db["VDI"]:
            self.db["VDI"][parent]["snapshots"].remove(vdi)
        self.db["SR"][rec["SR"]]["VDIs"].remove(vdi)
        self.vdi_path(vdi).unlink(missing_ok=True)
        self.cbt_digests.pop(vdi, None)
        del self.db["VDI"][vdi]
        return ""

    def _VDI_enable_cbt(self, vdi: str) -> str:
        rec = self._record("VDI", vdi)
        if not self.db["SR"][rec["SR"]]["_cbt"]:
            raise XapiFailure("SR_OPERATION_NOT_SUPPORTED", rec["SR"])
        rec["cbt_enabled"] = True
        return ""

    def _VDI_disable_cbt(self, vdi: str) -> str:
        self._record("VDI", vdi)["cbt_enabled"] = False
        return ""

    def _VDI_data_destroy(self, vdi: str) -> str:
        rec = self._record("VDI", vdi)
        if not rec["is_a_snapshot"] or not rec["cbt_enabled"] or vdi not in self.cbt_digests:
            raise XapiFailure("VDI_NO_CBT_METADATA", vdi)
        if rec["VBDs"]:
            raise XapiFailure("VDI_IN_USE", vdi, "data_destroy")
        rec["type"] = "cbt_metadata"
        self.vdi_path(vdi).unlink(missing_ok=True)
        return ""

    def _VDI_get_nbd_info(self, vdi: str) -> list[dict[str, Any]]:
        rec = self._record("VDI", vdi)
        if self.nbd is None:
            return []
        return [
            {
                "exportname": f"/{rec['uuid']}?session_id={self._session}",
                "address": "127.0.0.1",
                "port": self.nbd.port,
                "cert": self.nbd_cert,
                "subject": "xapi-test",
            }
        ]

    def nbd_export(self, name: str) -> Path | None:
        """The VDI file an NBD export name designates, if its session is valid."""
        m = re.match(r"^/([0-9a-f-]+)\?session_id=(.+)$", name)
        with self.lock:
            self.calls["nbd:connect"] += 1
            if m is None or m.group(2) not in self.db["session"]:
                return None
            for ref, rec in self.db["VDI"].items():
                if rec["uuid"] == m.group(1) and rec["type"] != "cbt_metadata":
                    return self.vdi_path(ref)
        return None

    def _VDI_list_changed_blocks(self, vdi_from: str, vdi_to: str) -> str:
        rec_from, rec_to = self._record("VDI", vdi_from), self._record("VDI", vdi_to)
        for ref, rec in ((vdi_from, rec_from), (vdi_to, rec_to)):
            if ref not in self.cbt_digests or not rec["cbt_enabled"]:
                raise XapiFailure("VDI_NO_CBT_METADATA", ref)
        if rec_to["type"] == "cbt_metadata":
            raise XapiFailure("VDI_NO_CBT_METADATA", vdi_to)
        if self._attached(vdi_to):
            raise XapiFailure("VDI_IN_USE", vdi_to, "list_changed_blocks")
        old, new = self.cbt_digests[vdi_from], _digests(self.vdi_path(vdi_to))
        bits = bytearray((len(new) + 7) // 8)
        for i, digest in enumerate(new):
            if i >= len(old) or old[i] != digest:
                bits[i // 8] |= 0x80 >> (i % 8)
        return base64.b64encode(bytes(bits)).decode()

    # ----- the HTTP side -----

    def http_vdi(self, query: dict[str, list[str]], action: str) -> str:
        with self.lock:
            self.calls[f"http:{action}"] += 1
            session = (query.get("session_id") or [""])[0]
            if session not in self.db["session"]:
                raise PermissionError("no valid session_id")
            ident = (query.get("vdi") or [""])[0]
            fmt = (query.get("format") or ["raw"])[0]
            if fmt != "raw":
                raise ValueError(f"format {fmt} is not served by this test server")
            if ident in self.db["VDI"]:
                ref = ident
            else:
                refs = [r for r, rec in self.db["VDI"].items() if rec["uuid"] == ident]
                if not refs:
                    raise KeyError(ident)
                ref = refs[0]
            if self.db["VDI"][ref]["type"] == "cbt_metadata":
                raise KeyError(ident)
            return ref


def _digests(path: Path) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        while block := f.read(CBT_BLOCK):
            out.append(hashlib.blake2b(block, digest_size=16).digest())
    return out


#: Fields of type int in the XenAPI reference: they arrive as strings over XML-RPC.
_INT_FIELDS = {
    "memory_static_max",
    "memory_static_min",
    "memory_dynamic_max",
    "memory_dynamic_min",
    "VCPUs_max",
    "VCPUs_at_startup",
    "user_version",
    "start_delay",
    "shutdown_delay",
    "order",
    "version",
    "hardware_platform_version",
}

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _host_name(self) -> str:
        return (self.headers.get("Host") or "").rsplit(":", 1)[0]

    def _reply(self, status: int, body: bytes, ctype: str = "text/xml") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
        except Exception:
            self._reply(400, b"bad XML-RPC request")
            return
        xapi = self.server.xapi
        try:
            value = xapi.call(str(method), params, self._host_name())
            envelope: dict[str, Any] = {"Status": "Success", "Value": _xml_value(value)}
        except XapiFailure as exc:
            envelope = {"Status": "Failure", "ErrorDescription": exc.description}
        out = xmlrpc.client.dumps((envelope,), methodresponse=True, allow_none=True)
        self._reply(200, out.encode())

    def _vdi(self, action: str) -> str | None:
        url = urlsplit(self.path)
        if url.path != f"/{action}":
            self._reply(404, b"not found", "text/plain")
            return None
        try:
            return self.server.xapi.http_vdi(parse_qs(url.query), action)
        except PermissionError:
            self._reply(401, b"unauthorised", "text/plain")
        except (KeyError, ValueError):
            self._reply(404, b"no such VDI or format", "text/plain")
        return None

    def do_GET(self) -> None:
        ref = self._vdi("export_raw_vdi")
        if ref is None:
            return
        xapi = self.server.xapi
        path = xapi.vdi_path(ref)
        size = path.stat().st_size
        start, end = 0, size
        status = 200
        wanted = self.headers.get("Range") if xapi.faults.honour_range else None
        if m := _RANGE.match(wanted or ""):
            start = int(m.group(1))
            end = min(size, int(m.group(2)) + 1 if m.group(2) else size)
            if start >= size or start >= end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        self.end_headers()
        cut = xapi.faults.cut_export_after
        sent = 0
        with open(path, "rb") as f:
            f.seek(start)
            while sent < end - start:
                block = f.read(min(1 << 20, end - start - sent))
                if cut is not None and sent + len(block) > cut:
                    self.wfile.write(block[: max(0, cut - sent)])
                    xapi.faults.cut_export_after = None
                    with xapi.lock:
                        xapi.bytes_exported += max(0, cut - sent)
                    self.close_connection = True
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(block)
                sent += len(block)
                with xapi.lock:
                    xapi.bytes_exported += len(block)

    def do_PUT(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        ref = self._vdi("import_raw_vdi")
        if ref is None:
            self.rfile.read(length)
            return
        xapi = self.server.xapi
        path = xapi.vdi_path(ref)
        size = path.stat().st_size
        if length > size:
            self.rfile.read(length)
            self._reply(400, b"image larger than the VDI", "text/plain")
            return
        with open(path, "r+b") as f:
            left = length
            while left:
                block = self.rfile.read(min(1 << 20, left))
                if not block:
                    break
                f.write(block)
                left -= len(block)
        self._reply(200, b"", "text/plain")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, xapi: Xapi, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.xapi = xapi
        self.context = context

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        if self.context is not None:
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, addr


@dataclass
class RunningXapi:
    """A started server: its state, where it listens, how to stop it."""

    xapi: Xapi
    server: _Server
    thread: threading.Thread
    fingerprint: str | None
    ca_file: Path | None

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def address(self) -> str:
        """The pool master's address as an operator registers it."""
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.xapi.nbd is not None:
            self.xapi.nbd.stop()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


def self_signed(folder: Path) -> tuple[Path, Path, str]:
    """A fresh certificate and key for 127.0.0.1; returns paths and the SHA-256 fingerprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xapi-test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    return cert_path, key_path, fingerprint


def start_xapi(
    root: Path, user: str, password: str, tls: bool = True, nbd: bool = False
) -> RunningXapi:
    """Start a server over HTTPS (a fresh self-signed certificate) or plain HTTP.

    With ``nbd``, VDIs are also served over NBD (TLS required when ``tls``), as on a
    pool with a network of purpose ``nbd`` (``insecure_nbd`` without TLS).
    """
    xapi = Xapi(root / "vdis", user, password)
    context = None
    fingerprint = None
    ca_file = None
    if tls:
        cert, key, fingerprint = self_signed(root / "tls")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        ca_file = cert
    if nbd:
        xapi.nbd = NbdServer(xapi.nbd_export, context)
        xapi.nbd_cert = ca_file.read_text() if ca_file else ""
    server = _Server(xapi, context)
    thread = threading.Thread(target=server.serve_forever, name="xapi-test", daemon=True)
    thread.start()
    return RunningXapi(xapi, server, thread, fingerprint, ca_file)
