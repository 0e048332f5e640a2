"""Include and exclude patterns: which paths a backup takes.

Patterns are globs matched against the whole absolute path: ``*`` and ``?`` stay
within one path component, ``[...]`` is a character class and ``**`` crosses
folders (``/srv/**/cache`` also matches ``/srv/cache``). A pattern that does not
start with ``/`` matches at any depth (``*.tmp`` is ``/**/*.tmp``).

The rule: a pattern that matches a folder applies to everything below it. A path
is left out when an exclude pattern applies to it, unless an include pattern that
also applies is *more specific*: it has more literal (non-wildcard) characters.
On a tie the exclude wins. An excluded folder is not walked at all, unless an
include pattern names a place inside it literally (its text before the first
wildcard starts with the folder's path and a ``/``); the folder is then walked
and stored only as the parent of what is taken back.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tapir.appliance.plugin_api import PluginError


@dataclass(frozen=True)
class Pattern:
    """One compiled glob with its specificity."""

    text: str
    regex: re.Pattern[bytes]
    specificity: int
    #: The literal folder prefix (ending in "/") before the first wildcard, for absolute patterns.
    anchor: bytes | None

    @classmethod
    def compile(cls, text: str) -> Pattern:
        """Compile a glob; raises :class:`PluginError` on a malformed one."""
        raw = os.fsencode(text).rstrip(b"/")
        absolute = raw.startswith(b"/")
        body = raw if absolute else b"**/" + raw
        try:
            regex = re.compile(_translate(body), re.DOTALL)
        except (re.error, ValueError) as exc:
            raise PluginError(f"files: pattern {text!r} is malformed: {exc}") from None
        anchor = None
        if absolute:
            first_wild = min((i for i, c in enumerate(raw) if c in b"*?["), default=len(raw))
            anchor = raw[: raw.rfind(b"/", 0, first_wild) + 1] if first_wild < len(raw) else raw
        return cls(text, regex, _literal_count(raw), anchor)

    def matches(self, path: bytes) -> bool:
        """True when the whole absolute ``path`` matches."""
        return self.regex.fullmatch(path) is not None


def _translate(glob: bytes) -> bytes:
    out: list[bytes] = []
    i, n = 0, len(glob)
    while i < n:
        c = glob[i : i + 1]
        if glob.startswith(b"**/", i):
            out.append(b"(?:.*/)?")
            i += 3
        elif glob.startswith(b"**", i):
            out.append(b".*")
            i += 2
        elif c == b"*":
            out.append(b"[^/]*")
            i += 1
        elif c == b"?":
            out.append(b"[^/]")
            i += 1
        elif c == b"[":
            end = glob.find(b"]", i + 2 if glob[i + 1 : i + 2] in (b"!", b"]") else i + 1)
            if end < 0:
                raise ValueError("unclosed '['")
            inner = glob[i + 1 : end]
            negate = inner.startswith(b"!")
            if negate:
                inner = inner[1:]
            escaped = inner.replace(b"\\", b"\\\\").replace(b"^", b"\\^").replace(b"[", b"\\[")
            out.append(b"[" + (b"^/" if negate else b"") + escaped + b"]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return b"".join(out)


def _literal_count(glob: bytes) -> int:
    # Character classes count as one literal: they name one position.
    without_classes = re.sub(rb"\[!?\]?[^\]]*\]", b"c", glob)
    return sum(1 for ch in without_classes if ch not in b"*?")


@dataclass(frozen=True)
class Verdict:
    """The strongest include and exclude that apply to a path (inherited by its contents)."""

    include: int = -1
    exclude: int = -1

    @property
    def selected(self) -> bool:
        """True when the path is backed up."""
        return self.exclude < 0 or self.include > self.exclude


class Selection:
    """The include/exclude rule of one job."""

    def __init__(self, include: tuple[str, ...] = (), exclude: tuple[str, ...] = ()) -> None:
        self.include = [Pattern.compile(p) for p in include]
        self.exclude = [Pattern.compile(p) for p in exclude]

    def judge(self, path: bytes, parent: Verdict) -> Verdict:
        """The verdict for absolute ``path`` whose folder had verdict ``parent``."""
        inc = max((p.specificity for p in self.include if p.matches(path)), default=-1)
        exc = max((p.specificity for p in self.exclude if p.matches(path)), default=-1)
        if inc < 0 and exc < 0:
            return parent
        return Verdict(max(parent.include, inc), max(parent.exclude, exc))

    def walk_excluded(self, folder: bytes) -> bool:
        """True when an include pattern names a place inside the excluded ``folder``."""
        prefix = folder.rstrip(b"/") + b"/"
        return any(p.anchor is not None and p.anchor.startswith(prefix) for p in self.include)
