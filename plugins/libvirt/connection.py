"""Opening and closing a libvirt connection, with errors an operator can act on."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import libvirt

from tapir.appliance.plugin_api import ConnectionFailed, PluginError

from .options import ConnectionSettings


def _quiet(_userdata: object, _error: object) -> None:
    # libvirt prints every error to stderr by default; Tapir reports them itself.
    return None


libvirt.registerErrorHandler(_quiet, None)


def describe(exc: libvirt.libvirtError) -> str:
    """libvirt's own message without the Python wrapper's "virXxx() failed" text."""
    return exc.get_error_message() or str(exc)


def _open(settings: ConnectionSettings) -> libvirt.virConnect:
    if settings.user is None and settings.password is None:
        return libvirt.open(settings.uri)

    def answer(credentials: list[list[object]], _data: object) -> int:
        for cred in credentials:
            if cred[0] == libvirt.VIR_CRED_AUTHNAME:
                cred[4] = settings.user or ""
            elif cred[0] == libvirt.VIR_CRED_PASSPHRASE:
                cred[4] = settings.password or ""
            else:
                return -1
        return 0

    auth = [[libvirt.VIR_CRED_AUTHNAME, libvirt.VIR_CRED_PASSPHRASE], answer, None]
    return libvirt.openAuth(settings.uri, auth, 0)


@contextlib.contextmanager
def connect(settings: ConnectionSettings) -> Iterator[libvirt.virConnect]:
    """A connection to ``settings.uri``, closed on exit; ConnectionFailed with libvirt's reason."""
    try:
        conn = _open(settings)
    except libvirt.libvirtError as exc:
        raise ConnectionFailed(f"cannot connect to {settings.uri}: {describe(exc)}") from None
    try:
        yield conn
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()


def lookup_domain(conn: libvirt.virConnect, uuid: str, name: str) -> libvirt.virDomain:
    """The domain by UUID (stable across renames), else by name; PluginError when gone."""
    if uuid:
        with contextlib.suppress(libvirt.libvirtError):
            return conn.lookupByUUIDString(uuid)
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError:
        raise PluginError(
            f"domain {name!r} ({uuid or 'no UUID'}) is not defined on {conn.getURI()}"
        ) from None
    if uuid and dom.UUIDString() != uuid:
        raise PluginError(
            f"domain {name!r} on {conn.getURI()} has UUID {dom.UUIDString()}, not {uuid}: "
            "another domain took its name; rediscover the endpoint"
        )
    return dom
