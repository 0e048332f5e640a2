"""Writing media labels on cartridges: one by name, or every new one of a library.

Before a label is written the drive reads what the tape carries, and the catalog
row says what Tapir knows of it. A cartridge holding a media set's data
(``writable``, ``full``), a retired one, a written WORM cartridge and a cleaning
cartridge are never labelled. A tape whose label names another pool, another
barcode, a cartridge this catalog does not know, or a foreign (non-Tapir)
recording is labelled only with ``force``; the forced relabel is written into the
volume's note, so the registry's audit event records it with the old label.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError, VolumeInfo
from tapir.hardware.errors import HardwareError

from .format import DEFAULT_BLOCK_SIZE, MediaLabel
from .inventory import is_in_library, registry

#: What read_media_label found: a Tapir label, None for a blank tape, or the error
#: that says the tape holds something else.
TapeLabel = MediaLabel | None | Exception


@dataclass
class LabelOutcome:
    """What happened to one cartridge."""

    barcode: str
    status: str  # "labelled", "refused", "skipped"
    message: str
    forced: bool = False
    uuid: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Verdict:
    """Whether a cartridge may be labelled: refused (with why), and whether only by force."""

    allowed: bool
    reason: str = ""
    needs_force: bool = False


def judge(row: VolumeInfo, on_tape: TapeLabel, pool: str | None) -> Verdict:
    """May ``row`` (read as ``on_tape``) be labelled for ``pool``? Pure: decides, never writes."""
    if row.cleaning:
        return Verdict(False, "a cleaning cartridge cannot be labelled")
    if row.state == "retired":
        return Verdict(False, "the volume is retired and is never written again")
    if row.state in ("writable", "full"):
        return Verdict(
            False,
            f"the volume is {row.state} in media set {row.media_set} of pool {row.pool}: "
            "it holds data; expire it first ('tapir tape expire')",
        )
    if row.worm and (row.labeled or on_tape is not None):
        return Verdict(False, "a WORM cartridge that was written is never written again")
    if isinstance(on_tape, Exception):
        return Verdict(False, f"the tape is not blank and not Tapir's: {on_tape}", True)
    if row.state == "error":
        return Verdict(False, "the volume is in state 'error'; check it first", True)
    if on_tape is None:
        return Verdict(True)
    if on_tape.barcode != row.label:
        return Verdict(
            False, f"the tape's label says barcode {on_tape.barcode}, not {row.label}", True
        )
    if row.uuid != on_tape.volume:
        return Verdict(
            False,
            f"the tape carries label {on_tape.volume}, unknown to this catalog "
            "(written by another appliance?)",
            True,
        )
    if on_tape.pool is not None and on_tape.pool != pool:
        return Verdict(False, f"the tape is labelled for pool {on_tape.pool}", True)
    return Verdict(True)


def new_cartridges(volumes: Iterable[VolumeInfo]) -> list[str]:
    """Barcodes of the data cartridges in a library never labelled (``--all-new``), sorted."""
    return sorted(
        v.label
        for v in volumes
        if not v.labeled and not v.cleaning and v.state == "scratch" and is_in_library(v.location)
    )


def pool_block_size(ctx: PluginContext, pool: str | None) -> int:
    """The pool's ``block_size`` option, or the format's default (also for no pool)."""
    if pool is None:
        return DEFAULT_BLOCK_SIZE
    info: Any = ctx.catalog["pool_info"](pool)
    if info.media != "tape":
        raise TapirError(f"pool {pool} is a {info.media} pool, not a tape pool")
    return int((info.options or {}).get("block_size") or DEFAULT_BLOCK_SIZE)


def label_volumes(
    ctx: PluginContext,
    changer: str,
    drives: list[DeviceInfo],
    barcodes: list[str],
    *,
    pool: str | None,
    force: bool = False,
    report: Callable[[LabelOutcome], None] = lambda outcome: None,
) -> list[LabelOutcome]:
    """Label ``barcodes`` for ``pool`` (None: the common scratch pool), one drive at a time.

    Every cartridge is loaded through the library into a reserved drive, its current
    label read and judged (:func:`judge`), then labelled. A refusal for one cartridge
    does not stop the others; each outcome is passed to ``report`` as it happens.
    """
    from .library import Library
    from .reservation import reserve_drive

    volumes = registry(ctx)
    block_size = pool_block_size(ctx, pool)
    outcomes: list[LabelOutcome] = []

    def done(outcome: LabelOutcome) -> None:
        outcomes.append(outcome)
        report(outcome)
        if outcome.status == "refused":
            ctx.logger.warning("not labelling %s: %s", outcome.barcode, outcome.message)

    rows: list[VolumeInfo] = []
    for barcode in barcodes:
        row = volumes.get(barcode)
        if row is None:
            done(LabelOutcome(barcode, "refused", "unknown barcode; run 'tapir tape inventory'"))
        elif row.cleaning:
            done(LabelOutcome(barcode, "refused", "a cleaning cartridge cannot be labelled"))
        else:
            rows.append(row)
    if not rows:
        return outcomes
    library = Library(ctx, changer)
    try:
        with reserve_drive(ctx, drives, purpose=f"label {len(rows)} cartridge(s)") as lease:
            for row in rows:
                ctx.check_canceled()
                ctx.progress.advance(current=f"labelling {row.label}")
                done(_label_one(ctx, library, lease.drive, row, pool, force, block_size))
    finally:
        library.close()
    return outcomes


def _label_one(
    ctx: PluginContext,
    library: Any,
    device: DeviceInfo,
    row: VolumeInfo,
    pool: str | None,
    force: bool,
    block_size: int,
) -> LabelOutcome:
    try:
        drive = library.mount(row.label, device)
    except (TapirError, HardwareError) as exc:
        # One cartridge the robot cannot reach must not stop the others.
        return LabelOutcome(row.label, "refused", f"cannot load it: {exc}")
    try:
        return _judge_and_write(ctx, drive, row, pool, force, block_size)
    finally:
        try:
            library.unmount(device, drive)
        finally:
            drive.close()


def _judge_and_write(
    ctx: PluginContext,
    drive: Any,
    row: VolumeInfo,
    pool: str | None,
    force: bool,
    block_size: int,
) -> LabelOutcome:
    from .drive_crypto import is_decryption_error
    from .labels import ForeignTape, read_media_label, write_media_label

    volumes = registry(ctx)
    try:
        on_tape: TapeLabel = read_media_label(drive, block_size)
    except (TapirError, HardwareError) as exc:
        on_tape = exc
        if is_decryption_error(exc):
            # Tapir writes labels in clear: an encrypted file 0 is another program's.
            on_tape = ForeignTape(f"its first tape file is encrypted in the drive ({exc})")
    row = volumes.get(row.label) or row  # mount updated the location
    verdict = judge(row, on_tape, pool)
    forced = False
    if not verdict.allowed:
        if not (verdict.needs_force and force):
            hint = " (use --force to overwrite it)" if verdict.needs_force else ""
            return LabelOutcome(row.label, "refused", verdict.reason + hint)
        forced = True
        ctx.logger.warning("relabelling %s with --force: %s", row.label, verdict.reason)
    # A cartridge this catalog knows keeps its uuid (write_media_label reuses it): a
    # forced relabel replaces another appliance's identity with ours.
    labelled = write_media_label(drive, row, pool, block_size)
    note = row.note
    if forced:
        note = f"relabelled with --force; before: {verdict.reason}"
    saved = volumes.save(
        dataclasses.replace(
            labelled,
            pool=pool,
            state="scratch",
            labeled=True,
            media_set=None,
            media_set_seq=None,
            expires_at=None,
            note=note,
        )
    )
    where = f"pool {pool}" if pool else "the common scratch pool"
    message = f"labelled for {where}" + (" (forced: " + verdict.reason + ")" if forced else "")
    return LabelOutcome(row.label, "labelled", message, forced=forced, uuid=saved.uuid)
