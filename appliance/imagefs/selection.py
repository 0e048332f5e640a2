"""What a restore of image files covers: each chosen address and everything below it,
with the relative name each entry gets at the destination."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator, Sequence

from .address import Address
from .errors import ImageFsError
from .model import Entry
from .point import PointFiles


def root_name(address: Address) -> str:
    """The name a chosen address gets at the destination (a volume's root: its disk/volume)."""
    base = posixpath.basename(address.path.rstrip("/"))
    return base or f"{address.disk}-{address.volume}".replace("/", "_")


def check_addresses(addresses: Sequence[Address]) -> None:
    """Refuse an empty choice, non-file addresses, and two choices with the same name."""
    if not addresses:
        raise ValueError("nothing chosen: name at least one DISK:VOLUME/PATH")
    seen: dict[str, Address] = {}
    for address in addresses:
        if address.disk is None or address.volume is None:
            raise ValueError(f"{str(address) or 'the point'} is not a path in a file system")
        name = root_name(address)
        if name in seen:
            raise ImageFsError(
                f"{seen[name]} and {address} would both be restored as {name!r}; "
                "restore them one at a time"
            )
        seen[name] = address


def members(
    files: PointFiles, addresses: Sequence[Address]
) -> Iterator[tuple[str, Address, Entry]]:
    """Every entry to restore with its relative destination name, folders before contents."""
    check_addresses(addresses)
    for chosen in addresses:
        top = root_name(chosen)
        prefix = len(chosen.path.rstrip("/"))
        for address, entry in files.walk(chosen):
            rel = top + address.path[prefix:] if address.path != chosen.path else top
            yield rel, address, entry
