"""Disaster recovery: rebuilding volume rows and tape indexes from the tapes alone.

Every Tapir cartridge describes itself (docs/format/tape.md, section 8): its
media label names the cartridge and pool, its media-set label the set and its
place in it, and the last catalog file lists every tape file with the chunks and
manifests it holds. The manifest archives also carry the pool's config files
(the repository config with its wrapped keys). Reading those from every
cartridge in the library is enough to rebuild the pool's tape index, after
which ``tapir pool attach`` and ``tapir pool rescan`` bring the recovery points
back into the catalog.

Cartridges out of the library are not read: import every cartridge of the pool
first, because the rebuilt index replaces the old one and knows only what was read.

A drive-encrypted pool's labels are in clear; its catalog and archives are not.
Before reading past a cartridge's labels the rebuild sends the drive key of the
pool the media-set label names, taken from the secret store (where ``tapir tape
drive-key import`` puts it). Without it the cartridge is reported unreadable,
naming the missing key and the command that brings it back.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tapir.appliance.plugin_api import DeviceInfo, PluginContext, TapirError, VolumeInfo
from tapir.hardware.errors import HardwareError

from .blockio import open_file, read_volume_catalog
from .drive_crypto import DriveCrypto, is_decryption_error, load_drive_key, missing_key_message
from .format import (
    DEFAULT_BLOCK_SIZE,
    FileKind,
    MediaLabel,
    MediaSetLabel,
    TapeFormatError,
    VolumeCatalog,
    build_index,
)
from .index import split_entry_name
from .inventory import media_type_of, registry, sync_inventory
from .keyprint import key_fingerprint
from .labels import ForeignTape, read_media_label, read_media_set_label
from .poolindex import open_index

#: Registers pool NAME from its rebuilt index (``tapir pool attach``); raises on refusal.
AttachFn = Callable[[str], None]
#: Adds the recovery points of pool NAME to the catalog (``tapir pool rescan``): its report.
RescanFn = Callable[[str], dict[str, Any]]


@dataclass
class TapeRead:
    """What one cartridge said about itself."""

    barcode: str
    location: str
    label: MediaLabel | None = None
    set_label: MediaSetLabel | None = None
    catalog: VolumeCatalog | None = None
    manifests: dict[str, bytes] = field(default_factory=dict)
    configs: dict[str, bytes] = field(default_factory=dict)
    status: str = ""  # "blank", "foreign", "labelled", "media set", "unreadable"
    problem: str = ""
    skipped: bool = False  # labelled for a pool this rebuild was not asked for


@dataclass
class PoolRebuild:
    """One pool rebuilt from its tapes."""

    pool: str
    volumes: list[str] = field(default_factory=list)
    media_sets: list[str] = field(default_factory=list)
    chunks: int = 0
    manifests: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    in_catalog: bool = False
    attached: bool = False  # attached by this rebuild
    rescanned: bool = False
    points_added: int = 0
    open_sets: list[str] = field(default_factory=list)  # not sealed: backups may append
    #: Media set -> the key fingerprint its media-set labels carry (None: not encrypted).
    key_fingerprints: dict[str, str | None] = field(default_factory=dict)


@dataclass
class RebuildReport:
    """The outcome of :func:`rebuild_catalog`."""

    changer: str
    tapes: list[dict[str, Any]] = field(default_factory=list)
    pools: list[PoolRebuild] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)

    def lines(self) -> list[str]:
        """The report for an operator."""
        out = [
            f"{t['barcode']} ({t['location']}): {t['status']}"
            + (f": {t['problem']}" if t["problem"] else "")
            for t in self.tapes
        ]
        for p in self.pools:
            out.append(
                f"pool {p.pool}: {len(p.volumes)} volume(s), {len(p.media_sets)} media set(s), "
                f"{p.chunks} chunk(s), {len(p.manifests)} recovery point(s) rebuilt"
                + (", pool attached" if p.attached else "")
                + (
                    f", {p.points_added} recovery point(s) added to the catalog"
                    if p.rescanned
                    else ""
                )
            )
            out += [
                f"  media set {ms}: " + (f"key fingerprint {fp}" if fp else "not encrypted")
                for ms, fp in sorted(p.key_fingerprints.items())
            ]
            out += [f"  warning: {w}" for w in p.warnings]
        out += [f"warning: {w}" for w in self.warnings]
        out += [f"error: {e}" for e in self.errors]
        if self.next_steps:
            out.append("next steps:")
            out += [f"  {s}" for s in self.next_steps]
        return out


def rebuild_catalog(
    ctx: PluginContext,
    changer: str,
    drives: list[DeviceInfo],
    *,
    pool: str | None = None,
    replace: bool = False,
    attach: AttachFn | None = None,
    rescan: RescanFn | None = None,
) -> RebuildReport:
    """Read every cartridge of ``changer`` and rebuild the tape indexes and volume rows.

    Only pools named on the tapes are rebuilt (``pool`` limits it to one). A pool
    the catalog lacks is registered with ``attach`` (when given), then volume rows
    are saved with their pool, then ``rescan`` (when given) adds the recovery
    points. Without ``attach`` the rows of an unknown pool are saved without a pool
    and the report's next steps say what to run; so do they when ``rescan`` fails
    (an encrypted pool whose key must be imported first). An existing index that
    knows media sets none of the cartridges holds is kept unless ``replace``.
    """
    from .library import Library
    from .reservation import reserve_drive

    report = RebuildReport(changer=changer)
    library = Library(ctx, changer)
    reads: list[TapeRead] = []
    try:
        inventory = library.inventory()
        sync_inventory(ctx, changer, inventory)
        wanted = sorted(
            (el for el in (*inventory.slots, *inventory.drives) if el.full and el.barcode),
            key=lambda el: el.barcode or "",
        )
        mail = [el.barcode for el in inventory.mail_slots if el.full]
        if mail:
            report.warnings.append(
                f"cartridges in the mail slots were not read ({', '.join(map(str, mail))}): "
                "run 'tapir tape import' and rebuild again"
            )
        with reserve_drive(ctx, drives, purpose="catalog rebuild") as lease:
            keys = DriveKeys(ctx, lease.drive)
            for el in wanted:
                if el.cleaning:
                    continue
                assert el.barcode is not None
                ctx.check_canceled()
                ctx.progress.advance(current=f"reading {el.barcode}")
                reads.append(_read_tape(ctx, library, lease.drive, el.barcode, el.name, pool, keys))
    finally:
        library.close()
    for r in reads:
        report.tapes.append(
            {
                "barcode": r.barcode,
                "location": r.location,
                "status": r.status,
                "problem": r.problem,
                "pool": r.label.pool if r.label else None,
                "media_set": r.set_label.media_set if r.set_label else None,
            }
        )
    pools = sorted({r.label.pool for r in reads if r.label and r.label.pool and r.set_label})
    if pool is not None:
        pools = [p for p in pools if p == pool]
        if not pools:
            report.errors.append(f"no cartridge in {changer} holds a media set of pool {pool}")
    for name in pools:
        members = [r for r in reads if r.set_label and r.set_label.pool == name and r.catalog]
        report.pools.append(_rebuild_pool(ctx, name, members, report, replace=replace))
    if attach is not None:
        for p in report.pools:
            if p.in_catalog:
                continue
            try:
                attach(p.pool)
                ctx.catalog["pool_info"](p.pool)
                p.in_catalog = p.attached = True
            except (TapirError, KeyError, ValueError) as exc:
                report.errors.append(f"pool {p.pool}: not attached: {_message(exc)}")
    _save_volumes(ctx, reads, report)
    if rescan is not None:
        for p in report.pools:
            if not p.in_catalog:
                continue
            try:
                result = rescan(p.pool)
                p.rescanned = True
                p.points_added = len(result.get("added", []))
            except (TapirError, KeyError, ValueError) as exc:
                p.warnings.append(f"recovery points not added yet: {_message(exc)}")
    _next_steps(changer, drives, report)
    return report


def _message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


class DriveKeys:
    """The drive keys a rebuild sends: a pool's key from the secret store, if it has one."""

    def __init__(self, ctx: PluginContext, device: DeviceInfo) -> None:
        self.ctx = ctx
        self.device = device
        self._cryptos: dict[str, DriveCrypto | None] = {}
        #: The pool whose key the drive holds for the cartridge being read.
        self.engaged: DriveCrypto | None = None

    def engage(self, tape: Any, pool: str) -> None:
        """Send ``pool``'s key to the drive if the pool has one and the drive can use it."""
        if pool not in self._cryptos:
            # The pool may not be in the catalog (yet): its key alone says it was encrypted.
            has_key = load_drive_key(self.ctx, pool) is not None
            crypto = DriveCrypto(self.ctx, pool, "auto", writing=False) if has_key else None
            self._cryptos[pool] = crypto
        crypto = self._cryptos[pool]
        if crypto is not None and crypto.engage(tape, self.device):
            self.engaged = crypto

    def release(self, tape: Any) -> None:
        """Clear the key from the drive before the cartridge is unloaded."""
        crypto, self.engaged = self.engaged, None
        if crypto is not None:
            crypto.release(tape, self.device)


