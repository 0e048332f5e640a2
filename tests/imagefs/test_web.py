"""The JSON API of image files: disks, volumes, lazy folders, search, downloads."""

from __future__ import annotations

import io
import tarfile
import zipfile
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient

from tapir.appliance.web.app import create_app

from .conftest import Guest
from .content import DEEP, UNICODE, sha256

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def users(guest: Guest) -> None:
    guest.app.set_password("admin", PASSWORD)
    for name, role in (("operator", "operator"), ("readonly", "read-only")):
        if name not in {u.username for u in _users(guest)}:
            guest.app.create_user(name, PASSWORD, role)


def _users(guest: Guest) -> list:
    from sqlalchemy import select

    from tapir.appliance.catalog.models import User

    with guest.app.catalog.session() as s:
        return list(s.scalars(select(User)))


def _client(guest: Guest, username: str) -> FlaskClient:
    import re

    app = create_app(guest.app, TESTING=True)
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token, page
    response = client.post(
        "/login",
        data={"username": username, "password": PASSWORD, "csrf_token": token.group(1), "next": ""},
    )
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


@pytest.fixture
def reader(guest: Guest, users: None) -> FlaskClient:
    return _client(guest, "readonly")


@pytest.fixture
def operator(guest: Guest, users: None) -> FlaskClient:
    return _client(guest, "operator")


def _base(point: str) -> str:
    return f"/api/v1/recovery-points/{point}/image"


def test_disks_then_volumes_then_folders_one_level_at_a_time(reader, guest: Guest) -> None:
    disks = reader.get(f"{_base(guest.full)}/disks").get_json()
    assert [(d["index"], d["table"]) for d in disks] == [(0, "gpt")]
    answer = reader.get(f"{_base(guest.full)}/disks/0/volumes").get_json()
    assert answer["disk"]["name"] == "0-guest.qcow2"
    assert [(v["address"], v["fs"]) for v in answer["volumes"]][:2] == [
        ("0:1/", "ext"),
        ("0:2/", "ntfs"),
    ]
    root = reader.get(f"{_base(guest.full)}/entries?address=0:1/").get_json()
    assert root["address"] == "0:1/" and root["entry"]["kind"] == "dir"
    by_name = {c["name"]: c for c in root["children"]}
    assert by_name["etc"]["address"] == "0:1/etc" and by_name["etc"]["kind"] == "dir"
    assert by_name[UNICODE]["size"] == len("unicode content ✓\n".encode())
    assert by_name["hello.txt"]["mtime"] == "2020-09-13T12:26:40Z"
    assert by_name["hello.txt"]["permissions"] == "-rw-r--r--"
    etc = reader.get(f"{_base(guest.full)}/entries?address=" + quote("0:1/etc")).get_json()
    assert {c["name"] for c in etc["children"]} == {"app", "hostname"}


def test_find(reader, guest: Guest) -> None:
    answer = reader.get(f"{_base(guest.full)}/find?address=0:5/&pattern=deep.*").get_json()
    assert [f["address"] for f in answer["found"]] == [f"0:5/{DEEP}/deep.txt"]
    assert answer["truncated"] is False


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("address=0:1/nope", 404, "no such file or folder"),
        ("address=3:1/", 404, "has no disk '3'"),
        ("address=0", 400, "address must be DISK:VOLUME"),
    ],
)
def test_errors_are_json(reader, guest: Guest, query: str, status: int, message: str) -> None:
    response = reader.get(f"{_base(guest.full)}/entries?{query}")
    assert response.status_code == status
    assert message in response.get_json()["error"]


def test_download_a_single_file_as_is(operator, guest: Guest) -> None:
    address = quote(f"0:1/{UNICODE}")
    response = operator.get(f"{_base(guest.full)}/download?address={address}")
    assert response.status_code == 200
    assert response.data == "unicode content ✓\n".encode()
    assert "filename*=UTF-8''" in response.headers["Content-Disposition"]


def test_download_folders_as_tar_and_zip(operator, guest: Guest) -> None:
    url = f"{_base(guest.incremental)}/download?address=0:1/etc&address=0:1/report.bin"
    response = operator.get(url)
    assert response.status_code == 200 and response.mimetype == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(response.data)) as tar:
        report = tar.extractfile("report.bin")
        assert report is not None and sha256(report.read()) == guest.changed_sum
        assert "etc/app/config.ini" in tar.getnames()
    response = operator.get(f"{_base(guest.full)}/download?address=0:4/home&format=zip")
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        assert archive.read("home/user/Документы/план.txt").decode() == "план работ\n"


def test_download_needs_an_operator_and_is_audited(reader, operator, guest: Guest) -> None:
    url = f"{_base(guest.full)}/download?address=0:1/hello.txt"
    assert reader.get(url).status_code == 403
    assert operator.get(url).status_code == 200
    actions = [e.action for e in guest.app.audit_events(limit=20)]
    assert "download.image_files" in actions


def test_a_bad_download_fails_before_streaming(operator, guest: Guest) -> None:
    response = operator.get(f"{_base(guest.full)}/download?address=0:1/nope&format=tar")
    assert response.status_code == 404
    response = operator.get(f"{_base(guest.full)}/download?address=0:1/etc&format=file")
    assert response.status_code == 400
