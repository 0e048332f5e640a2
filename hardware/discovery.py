"""Locally attached changers and tape drives, found through sysfs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

SYSFS = Path("/sys")
TYPES = {1: "tape", 8: "changer"}


@dataclass(frozen=True)
class LocalDevice:
    """One SCSI generic node: what it is and which tape nodes belong to it."""

    sg: str
    kind: str
    vendor: str
    model: str
    revision: str
    serial: str | None
    hctl: str
    st: str | None = None
    nst: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return asdict(self)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _serial(device: Path) -> str | None:
    try:
        raw = (device / "vpd_pg80").read_bytes()
    except OSError:
        return None
    if len(raw) < 4:
        return None
    length = int.from_bytes(raw[2:4], "big")
    return raw[4 : 4 + length].decode("ascii", "replace").strip() or None


def scan(sysfs: Path = SYSFS, dev: Path = Path("/dev")) -> list[LocalDevice]:
    """Every changer and tape drive behind /sys/class/scsi_generic, sg0 first."""
    root = sysfs / "class" / "scsi_generic"
    if not root.is_dir():
        return []
    found = []
    nodes = sorted(root.iterdir(), key=lambda p: (len(p.name), p.name))
    for node in nodes:
        device = node / "device"
        try:
            dtype = int(_read(device / "type") or "-1")
        except ValueError:
            continue
        if dtype not in TYPES:
            continue
        st = nst = None
        tapes = device / "scsi_tape"
        if tapes.is_dir():
            names = sorted(p.name for p in tapes.iterdir())
            st = next((str(dev / n) for n in names if n.startswith("st") and n[2:].isdigit()), None)
            nst = next(
                (str(dev / n) for n in names if n.startswith("nst") and n[3:].isdigit()), None
            )
        found.append(
            LocalDevice(
                sg=str(dev / node.name),
                kind=TYPES[dtype],
                vendor=_read(device / "vendor") or "",
                model=_read(device / "model") or "",
                revision=_read(device / "rev") or "",
                serial=_serial(device),
                hctl=device.resolve().name,
                st=st,
                nst=nst,
            )
        )
    return found
