"""Fixtures of the libvirt plugin tests: one private root libvirtd per session, fresh domains
per test (a qcow2 disk, no guest OS), every process killed at the end."""

from __future__ import annotations

import contextlib
import logging
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import libvirt
import pytest
from libvirt_helpers import MiB, domain_xml
from libvirtd_server import Libvirtd, start_libvirtd

from tapir.appliance.plugin_api import EndpointInfo, PluginContext
from tapir.plugins.libvirt.role import LibvirtPlugin


@pytest.fixture(scope="session")
def libvirtd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Libvirtd]:
    """The private libvirtd for the whole session; stopped with every QEMU it started."""
    daemon = start_libvirtd(tmp_path_factory.mktemp("libvirtd"))
    try:
        yield daemon
    finally:
        daemon.stop()
    assert daemon.namespace_processes() == []


@pytest.fixture(scope="session")
def conn(libvirtd: Libvirtd) -> Iterator[libvirt.virConnect]:
    """A connection for the tests to arrange and inspect domains."""
    connection = libvirt.open(libvirtd.uri)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def endpoint(libvirtd: Libvirtd) -> EndpointInfo:
    return EndpointInfo(name="kvm", plugin="libvirt", address=libvirtd.uri)


@pytest.fixture
def ctx(tmp_path: Path) -> PluginContext:
    state = tmp_path / "state"
    state.mkdir()
    return PluginContext(logger=logging.getLogger("tests.libvirt"), state_dir=state)


@pytest.fixture
def plugin() -> LibvirtPlugin:
    return LibvirtPlugin()


def _remove(dom: libvirt.virDomain) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        if dom.isActive():
            dom.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        dom.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        )


@pytest.fixture
def make_domain(
    conn: libvirt.virConnect, libvirtd: Libvirtd, request: pytest.FixtureRequest
) -> Iterator[Callable[..., libvirt.virDomain]]:
    """Define (and start) a domain with qcow2 disks; ``writes`` fill the image before start."""
    made: list[libvirt.virDomain] = []
    images: list[Path] = []
    prefix = request.node.name.replace("[", "-").replace("]", "")[:40]

    def make(
        suffix: str = "",
        size: int = 64 * MiB,
        writes: tuple[tuple[int, int, int], ...] = (),
        extra_disks: tuple[str, ...] = (),
        metadata: str = "",
        title: str | None = None,
        start: bool = True,
    ) -> libvirt.virDomain:
        name = f"{prefix}{suffix}"
        image = libvirtd.root / "images" / f"{name}-vda.qcow2"
        subprocess.run(
            ["qemu-img", "create", "-q", "-f", "qcow2", str(image), str(size)], check=True
        )
        for pattern, offset, length in writes:
            subprocess.run(
                [
                    "qemu-io",
                    "-f",
                    "qcow2",
                    "-c",
                    f"write -P {pattern} {offset} {length}",
                    str(image),
                ],
                check=True,
                capture_output=True,
            )
        images.append(image)
        dom = conn.defineXML(domain_xml(name, image, extra_disks, metadata, title))
        made.append(dom)
        if start:
            dom.create()
        return dom

    yield make
    for dom in made:
        _remove(dom)
    for image in images:
        image.unlink(missing_ok=True)