def _problem(exc: BaseException, read: TapeRead, keys: DriveKeys) -> str:
    if not is_decryption_error(exc):
        return str(exc)
    pool = read.set_label.pool if read.set_label else None
    return missing_key_message(pool, read.barcode, exc, key_loaded=keys.engaged is not None)


def _read_tape(
    ctx: PluginContext,
    library: Any,
    device: DeviceInfo,
    barcode: str,
    where: str,
    pool: str | None,
    keys: DriveKeys,
) -> TapeRead:
    read = TapeRead(barcode=barcode, location=where)
    try:
        tape = library.mount(barcode, device)
    except (TapirError, HardwareError) as exc:
        read.status, read.problem = "unreadable", f"cannot load it: {exc}"
        return read
    read.location = where
    try:
        _read_labels_and_catalog(tape, read, pool, keys)
    except (TapirError, HardwareError) as exc:
        read.status, read.problem = "unreadable", _problem(exc, read, keys)
    finally:
        try:
            keys.release(tape)
            library.unmount(device, tape)
        finally:
            tape.close()
    ctx.logger.info("read %s: %s %s", barcode, read.status, read.problem)
    return read


def _read_labels_and_catalog(tape: Any, read: TapeRead, pool: str | None, keys: DriveKeys) -> None:
    try:
        label = read_media_label(tape, DEFAULT_BLOCK_SIZE)
    except ForeignTape as exc:
        read.status, read.problem = "foreign", str(exc)
        return
    if label is None:
        read.status = "blank"
        return
    read.label = label
    read.status = "labelled"
    if label.barcode != read.barcode:
        read.status = "unreadable"
        read.problem = f"its media label says barcode {label.barcode}: not trusted"
        return
    if pool is not None and label.pool != pool:
        read.skipped = True  # another pool's tape: read no further, change nothing
        return
    block_size = label.block_size or DEFAULT_BLOCK_SIZE
    read.set_label = read_media_set_label(tape, block_size)
    if read.set_label is None:
        return
    read.status = "media set"
    if read.set_label.volume != label.volume:
        raise TapeFormatError("the media-set label names another cartridge than the media label")
    keys.engage(tape, read.set_label.pool)  # the labels are clear, what follows may not be
    catalog, _files = read_volume_catalog(tape, block_size)
    if catalog.header.volume != label.volume:
        raise TapeFormatError("the catalog names another cartridge than the media label")
    read.catalog = catalog
    for record in catalog.records:
        if record.kind != FileKind.MANIFEST_ARCHIVE:
            continue
        reader = open_file(tape, record.file_number, block_size)
        for entry in reader.manifests():
            kind, name = split_entry_name(entry.name)
            (read.configs if kind == "config" else read.manifests)[name] = entry.blob


