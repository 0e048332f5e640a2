"""The job options of the file source, checked once before a backup starts."""

from __future__ import annotations

import os
from dataclasses import dataclass

from tapir.appliance.plugin_api import OptionSpec, PluginError
from tapir.appliance.plugin_api.option_values import parse_bool

OPTION_SPECS: list[OptionSpec] = [
    OptionSpec(
        "paths",
        type="list[str]",
        required=True,
        help="Absolute paths to back up (folders are walked, symbolic links are never followed).",
    ),
    OptionSpec(
        "include",
        type="list[str]",
        default=[],
        help="Glob patterns (** crosses folders) that take back what a less specific "
        "exclude pattern removed. See docs/plugins/files.md.",
    ),
    OptionSpec(
        "exclude",
        type="list[str]",
        default=[],
        help="Glob patterns of paths to leave out; a pattern without a leading / matches "
        "at any depth.",
    ),
    OptionSpec(
        "one_file_system",
        type="bool",
        default=False,
        help="Do not descend into folders that are mount points of other file systems.",
    ),
    OptionSpec(
        "exclude_caches",
        type="bool",
        default=True,
        help="Leave out the contents of folders holding a valid CACHEDIR.TAG.",
    ),
]

_KNOWN = {spec.name for spec in OPTION_SPECS}


@dataclass(frozen=True)
class FilesOptions:
    """The validated options of one file backup job."""

    paths: tuple[bytes, ...]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    one_file_system: bool = False
    exclude_caches: bool = True

    @classmethod
    def parse(cls, raw: dict[str, object]) -> FilesOptions:
        """Check a job's option dict; raises :class:`PluginError` naming the bad option."""
        unknown = sorted(set(raw) - _KNOWN)
        if unknown:
            raise PluginError(f"files: unknown option(s) {', '.join(unknown)}")
        paths = tuple(_absolute_path(p) for p in _as_list(raw.get("paths"), "paths"))
        if not paths:
            raise PluginError("files: option 'paths' needs at least one absolute path")
        return cls(
            paths=paths,
            include=tuple(_pattern(p, "include") for p in _as_list(raw.get("include"), "include")),
            exclude=tuple(_pattern(p, "exclude") for p in _as_list(raw.get("exclude"), "exclude")),
            one_file_system=_as_bool(raw.get("one_file_system", False), "one_file_system"),
            exclude_caches=_as_bool(raw.get("exclude_caches", True), "exclude_caches"),
        )


def _as_list(value: object, name: str) -> list[object]:
    if value is None:
        return []
    # A single string is accepted because the CLI's --option key=value gives one.
    if isinstance(value, str | bytes):
        return [value]
    if isinstance(value, list | tuple):
        return list(value)
    raise PluginError(f"files: option {name!r} must be a list, not {type(value).__name__}")


def _absolute_path(value: object) -> bytes:
    if isinstance(value, str):
        path = os.fsencode(value)
    elif isinstance(value, bytes):
        path = value
    else:
        raise PluginError(f"files: every path must be a string, not {type(value).__name__}")
    if not path.startswith(b"/"):
        raise PluginError(f"files: path {os.fsdecode(path)!r} is not absolute")
    if b"\0" in path:
        raise PluginError("files: a path contains a NUL byte")
    # normpath keeps a leading "//" (POSIX allows it a meaning); Linux gives it none.
    return b"/" + os.path.normpath(path).lstrip(b"/")


def _pattern(value: object, name: str) -> str:
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, str) or not value.strip("/"):
        raise PluginError(f"files: {name} pattern {value!r} is empty or not a string")
    return value


def _as_bool(value: object, name: str) -> bool:
    return parse_bool(value, name, "files: option")
