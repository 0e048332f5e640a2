"""Pools: creating and opening a pool's medium and repository through its media plugin."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ..catalog.lookup import optional_id_by_name
from ..catalog.models import Pool, RetentionPolicy
from ..datapath.repository import Repository
from ..plugin_api.context import PoolInfo
from ..plugin_api.errors import TapirError
from .context import EngineContext

if TYPE_CHECKING:
    from .monitor import RunMonitor

DEFAULT_POOL = "default"
COMPRESSIONS = ("zstd:3", "zstd:1", "none")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


def validate_name(kind: str, name: str) -> str:
    """A pool, job or policy name: letters, digits, '.', '_' and '-' (no paths, no spaces)."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '_' and '-' "
            "(starting with a letter or digit)"
        )
    return name


def validate_compression(compression: str) -> str:
    """One of :data:`COMPRESSIONS`."""
    if compression not in COMPRESSIONS:
        raise ValueError(
            f"unknown compression {compression!r} (choose from {', '.join(COMPRESSIONS)})"
        )
    return compression


def pool_info(pool: Pool) -> PoolInfo:
    """The view of a pool its media plugin receives."""
    return PoolInfo(id=pool.id, name=pool.name, media=pool.media, options=dict(pool.options))


def create_pool(
    env: EngineContext,
    name: str,
    media: str = "disk",
    *,
    path: Path | None = None,
    encrypted: bool = False,
    compression: str = "zstd:3",
    retention: str | None = None,
    options: dict[str, Any] | None = None,
    max_concurrent_runs: int | None = None,
) -> Pool:
    """Record the pool, create its medium and initialise its repository.

    A failure to create the medium removes the row again, so no pool is left
    without a medium (and a media plugin refuses a medium that already holds data).
    """
    validate_name("pool", name)
    validate_compression(compression)
    plugin = env.registry.media_plugin(media)
    opts: dict[str, Any] = dict(options or {})
    if path is not None:
        opts["path"] = str(Path(path).expanduser().resolve())
    elif "path" not in opts and any(o.name == "path" for o in plugin.pool_options()):
        opts["path"] = str(env.settings.pools_dir / name)
    for spec in plugin.pool_options():
        if spec.required and spec.name not in opts:
            raise ValueError(f"media {media!r} needs the pool option {spec.name!r}")
    if max_concurrent_runs is not None and max_concurrent_runs < 1:
        raise ValueError("max_concurrent_runs must be at least 1")
    master_key = env.master_key()
    with env.catalog.session() as s:
        if s.scalar(select(Pool.id).where(Pool.name == name)) is not None:
            raise ValueError(f"a pool named {name!r} already exists")
        policy_id = optional_id_by_name(s, RetentionPolicy, retention, "retention policy")
        pool = Pool(
            name=name,
            media=media,
            options=opts,
            encrypted=encrypted,
            compression=compression,
            retention_policy_id=policy_id,
            max_concurrent_runs=max_concurrent_runs,
        )
        s.add(pool)
        s.flush()
        pool_id = pool.id
    # The medium is made outside the catalog transaction: a media plugin may look
    # things up in the catalog (a tape pool checks its devices), which would wait
    # on this very transaction's write lock on SQLite. A failure removes the row.
    try:
        store = plugin.create(pool_info(pool), env.plugin_context(media))
        try:
            repo = Repository.initialize(
                store, master_key=master_key, encrypted=encrypted, compression=compression
            )
        finally:
            store.close()
    except BaseException:
        with env.catalog.session() as s:
            row = s.get(Pool, pool_id)
            if row is not None:
                s.delete(row)
        raise
    with env.catalog.session() as s:
        row = s.get(Pool, pool_id)
        assert row is not None
        row.options = {**opts, MEDIUM_ID: repo.pool_id}
        s.flush()
        return row


#: Pool option recording the medium's own id, checked at every opening.
MEDIUM_ID = "medium_id"


@contextmanager
def open_repository(
    env: EngineContext, pool: Pool, monitor: RunMonitor | None = None
) -> Iterator[Repository]:
    """The pool's repository, opened with the master key; the medium is closed afterwards.

    With a run's ``monitor``, the media plugin logs into the run's log, reports to its
    progress (a tape pool waiting for a free drive says so) and sees its cancellation.
    """
    plugin = env.registry.media_plugin(pool.media)
    if monitor is not None:
        ctx = env.plugin_context(
            pool.media,
            run_id=monitor.run_id,
            progress=monitor.progress,
            check_canceled=monitor.check_canceled,
        )
    else:
        ctx = env.plugin_context(pool.media)
    store = plugin.open(pool_info(pool), ctx)
    try:
        try:
            repo = Repository.open(store, master_key=env.master_key())
        except FileNotFoundError as exc:
            raise TapirError(f"pool {pool.name!r} has no repository on its medium: {exc}") from exc
        expected = pool.options.get(MEDIUM_ID)
        if expected and repo.pool_id != expected:
            # Another pool mounted at the registered path (a swapped disk, a wrong
            # mount): writing or pruning against it would mix two pools' histories.
            raise TapirError(
                f"the medium of pool {pool.name!r} holds another pool (id {repo.pool_id}, "
                f"expected {expected}); check what is mounted at {pool.options.get('path')}"
            )
        yield repo
    finally:
        store.close()


def get_pool(env: EngineContext, name: str) -> Pool:
    """The pool row ``name`` (detached); KeyError when there is none."""
    with env.catalog.session() as s:
        pool = s.scalar(select(Pool).where(Pool.name == name))
        if pool is None:
            raise KeyError(f"no pool named {name!r}")
        return pool
