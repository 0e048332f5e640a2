"""The library's JSON API (/api/v1/tape): the picture, moves, loads, inventory, import,
labelling with an explicit force, roles, CSRF, malformed input, and the OpenAPI document."""

from __future__ import annotations

from flask.testing import FlaskClient
from web.conftest import page_csrf

from tapir.appliance.engine.service import Appliance


def csrf(client: FlaskClient) -> dict[str, str]:
    return {"X-CSRFToken": page_csrf(client, "/")}


def test_picture_move_load_unload(login, appliance: Appliance) -> None:
    client = login("operator")
    h = csrf(client)
    report = client.post("/api/v1/tape/lib1/inventory", headers=h).get_json()
    assert "TAP001L8" in report["created"] and report["cleaning_created"] == ["CLN001L1"]
    pic = client.get("/api/v1/tape/lib1").get_json()
    assert pic["slots"][0] == {
        "element": "slot 1",
        "full": True,
        "barcode": "TAP001L8",
        "state": "scratch",
        "pool": None,
        "media_set": None,
        "labeled": False,
        "drive": None,
        "busy": None,
    }
    assert [d["drive"] for d in pic["drives"]] == ["lib1-d0", "lib1-d1"]
    assert pic["mail_slots"][0]["barcode"] == "NEW001L8"
    moved = client.post(
        "/api/v1/tape/lib1/move", json={"source": "slot:2", "target": "slot:8"}, headers=h
    )
    assert moved.get_json() == {"message": "moved TAP002L8 from slot 2 to slot 8"}
    assert client.get("/api/v1/tape/lib1").get_json()["slots"][7]["barcode"] == "TAP002L8"
    loaded = client.post(
        "/api/v1/tape/lib1/load", json={"barcode": "TAP003L8", "drive": 0}, headers=h
    )
    assert loaded.status_code == 200
    assert client.get("/api/v1/tape/lib1").get_json()["drives"][0]["barcode"] == "TAP003L8"
    client.post("/api/v1/tape/lib1/unload", json={"drive": 0}, headers=h)
    assert client.get("/api/v1/tape/lib1").get_json()["slots"][2]["barcode"] == "TAP003L8"
    imported = client.post("/api/v1/tape/lib1/import", headers=h).get_json()
    assert imported["imported"] == [{"barcode": "NEW001L8", "slot": 2}]


def test_label_needs_force_to_overwrite(login, appliance: Appliance) -> None:
    for name in ("alpha", "beta"):
        appliance.create_pool(
            name, "tape", options={"changer": "lib1", "drives": ["lib1-d0"], "block_size": 65536}
        )
    client = login("operator")
    h = csrf(client)
    client.post("/api/v1/tape/lib1/inventory", headers=h)
    body = {"barcodes": ["TAP004L8"], "pool": "alpha"}
    (first,) = client.post("/api/v1/tape/lib1/label", json=body, headers=h).get_json()
    assert first["status"] == "labelled"
    body["pool"] = "beta"
    (refused,) = client.post("/api/v1/tape/lib1/label", json=body, headers=h).get_json()
    assert refused["status"] == "refused" and "pool alpha" in refused["message"]
    assert not [e for e in appliance.audit_events() if e.action == "tape.label.overwrite"]
    (forced,) = client.post(
        "/api/v1/tape/lib1/label", json={**body, "force": True}, headers=h
    ).get_json()
    assert forced["status"] == "labelled" and forced["forced"] is True
    assert [e.target for e in appliance.audit_events() if e.action == "tape.label.overwrite"] == [
        "TAP004L8"
    ]


def test_errors_roles_and_csrf(login, appliance: Appliance) -> None:
    client = login("operator")
    h = csrf(client)
    client.post("/api/v1/tape/lib1/inventory", headers=h)
    cases = [
        ("/api/v1/tape/lib1/move", {"source": "slot:1"}, 400, "target is required"),
        ("/api/v1/tape/lib1/move", {"source": "slot:1", "target": "slot:2"}, 409, "slot 2"),
        ("/api/v1/tape/lib1/move", {"source": "bin:1", "target": "slot:9"}, 400, "not a library"),
        ("/api/v1/tape/lib1/load", {"barcode": "TAP001L8", "drive": "0"}, 400, "whole number"),
        ("/api/v1/tape/lib1/load", {"barcode": "TAP001L8", "drive": 7}, 409, "not registered"),
        ("/api/v1/tape/lib1/label", {"barcodes": []}, 400, "non-empty list"),
        ("/api/v1/tape/lib1/label", {"barcodes": ["TAP001L8"], "force": "yes"}, 400, "force"),
        ("/api/v1/tape/nolib/move", {"source": "slot:1", "target": "slot:9"}, 404, "nolib"),
        ("/api/v1/tape/lib1-d0/inventory", {}, 404, "not a changer"),
    ]
    for path, body, status, message in cases:
        response = client.post(path, json=body, headers=h)
        assert response.status_code == status, (path, body, response.get_json())
        assert message in response.get_json()["error"], (path, body, response.get_json())
    not_json = client.post("/api/v1/tape/lib1/move", data="[1]", headers=h)
    assert not_json.status_code == 400
    # Nothing moved.
    slots = client.get("/api/v1/tape/lib1").get_json()["slots"]
    assert [s["barcode"] for s in slots[:4]] == ["TAP001L8", "TAP002L8", "TAP003L8", "TAP004L8"]
    no_csrf = client.post("/api/v1/tape/lib1/move", json={"source": "slot:1", "target": "slot:9"})
    assert no_csrf.status_code == 400 and "CSRF" in no_csrf.get_json()["error"]
    reader = login("read-only")
    assert reader.get("/api/v1/tape/lib1").status_code == 200
    refused = reader.post(
        "/api/v1/tape/lib1/move",
        json={"source": "slot:1", "target": "slot:9"},
        headers=csrf(reader),
    )
    assert refused.status_code == 403
    doc = reader.get("/api/v1/openapi.json").get_json()
    assert doc["paths"]["/tape/{changer}/move"]["post"]["x-tapir-role"] == "operator"
    assert doc["paths"]["/tape/{changer}"]["get"]["x-tapir-role"] == "read-only"
