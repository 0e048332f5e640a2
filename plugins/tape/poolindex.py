"""Finding the tape pools and opening a pool's tape index for media management commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tapir.appliance.plugin_api import PluginContext, TapirError

from .index import TapeIndex
from .options import PoolSettings


def index_path(ctx: PluginContext, pool: str) -> Path:
    """Where pool ``pool``'s tape index lives (the same file the tape store opens)."""
    from .store import INDEX_FILE, index_folder

    return index_folder(ctx, pool) / INDEX_FILE


def open_index(ctx: PluginContext, pool: str) -> TapeIndex:
    """The pool's tape index (created empty when there is none yet)."""
    return TapeIndex(index_path(ctx, pool))


def pool_settings(ctx: PluginContext, pool: str) -> PoolSettings:
    """A tape pool's parsed options; KeyError for an unknown pool, TapirError for another medium."""
    info: Any = ctx.catalog["pool_info"](pool)
    if info.media != "tape":
        raise TapirError(f"pool {pool} is a {info.media} pool, not a tape pool")
    return PoolSettings.from_options(dict(info.options or {}))


def tape_pools(ctx: PluginContext, pool: str | None = None) -> list[tuple[str, PoolSettings]]:
    """``pool`` (which must be a tape pool), or every tape pool with volumes or an index.

    The plugin sees pools only by name; the tape pools are those its volume rows
    and its state folder name, which covers every pool that ever held a tape.
    """
    if pool is not None:
        return [(pool, pool_settings(ctx, pool))]
    names: set[str] = set()
    if ctx.volumes is not None:
        names.update(v.pool for v in ctx.volumes.list() if v.pool is not None)
    if ctx.state_dir is not None and (Path(ctx.state_dir) / "pools").is_dir():
        names.update(p.name for p in (Path(ctx.state_dir) / "pools").iterdir() if p.is_dir())
    found = []
    for name in sorted(names):
        try:
            info: Any = ctx.catalog["pool_info"](name)
        except KeyError:
            continue  # an index left behind by a pool that was removed
        if info.media == "tape":
            found.append((name, PoolSettings.from_options(dict(info.options or {}))))
    return found
