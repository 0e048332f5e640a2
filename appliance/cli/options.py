"""Turning ``--option key=value`` pairs into typed plugin options.

A plugin declares its options as :class:`OptionSpec` (``int``, ``bool``,
``list[str]``...). Values are converted by that declaration, so a typo such as
``--option compress=yes`` for an int is refused here, before anything is saved.
Keys the plugin does not declare are kept as text for the engine to judge.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..plugin_api.context import OptionSpec

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def split_pair(pair: str, what: str = "--option") -> tuple[str, str]:
    """``key=value`` to its two halves; refuses a pair without ``=`` or key."""
    key, sep, value = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"{what} expects key=value, got {pair!r}")
    return key, value


def convert(spec: OptionSpec, value: str) -> Any:
    """One text value converted to ``spec``'s type; ValueError names the option."""
    kind = spec.type
    if kind == "int":
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"option {spec.name} expects a whole number, got {value!r}") from None
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"option {spec.name} expects yes or no, got {value!r}")
    if kind == "choice" and spec.choices and value not in spec.choices:
        raise ValueError(
            f"option {spec.name} expects one of {', '.join(spec.choices)}, got {value!r}"
        )
    return value


def parse_options(pairs: Iterable[str], specs: Sequence[OptionSpec] = ()) -> dict[str, Any]:
    """Typed options from ``key=value`` pairs; a ``list[...]`` option may be repeated."""
    by_name = {s.name: s for s in specs}
    result: dict[str, Any] = {}
    for pair in pairs:
        key, value = split_pair(pair)
        spec = by_name.get(key)
        if spec is not None and spec.type.startswith("list"):
            result.setdefault(key, []).append(value)
        elif spec is not None:
            result[key] = convert(spec, value)
        else:
            result[key] = value
    return result
