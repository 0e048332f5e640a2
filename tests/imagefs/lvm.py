"""Writing an LVM2 physical volume with linear logical volumes into a plain file.

The LVM tools need device-mapper and block devices; this writer lays out the same
on-disk format they do (label, PV header, metadata area with the text metadata,
data area), so the reader is tested against the documented format without root.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .disks import MiB, copy_sparse

SECTOR = 512
EXTENT = 4 * MiB
PE_START = MiB  # data area: where extent 0 begins
MDA_START = 4096
MDA_SIZE = PE_START - MDA_START
MDA_MAGIC = b" LVM2 x[5A%r0N*>"


def _uuid(seed: str) -> str:
    return (seed * 32)[:32]  # LVM ids are 32 characters from [0-9A-Za-z]


def _dashed(uuid: str) -> str:
    cuts = [6, 4, 4, 4, 4, 4, 6]
    parts, at = [], 0
    for n in cuts:
        parts.append(uuid[at : at + n])
        at += n
    return "-".join(parts)


def write_pv(path: Path, size: int, vg: str, volumes: list[tuple[str, Path, int]]) -> None:
    """A PV of ``size`` bytes in ``path`` holding volume group ``vg`` with linear LVs.

    ``volumes`` are (name, file system image, size in bytes: a multiple of 4 MiB).
    """
    pv_id = _uuid("Pv0a")
    extents = (size - PE_START) // EXTENT
    lv_text, first = [], 0
    for n, (name, _, lv_size) in enumerate(volumes):
        count = lv_size // EXTENT
        lv_text.append(
            f"""{name} {{
id = "{_dashed(_uuid(f"Lv{n}x"))}"
status = ["READ", "WRITE", "VISIBLE"]
flags = []
segment_count = 1

segment1 {{
start_extent = 0
extent_count = {count}
type = "striped"
stripe_count = 1

stripes = [
"pv0", {first}
]
}}
}}
"""
        )
        first += count
    assert first <= extents, "the logical volumes do not fit"
    metadata = (
        f"""{vg} {{
id = "{_dashed(_uuid("Vg0b"))}"
seqno = 1
format = "lvm2"
status = ["RESIZEABLE", "READ", "WRITE"]
flags = []
extent_size = {EXTENT // SECTOR}
max_lv = 0
max_pv = 0
metadata_copies = 0

physical_volumes {{

pv0 {{
id = "{_dashed(pv_id)}"
device = "/dev/vda2"
status = ["ALLOCATABLE"]
flags = []
dev_size = {size // SECTOR}
pe_start = {PE_START // SECTOR}
pe_count = {extents}
}}
}}

logical_volumes {{

{"".join(lv_text)}}}
}}
contents = "Text Format Volume Group"
version = 1
description = "written by the imagefs tests"
creation_host = "tests"
creation_time = 1600000000
""".encode()
        + b"\0"
    )
    label = struct.pack("<8sQII8s", b"LABELONE", 1, 0, 32, b"LVM2 001")
    pv_header = struct.pack("<32sQ", pv_id.encode(), size)
    areas = struct.pack("<QQQQ", PE_START, 0, 0, 0) + struct.pack(
        "<QQQQ", MDA_START, MDA_SIZE, 0, 0
    )
    mda = struct.pack("<I16sIQQ", 0, MDA_MAGIC, 1, MDA_START, MDA_SIZE)
    raw_locn = struct.pack("<QQII", SECTOR, len(metadata), 0, 0) + bytes(24)
    with open(path, "wb") as f:
        f.truncate(size)
        f.seek(SECTOR)
        f.write(label + pv_header + areas)
        f.seek(MDA_START)
        f.write(mda + raw_locn)
        f.seek(MDA_START + SECTOR)
        f.write(metadata)
    offset = PE_START
    for _, image, lv_size in volumes:
        copy_sparse(image, path, offset)
        offset += lv_size