def _rebuild_pool(
    ctx: PluginContext,
    pool: str,
    members: list[TapeRead],
    report: RebuildReport,
    *,
    replace: bool,
) -> PoolRebuild:
    result = PoolRebuild(pool=pool)
    by_set: dict[str, list[TapeRead]] = {}
    for r in members:
        assert r.set_label is not None and r.set_label.media_set is not None
        by_set.setdefault(r.set_label.media_set, []).append(r)
    set_created = {}
    # Later sets (and later volumes) override configs of earlier ones: the newest wins.
    ordered = sorted(
        members,
        key=lambda r: (r.set_label.set_created_at, r.set_label.volume_seq or 0),  # type: ignore[union-attr]
    )
    manifests: dict[str, bytes] = {}
    configs: dict[str, bytes] = {}
    for r in ordered:
        manifests.update(r.manifests)
        configs.update(r.configs)
    for media_set, reads in sorted(by_set.items()):
        set_created[media_set] = reads[0].set_label.set_created_at  # type: ignore[union-attr]
        prints = {r.set_label.key_fingerprint for r in reads}  # type: ignore[union-attr]
        if len(prints) > 1:
            result.warnings.append(
                f"media set {media_set}: its volumes name different key fingerprints "
                f"({', '.join(sorted(p or 'none' for p in prints))})"
            )
        result.key_fingerprints[media_set] = sorted(prints, key=lambda p: p or "")[-1]
        try:
            index = build_index([r.catalog for r in reads if r.catalog is not None])
        except TapeFormatError as exc:
            result.warnings.append(f"media set {media_set}: {exc}")
            continue
        if index.missing_volumes():
            result.warnings.append(
                f"media set {media_set}: volume(s) {index.missing_volumes()} missing "
                "(in the vault? import them and rebuild again)"
            )
        if index.incomplete_archives():
            result.warnings.append(
                f"media set {media_set}: {len(index.incomplete_archives())} archive(s) continue "
                "on a volume that was not read"
            )
        result.chunks += len(index.chunks)
    if "repository" not in configs:
        result.warnings.append(
            "no repository config on these tapes: the pool cannot be attached from them"
        )
    else:
        _check_fingerprints(result, configs["repository"])
    tape_index = open_index(ctx, pool)
    try:
        known = {m.uuid for m in tape_index.media_sets() if not m.expired}
        unseen = sorted(known - set(by_set))
        if unseen and not replace:
            # Rebuilding replaces the index: sets on cartridges not read (vaulted) would
            # vanish from it, and their recovery points could no longer be restored.
            report.errors.append(
                f"pool {pool}: its tape index knows media set(s) {', '.join(unseen)} that no "
                "cartridge in the library holds (vaulted?); import them and rebuild again, "
                "or rebuild from these tapes only with --replace"
            )
            result.warnings.append("index not rebuilt (see errors)")
            return result
        tape_index.rebuild_from(
            {r.barcode: r.catalog for r in members if r.catalog is not None},
            manifests,
            configs,
            pool=pool,
            set_created=set_created,
        )
        result.manifests = sorted(tape_index.manifest_names())
        # The index decides which set stays open for appending; the rows follow it.
        result.open_sets = [m.uuid for m in tape_index.media_sets() if not m.sealed]
    finally:
        tape_index.close()
    result.volumes = sorted(r.barcode for r in members)
    result.media_sets = sorted(by_set)
    result.configs = sorted(configs)
    try:
        ctx.catalog["pool_info"](pool)
        result.in_catalog = True
    except KeyError:
        result.in_catalog = False
    return result


