"""Where the appliance keeps its state, read from the environment.

TAPIR_HOME (default ~/.local/share/tapir, /var/lib/tapir on the appliance image)
holds the embedded SQLite catalog, the default disk pool and the secrets folder.
TAPIR_DATABASE_URL points the catalog at PostgreSQL instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str

    @property
    def secrets_dir(self) -> Path:
        return self.home / "secrets"

    @property
    def pools_dir(self) -> Path:
        return self.home / "pools"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def master_key_path(self) -> Path:
        return self.secrets_dir / "master.key"


def default_home() -> Path:
    env = os.environ.get("TAPIR_HOME")
    if env:
        return Path(env).expanduser().resolve()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return (base / "tapir").resolve()


def load_settings(home: Path | None = None, database_url: str | None = None) -> Settings:
    home = (home or default_home()).resolve()
    url = database_url or os.environ.get("TAPIR_DATABASE_URL") or f"sqlite:///{home / 'catalog.db'}"
    return Settings(home=home, database_url=url)
