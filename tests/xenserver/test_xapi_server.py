"""The XAPI test server itself, through the real XenAPI library: envelopes, error codes,
CBT bitmaps, and the raw VDI handlers."""

from __future__ import annotations

import base64
import xmlrpc.client

import pytest
import XenAPI

from tapir.plugins.xenserver.cbt import changed_extents
from tapir.plugins.xenserver.connection import ConnectionSettings, login, normalize_fingerprint

from .conftest import PASSWORD, USER, MiB, Pool
from .xapi_server import CBT_BLOCK


@pytest.fixture
def api(pool: Pool):
    conn = login(
        ConnectionSettings(
            "127.0.0.1",
            pool.server.port,
            USER,
            PASSWORD,
            fingerprint=normalize_fingerprint(pool.server.fingerprint or ""),
        )
    )
    yield conn.api
    conn.api.session.logout()


def code(exc: pytest.ExceptionInfo[XenAPI.Failure]) -> list[str]:
    return list(exc.value.details)


def test_int64_fields_travel_as_strings(api, pool: Pool) -> None:
    rec = api.VDI.get_record(pool.web_disks[1])
    assert rec["virtual_size"] == str(3 * MiB)


def test_unknown_method_and_bad_handle(api, pool: Pool) -> None:
    with pytest.raises(XenAPI.Failure) as exc:
        api.VM.teleport(pool.web)
    assert code(exc) == ["MESSAGE_METHOD_UNKNOWN", "VM.teleport"]
    with pytest.raises(XenAPI.Failure) as exc:
        api.VM.get_record("OpaqueRef:nope")
    assert code(exc) == ["HANDLE_INVALID", "VM", "OpaqueRef:nope"]


def test_vdi_in_use_and_sr_operation_not_supported(api, pool: Pool) -> None:
    with pytest.raises(XenAPI.Failure) as exc:
        api.VDI.destroy(pool.web_disks[0])  # attached to the running web01
    assert code(exc) == ["VDI_IN_USE", pool.web_disks[0], "destroy"]
    with pytest.raises(XenAPI.Failure) as exc:
        api.VDI.enable_cbt(pool.legacy_disk)
    assert code(exc) == ["SR_OPERATION_NOT_SUPPORTED", pool.iso_sr]


def test_list_changed_blocks_bitmap(api, pool: Pool) -> None:
    x = pool.server.xapi
    disk = pool.web_disks[1]  # 3 MiB: 48 blocks, 6 bitmap bytes
    api.VDI.enable_cbt(disk)
    snap1 = api.VM.snapshot(pool.web, "one")
    vdi1 = x.db["VDI"][disk]["snapshots"][-1]
    x.write(disk, 0, b"x")  # block 0
    x.write(disk, 9 * CBT_BLOCK + 7, b"y" * CBT_BLOCK)  # blocks 9 and 10
    x.write(disk, 47 * CBT_BLOCK, b"z")  # the last block
    api.VM.snapshot(pool.web, "two")
    vdi2 = x.db["VDI"][disk]["snapshots"][-1]
    bitmap = api.VDI.list_changed_blocks(vdi1, vdi2)
    assert base64.b64decode(bitmap) == bytes([0x80, 0x60, 0, 0, 0, 0x01])
    extents = changed_extents(bitmap, 3 * MiB)
    assert [(e.offset // CBT_BLOCK, e.length // CBT_BLOCK) for e in extents] == [
        (0, 1),
        (9, 2),
        (47, 1),
    ]
    # The older snapshot keeps its CBT metadata only, and still answers.
    api.VM.destroy(snap1)
    api.VDI.data_destroy(vdi1)
    assert api.VDI.get_type(vdi1) == "cbt_metadata"
    assert api.VDI.list_changed_blocks(vdi1, vdi2) == bitmap
    with pytest.raises(XenAPI.Failure) as exc:
        api.VDI.list_changed_blocks(vdi2, pool.legacy_disk)
    assert code(exc)[0] == "VDI_NO_CBT_METADATA"


def test_http_handlers_need_a_session(pool: Pool) -> None:
    import http.client

    from tapir.plugins.xenserver.connection import PinnedContext

    conn = http.client.HTTPSConnection(
        "127.0.0.1", pool.server.port, context=PinnedContext(pool.server.fingerprint or "")
    )
    conn.request("GET", f"/export_raw_vdi?session_id=OpaqueRef:x&vdi={pool.web_disks[0]}")
    assert conn.getresponse().status == 401


def test_login_parameter_count(pool: Pool) -> None:
    from tapir.plugins.xenserver.connection import PinnedContext, _TimeoutTransport

    proxy = xmlrpc.client.ServerProxy(
        f"https://127.0.0.1:{pool.server.port}/",
        transport=_TimeoutTransport(PinnedContext(pool.server.fingerprint or ""), 10),
    )
    answer = proxy.session.login_with_password("root")
    assert answer == {
        "Status": "Failure",
        "ErrorDescription": [
            "MESSAGE_PARAMETER_COUNT_MISMATCH",
            "session.login_with_password",
            "2",
            "1",
        ],
    }