def _check_fingerprints(result: PoolRebuild, repository_config: bytes) -> None:
    """Warn when a media set's label names other keys than the pool's config does."""
    try:
        expected = key_fingerprint(repository_config)
    except TapirError as exc:
        result.warnings.append(f"key fingerprint not checked: {exc}")
        return
    for media_set, found in sorted(result.key_fingerprints.items()):
        if found is not None and found != expected:
            result.warnings.append(
                f"media set {media_set} was written with key {found}, but the pool's "
                f"repository config names key {expected or 'none (not encrypted)'}"
            )


def _save_volumes(ctx: PluginContext, reads: list[TapeRead], report: RebuildReport) -> None:
    volumes = registry(ctx)
    open_sets = {ms for p in report.pools for ms in p.open_sets}
    last_seq: dict[str, int] = {}
    for r in reads:
        if r.set_label is not None and r.catalog is not None and r.set_label.media_set:
            ms = r.set_label.media_set
            last_seq[ms] = max(last_seq.get(ms, -1), r.set_label.volume_seq or 0)
    for r in reads:
        if r.label is None or r.skipped:
            continue  # blank and foreign tapes stay as the inventory made them
        row = volumes.get(r.barcode) or VolumeInfo(label=r.barcode)
        pool = r.label.pool if r.label.pool and _pool_exists(ctx, r.label.pool) else None
        media_type, worm = media_type_of(r.barcode)
        changes: dict[str, Any] = {
            "uuid": r.label.volume,
            "labeled": True,
            "pool": pool,
            "media_type": row.media_type or media_type,
            "worm": row.worm or worm,
        }
        if r.label.pool and pool is None:
            changes["note"] = f"pool {r.label.pool} (from its media label; attach the pool)"
        if r.set_label is not None and r.catalog is not None and pool is not None:
            seq = r.set_label.volume_seq
            ms = r.set_label.media_set or ""
            open_tail = ms in open_sets and seq == last_seq.get(ms)
            changes.update(
                media_set=r.set_label.media_set,
                media_set_seq=seq,
                state="writable" if open_tail else "full",
                last_written_at=_time(r.catalog.header.created_at),
            )
        elif r.set_label is None:
            changes.update(state="scratch", media_set=None, media_set_seq=None)
        else:
            # Part of a media set of a pool not yet attached: kept out of allocation.
            changes.update(state="full" if pool else "error", media_set=None, media_set_seq=None)
            if pool is None:
                changes["note"] = (
                    f"holds media set {r.set_label.media_set} of pool {r.label.pool}; "
                    "attach the pool and rebuild again"
                )
        try:
            volumes.save(dataclasses.replace(row, **changes))
        except (KeyError, ValueError) as exc:
            report.errors.append(f"{r.barcode}: volume row not saved: {exc}")


def _pool_exists(ctx: PluginContext, name: str) -> bool:
    try:
        ctx.catalog["pool_info"](name)
    except KeyError:
        return False
    return True


def _time(text: str) -> datetime:
    at = datetime.fromisoformat(text)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _next_steps(changer: str, drives: list[DeviceInfo], report: RebuildReport) -> None:
    names = " ".join(f"--option drives={d.name}" for d in drives)
    for p in report.pools:
        if not p.in_catalog:
            report.next_steps += [
                f"tapir pool attach {p.pool} --media tape --option changer={changer} {names}",
                f"tapir tape catalog rebuild --changer {changer} --pool {p.pool}"
                "   (again: the volume rows join the attached pool)",
                f"tapir pool key import {p.pool} KEYFILE   (only if the pool is encrypted)",
                f"tapir pool rescan {p.pool}",
            ]
        elif not p.rescanned:
            report.next_steps += [
                f"tapir pool key import {p.pool} KEYFILE   (if it is encrypted: the key "
                "exported from the lost appliance)",
                f"tapir pool rescan {p.pool}",
            ]
