"""The options of a libvirt endpoint and job, and the settings made from them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tapir.appliance.plugin_api import EndpointInfo, OptionSpec, PluginContext, PluginError
from tapir.appliance.plugin_api.option_values import parse_bool

_URI_SCHEME = re.compile(r"^[a-z][a-z0-9]*(\+[a-z0-9]+)?$")

UNIX = "unix"
TCP = "tcp"
PULL = "pull"
PUSH = "push"
DEFAULT_NBD_PORT = 10809

ENDPOINT_OPTIONS = [
    OptionSpec("user", "str", "SASL user name, when the libvirt URI asks for one"),
    OptionSpec(
        "password_secret",
        "secret",
        "name of the sealed catalog secret holding the SASL password (set by `tapir endpoint add`)",
    ),
    OptionSpec(
        "nbd_transport",
        "choice",
        "how Tapir reaches the backup's NBD export: a unix socket (Tapir runs on the libvirt "
        "host) or TCP (a remote host)",
        default=UNIX,
        choices=(UNIX, TCP),
    ),
    OptionSpec(
        "nbd_socket_dir",
        "path",
        "folder for the NBD socket (unix transport); QEMU must be able to create files in it",
    ),
    OptionSpec("nbd_host", "str", "address the NBD export listens on (tcp; default: URI host)"),
    OptionSpec("nbd_port", "int", "TCP port of the NBD export (tcp)", default=DEFAULT_NBD_PORT),
    OptionSpec(
        "backup_mode",
        "choice",
        "pull: Tapir reads the disks over NBD (no copy); push: QEMU writes a copy of what "
        "is read into push_dir first (hosts whose NBD export Tapir cannot reach)",
        default=PULL,
        choices=(PULL, PUSH),
    ),
    OptionSpec(
        "push_dir",
        "path",
        "push mode: folder on the libvirt host QEMU writes the backup copies into",
    ),
    OptionSpec(
        "push_dir_local",
        "path",
        "push mode: where Tapir sees push_dir (an NFS mount...; default: push_dir itself)",
    ),
    OptionSpec(
        "scratch_dir",
        "path",
        "folder on the libvirt host for the backup's scratch files (default: beside each disk)",
    ),
]

JOB_OPTIONS = [
    OptionSpec(
        "quiesce",
        "bool",
        "freeze the guest's file systems through qemu-guest-agent while the backup starts "
        "(a warning when the guest has no agent)",
        default=False,
    ),
]

RESTORE_OPTIONS = [
    OptionSpec(
        "format",
        "choice",
        "format of the restored disk images",
        default="qcow2",
        choices=("qcow2", "raw"),
    ),
    OptionSpec(
        "define",
        "bool",
        "define the domain on the endpoint from the stored XML, its disks on the restored "
        "images (the target folder must be on the libvirt host)",
        default=False,
    ),
    OptionSpec("name", "str", "name of the restored domain and its image files"),
    OptionSpec(
        "attach_to",
        "str",
        "attach the restored disk(s) to this existing domain as new virtio disks",
    ),
    OptionSpec(
        "new_identity",
        "bool",
        "give the defined domain a new UUID and new MAC addresses (default: when a name is given)",
    ),
]


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach one libvirt host and its backup exports."""

    uri: str
    user: str | None = None
    password: str | None = None
    nbd_transport: str = UNIX
    nbd_socket_dir: Path | None = None
    nbd_host: str | None = None
    nbd_port: int = DEFAULT_NBD_PORT
    scratch_dir: Path | None = None
    backup_mode: str = PULL
    push_dir: Path | None = None
    push_dir_local: Path | None = None


def quiesce_wanted(options: dict[str, object]) -> bool:
    """The job's ``quiesce`` option, checked."""
    return parse_bool(options.get("quiesce", False), "quiesce")


def _path(value: object, endpoint: str, name: str) -> Path | None:
    if value in (None, ""):
        return None
    path = Path(str(value))
    if not path.is_absolute():
        raise PluginError(f"endpoint {endpoint}: {name} must be an absolute path, not {value!r}")
    return path


def connection_settings(endpoint: EndpointInfo, ctx: PluginContext) -> ConnectionSettings:
    """Settings to reach ``endpoint`` (address: a libvirt URI), its password unsealed."""
    uri = endpoint.address.strip()
    parts = urlsplit(uri)
    if not _URI_SCHEME.match(parts.scheme) or "://" not in uri:
        raise PluginError(
            f"endpoint {endpoint.name}: address {uri!r} is not a libvirt URI "
            "(e.g. qemu+ssh://root@kvm1/system or qemu:///system)"
        )
    opts = endpoint.options
    password = None
    secret = opts.get("password_secret")
    if secret:
        try:
            password = ctx.read_secret(str(secret))
        except KeyError:
            raise PluginError(
                f"endpoint {endpoint.name}: the password secret {secret!r} is missing; "
                "register the endpoint again"
            ) from None
    transport = str(opts.get("nbd_transport") or UNIX)
    if transport not in (UNIX, TCP):
        raise PluginError(
            f"endpoint {endpoint.name}: nbd_transport must be unix or tcp, not {transport!r}"
        )
    port = opts.get("nbd_port", DEFAULT_NBD_PORT)
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise PluginError(f"endpoint {endpoint.name}: nbd_port must be a TCP port, not {port!r}")
    nbd_host = opts.get("nbd_host") or parts.hostname
    if transport == TCP and not nbd_host:
        raise PluginError(
            f"endpoint {endpoint.name}: the tcp transport needs nbd_host (the URI names no host)"
        )
    mode = str(opts.get("backup_mode") or PULL)
    if mode not in (PULL, PUSH):
        raise PluginError(
            f"endpoint {endpoint.name}: backup_mode must be pull or push, not {mode!r}"
        )
    push_dir = _path(opts.get("push_dir"), endpoint.name, "push_dir")
    if mode == PUSH and push_dir is None:
        raise PluginError(f"endpoint {endpoint.name}: push mode needs push_dir")
    user = opts.get("user")
    return ConnectionSettings(
        uri=uri,
        user=str(user) if user else None,
        password=password,
        nbd_transport=transport,
        nbd_socket_dir=_path(opts.get("nbd_socket_dir"), endpoint.name, "nbd_socket_dir"),
        nbd_host=str(nbd_host) if nbd_host else None,
        nbd_port=port,
        scratch_dir=_path(opts.get("scratch_dir"), endpoint.name, "scratch_dir"),
        backup_mode=mode,
        push_dir=push_dir,
        push_dir_local=_path(opts.get("push_dir_local"), endpoint.name, "push_dir_local")
        or push_dir,
    )
