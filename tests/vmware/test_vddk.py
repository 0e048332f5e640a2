"""The VDDK transport: the real nbdkit and libnbd around test doubles of VDDK and of
nbdkit's vddk plugin (``fake_vddk/``), against vcsim's real TLS endpoint."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from vcsim_server import Vcsim

from tapir.appliance.plugin_api import ConnectionFailed, PluginError
from tapir.plugins.vmware.connection import ConnectionSettings, format_fingerprint
from tapir.plugins.vmware.vddk import VddkDisk, VddkOptions, server_thumbprint, vddk_options

from .fake_vddk import FakeVddk, build_fake_vddk

VM = "vm-42"
SNAPSHOT = "snapshot-7"
FILE = "[LocalDS_0] vm42/vm42.vmdk"
MIB = 1024 * 1024
#: Not a multiple of the 4 MiB engine chunk nor of libnbd.MAX_READ; whole 64 KiB chunks.
DISK_SIZE = 13 * MIB + 64 * 1024


@pytest.fixture(scope="module")
def fake_vddk(tmp_path_factory: pytest.TempPathFactory) -> FakeVddk:
    return build_fake_vddk(tmp_path_factory.mktemp("fake-vddk"))


@pytest.fixture
def disk_file(tmp_path: Path) -> Path:
    """A raw disk with data runs and holes at MiB boundaries, random bytes elsewhere."""
    path = tmp_path / "disk.raw"
    rng = random.Random(5)
    with open(path, "wb") as f:
        f.truncate(DISK_SIZE)
        for start, length in ((0, 2 * MIB), (5 * MIB, MIB + 4096), (9 * MIB, 3 * MIB)):
            f.seek(start)
            f.write(rng.randbytes(length))
        f.seek(DISK_SIZE - 512)
        f.write(b"\xff" * 512)
    return path


def _sha1_thumbprint(vcsim: Vcsim) -> str:
    pem = ssl.get_server_certificate((vcsim.host, vcsim.port))
    return format_fingerprint(hashlib.sha1(ssl.PEM_cert_to_DER_cert(pem)).hexdigest())


@pytest.fixture
def settings(vcsim: Vcsim) -> ConnectionSettings:
    return ConnectionSettings(
        host=vcsim.host,
        port=vcsim.port,
        user="backup@vsphere.local",
        password="s3cret-VDDK-pw",
        fingerprint=vcsim.fingerprint,
    )


@pytest.fixture
def served(
    vcsim: Vcsim, disk_file: Path, settings: ConnectionSettings, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """What the fake VDDK expects (it reads nbdkit's environment)."""
    for name, value in {
        "FAKE_VDDK_DISK": str(disk_file),
        "FAKE_VDDK_SERVER": settings.host,
        "FAKE_VDDK_THUMBPRINT": _sha1_thumbprint(vcsim),
        "FAKE_VDDK_USER": settings.user,
        "FAKE_VDDK_PASSWORD": settings.password,
        "FAKE_VDDK_VM": VM,
        "FAKE_VDDK_SNAPSHOT": SNAPSHOT,
        "FAKE_VDDK_FILE": FILE,
    }.items():
        monkeypatch.setenv(name, value)
    return disk_file


@pytest.fixture
def options(fake_vddk: FakeVddk) -> VddkOptions:
    return VddkOptions(libdir=fake_vddk.libdir, plugin=str(fake_vddk.plugin))


def _nbdkit_children() -> list[int]:
    """nbdkit processes whose parent is this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        if comm == "nbdkit" and int(rest.split()[1]) == os.getpid():
            found.append(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_nbdkit_left() -> Iterator[None]:
    yield
    assert _nbdkit_children() == []


def _data_runs(path: Path) -> list[tuple[int, int]]:
    runs = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            runs.append((data, hole - data))
            pos = hole
    finally:
        os.close(fd)
    return runs


def _open(settings: ConnectionSettings, options: VddkOptions, file: str = FILE) -> VddkDisk:
    return VddkDisk(settings, options, VM, SNAPSHOT, file)


def test_thumbprint_is_the_sha1_of_the_pinned_certificate(
    vcsim: Vcsim, settings: ConnectionSettings
) -> None:
    thumbprint = server_thumbprint(settings)
    assert thumbprint == _sha1_thumbprint(vcsim)
    assert len(thumbprint.split(":")) == 20


def test_reads_the_disk_byte_for_byte(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    expected = served.read_bytes()
    with _open(settings, options) as disk:
        assert disk.size == DISK_SIZE
        cmdline = Path(f"/proc/{disk.pid}/cmdline").read_bytes()
        assert settings.password.encode() not in cmdline
        assert b"vm=moref=" + VM.encode() in cmdline
        assert disk.read(0, DISK_SIZE + 4096) == expected
        # Unaligned pieces, and one across the end of the disk.
        for offset, length in ((1000, 70001), (5 * MIB - 3, 9), (DISK_SIZE - 100, 4096)):
            assert disk.read(offset, length) == expected[offset : offset + length]
        assert disk.read(DISK_SIZE, 10) == b""


def test_allocated_extents_match_the_holes(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    runs = _data_runs(served)
    assert len(runs) > 1, "the test file system keeps no holes"
    # QueryAllocatedBlocks answers whole 64 KiB chunks.
    chunk = 64 * 1024
    expected: list[tuple[int, int]] = []
    for start, length in runs:
        first, last = start // chunk * chunk, -(-(start + length) // chunk) * chunk
        if expected and expected[-1][0] + expected[-1][1] >= first:
            expected[-1] = (expected[-1][0], last - expected[-1][0])
        else:
            expected.append((first, last - first))
    with _open(settings, options) as disk:
        assert disk.allocated_extents() == expected
        assert (5 * MIB, MIB + chunk) in expected


def test_wrong_password_is_a_clear_login_error(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    with pytest.raises(ConnectionFailed) as info:
        _open(replace(settings, password="not-the-password"), options)
    message = str(info.value)
    assert "VDDK could not log in to" in message
    assert "incorrect user name or password" in message
    assert "not-the-password" not in message


def test_wrong_thumbprint_is_refused_by_vddk(
    served: Path,
    settings: ConnectionSettings,
    options: VddkOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAKE_VDDK_THUMBPRINT", "00:" * 19 + "00")
    with pytest.raises(ConnectionFailed, match="thumbprint does not match"):
        _open(settings, options)


def test_wrong_pinned_fingerprint_starts_no_nbdkit(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    with pytest.raises(ConnectionFailed, match="does not match the pinned fingerprint"):
        _open(replace(settings, fingerprint="ab" * 32), options)


def test_unknown_disk_names_the_file(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    with pytest.raises(PluginError, match=r"VDDK cannot open \[LocalDS_0\] other.vmdk"):
        _open(settings, options, "[LocalDS_0] other.vmdk")


def test_missing_libdir(served: Path, settings: ConnectionSettings, tmp_path: Path) -> None:
    options = VddkOptions(libdir=tmp_path / "nowhere")
    with pytest.raises(PluginError, match="nowhere does not exist"):
        _open(settings, options)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PluginError, match=r"holds no lib64/libvixDiskLib\.so"):
        _open(settings, VddkOptions(libdir=tmp_path / "empty"))


def test_library_that_cannot_load(
    served: Path, settings: ConnectionSettings, fake_vddk: FakeVddk, tmp_path: Path
) -> None:
    (tmp_path / "vddk" / "lib64").mkdir(parents=True)
    (tmp_path / "vddk" / "lib64" / "libvixDiskLib.so.8").write_bytes(b"not an ELF file\n" * 300)
    options = VddkOptions(libdir=tmp_path / "vddk", plugin=str(fake_vddk.plugin))
    with pytest.raises(PluginError, match=r"cannot load the VDDK library from .*vddk: .*ELF"):
        _open(settings, options)


def test_nbdkit_without_a_vddk_plugin(
    served: Path, settings: ConnectionSettings, fake_vddk: FakeVddk
) -> None:
    # Debian's nbdkit really has no vddk plugin: the default name must say so.
    with pytest.raises(PluginError, match="nbdkit has no 'vddk' plugin"):
        _open(settings, VddkOptions(libdir=fake_vddk.libdir))


def test_nbdkit_stopped_after_close_and_after_an_exception(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    disk = _open(settings, options)
    pid = disk.pid
    assert pid in _nbdkit_children()
    disk.close()
    disk.close()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(PluginError, match="closed"):
        disk.read(0, 1)

    with pytest.raises(RuntimeError, match="boom"), _open(settings, options) as disk:
        pid = disk.pid
        disk.read(0, 4096)
        raise RuntimeError("boom")
    assert not Path(f"/proc/{pid}").exists()


def test_nbdkit_killed_mid_read(
    served: Path, settings: ConnectionSettings, options: VddkOptions
) -> None:
    with _open(settings, options) as disk:
        disk.read(0, 4096)
        assert disk.pid is not None
        os.kill(disk.pid, signal.SIGKILL)
        with pytest.raises(ConnectionFailed, match=r"nbdkit \(VDDK\) exited while reading"):
            disk.read(MIB, 4096)


def test_endpoint_options() -> None:
    assert vddk_options({"verify_tls": True}) is None
    assert vddk_options({"vddk_libdir": "/opt/vddk"}) == VddkOptions(libdir=Path("/opt/vddk"))
    assert vddk_options(
        {"vddk_libdir": "/opt/vddk", "vddk_transports": "hotadd:nbd", "vddk_plugin": "/x.so"}
    ) == VddkOptions(libdir=Path("/opt/vddk"), transports="hotadd:nbd", plugin="/x.so")
    with pytest.raises(PluginError, match=r"unknown mode.*nfs"):
        vddk_options({"vddk_libdir": "/opt/vddk", "vddk_transports": "nfs:nbd"})
    with pytest.raises(PluginError, match="vddk_plugin"):
        vddk_options({"vddk_libdir": "/opt/vddk", "vddk_plugin": 3})
