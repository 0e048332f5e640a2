"""Reading plugin option values that arrive as JSON or as CLI text (``--option k=v``)."""

from __future__ import annotations

from .errors import PluginError

_TRUE = ("true", "yes", "1")
_FALSE = ("false", "no", "0")


def parse_bool(value: object, name: str, what: str = "option") -> bool:
    """A boolean option given as a bool or as true/false, yes/no, 1/0.

    PluginError "WHAT 'NAME' must be true or false, not ..." otherwise; ``what``
    says which kind of option it is ("endpoint option", "restore option"...).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise PluginError(f"{what} {name!r} must be true or false, not {value!r}")
