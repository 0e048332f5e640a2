"""The pool key fingerprint a tape pool writes into its media-set labels.

The core stores, in clear, a 16-byte key check value in the pool's ``repository``
config (a one-way keyed hash of the pool keys, docs/format/chunks-and-manifests.md).
Its lowercase hex is the key fingerprint: ``tapir pool key export`` prints it, and
media-set labels, the vault report and a catalog rebuild show it, so an operator
can tell which exported key file opens which cartridges. No key is unwrapped here.
"""

from __future__ import annotations

from typing import Any

import msgpack

from tapir.appliance.plugin_api import TapirError

#: Name of the core's repository config in a pool's config files.
REPOSITORY_CONFIG = "repository"
_CHECK_LENGTH = 16


def key_fingerprint(repository_config: bytes | None) -> str | None:
    """The fingerprint of the pool keys the config describes; None for a plain pool.

    None also when there is no config yet (nothing encrypted can have been
    written then). TapirError when the config cannot be read, or when an
    encrypted pool's config has no valid check value: a media set of an
    encrypted pool is never labelled without its fingerprint.
    """
    if repository_config is None:
        return None
    try:
        config: Any = msgpack.unpackb(repository_config, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise TapirError(f"the pool's repository config is unreadable: {exc}") from None
    if not isinstance(config, dict):
        raise TapirError("the pool's repository config is not a map")
    if not config.get("encrypted"):
        return None
    check = config.get("key_check")
    if not isinstance(check, bytes) or len(check) != _CHECK_LENGTH:
        raise TapirError("the encrypted pool's repository config has no valid key check value")
    return check.hex()
