"""``tapir tape drive-key``: show, export and import a tape pool's drive encryption key."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click

from tapir.appliance.plugin_api import PluginContext, TapirError

from .drive_crypto import fingerprint, load_drive_key, store_drive_key
from .drive_keys import open_key, seal_key


def _passphrase_option(confirm: bool) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return click.option(
        "--passphrase",
        prompt="Passphrase for the key file",
        hide_input=True,
        confirmation_prompt=confirm,
        envvar="TAPIR_DRIVE_KEY_PASSPHRASE",
        help="asked for when not given (or set TAPIR_DRIVE_KEY_PASSPHRASE)",
    )


def register_drive_key(tape: click.Group, tape_ctx: Callable[[], PluginContext]) -> None:
    """Add ``drive-key show|export|import`` to the ``tapir tape`` group."""

    @tape.group("drive-key")
    def drive_key() -> None:
        """The per-pool key of hardware (drive) encryption: back it up, bring it back."""

    @drive_key.command("show")
    @click.argument("pool")
    def show_cmd(pool: str) -> None:
        """Print the fingerprint of POOL's drive key (never the key)."""
        key = load_drive_key(tape_ctx(), pool)
        if key is None:
            raise TapirError(f"pool {pool!r} has no drive key (drive_encryption is off?)")
        click.echo(f"{pool}: drive key {fingerprint(key)}")

    @drive_key.command("export")
    @click.argument("pool")
    @click.option("--out", "out", required=True, type=click.Path(path_type=Path))
    @_passphrase_option(confirm=True)
    def export_cmd(pool: str, out: Path, passphrase: str) -> None:
        """Write POOL's drive key, sealed under a passphrase, to a new file OUT."""
        ctx = tape_ctx()
        key = load_drive_key(ctx, pool)
        if key is None:
            raise TapirError(f"pool {pool!r} has no drive key (drive_encryption is off?)")
        data = seal_key(pool, key, passphrase)
        try:
            # O_EXCL: an export never replaces a file, which may be another pool's key.
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise TapirError(f"{out} exists; choose another file name") from None
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        ctx.audit("drive-key.export", pool, fingerprint=fingerprint(key), file=str(out))
        click.echo(f"{pool}: drive key {fingerprint(key)} written to {out}")

    @drive_key.command("import")
    @click.argument("pool")
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @_passphrase_option(confirm=False)
    def import_cmd(pool: str, file: Path, passphrase: str) -> None:
        """Bring POOL's drive key back from FILE (before attaching or rebuilding the pool)."""
        found = open_key(file.read_bytes(), passphrase)
        if found.pool != pool:
            raise TapirError(f"{file} holds the drive key of pool {found.pool!r}, not {pool!r}")
        ctx = tape_ctx()
        current = load_drive_key(ctx, pool)
        if current == found.key:
            click.echo(f"{pool}: drive key {found.fingerprint} is already in place")
            return
        if current is not None:
            raise TapirError(
                f"pool {pool!r} already has another drive key ({fingerprint(current)}); "
                "tapes written with it would become unreadable: nothing was changed"
            )
        store_drive_key(ctx, pool, found.key)
        ctx.audit("drive-key.import", pool, fingerprint=found.fingerprint, file=str(file))
        click.echo(f"{pool}: drive key {found.fingerprint} imported")
