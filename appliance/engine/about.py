"""What the appliance is: its version, home, catalog and time zone (the settings page)."""

from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

from sqlalchemy.engine import make_url

from ..config import Settings

DISTRIBUTION = "tapir-backup"


def version() -> str:
    """The installed distribution's version ("unknown" when run from a bare checkout)."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown"


def safe_catalog_url(url: str) -> str:
    """The catalog URL with any password masked (it may be shown in a browser)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is not shown at all rather than leaked
        return "(unparsable URL)"


def about(settings: Settings, timezone: str) -> dict[str, Any]:
    """Version, home, catalog URL (password masked), time zone, Python and host."""
    return {
        "version": version(),
        "home": str(settings.home),
        "catalog_url": safe_catalog_url(settings.database_url),
        "timezone": timezone,
        "python": platform.python_version(),
        "host": platform.node(),
    }
