"""Rule-based asset selection: which of an endpoint's assets a job backs up.

A job's selection rules are evaluated on the catalog's assets at every run, so a
VM created today in a protected folder is backed up tonight without anyone
touching the job. The rules read the attribute vocabulary of
:mod:`tapir.appliance.plugin_api.attributes` from each asset's metadata; they know
no hypervisor by name, so VMware, XenServer and libvirt jobs select the same way.

- An asset is *selected* when an include rule matches it and no exclude rule
  does; exclude rules win. The first matching rule (in the order given) is the
  one reported, so the run log and ``tapir job preview`` say why.
- A job with exclude rules only includes every asset (the implicit rule ``all``).
- Matching ignores case, except ``asset=`` (an exact name or id). ``name``, ``cluster``, ``host``,
  ``datacenter`` and tag values are globs (``*``, ``?``, ``[...]``); ``folder`` and
  ``resource_pool`` match the path or any folder above it (``folder=/DC0/vm/prod``
  covers ``/DC0/vm/prod/web``), also with globs.

A job's rules are stored in ``Job.selection`` as ``{"include": [...], "exclude":
[...], "discover": bool}``, each rule as its ``kind=value`` text.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..plugin_api import attributes as attr
from ..plugin_api.context import AssetInfo

#: Rule kinds and what their value means (shown by ``tapir job rules --help``).
RULE_KINDS: dict[str, str] = {
    "folder": "folder path or a folder above it, e.g. /DC0/vm/prod",
    "resource_pool": "resource pool path or a pool above it",
    "datacenter": "datacenter (or XenServer pool) name, glob",
    "cluster": "cluster name, glob",
    "host": "host name, glob",
    "tag": "a tag name, or KEY=VALUE of a custom attribute (value may be a glob)",
    "name": "asset name, glob, e.g. web-*",
    "power_state": "poweredOn, poweredOff or suspended (on/off/running/halted... too)",
    "template": "yes or no",
    "asset": "one asset by exact name or external id",
    "all": "every asset of the endpoint (give it as just 'all')",
}

_TRUE = {"yes", "true", "1", "on"}
_FALSE = {"no", "false", "0", "off"}


@dataclass(frozen=True)
class Rule:
    """One selection rule: ``kind=value``."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}={self.value}"

    def matches(self, asset: AssetInfo) -> bool:
        """True when ``asset`` (its name, external id and metadata) satisfies the rule."""
        meta: Mapping[str, Any] = asset.metadata or {}
        kind, value = self.kind, self.value
        if kind == "all":
            return True
        if kind == "asset":
            return value in (asset.name, asset.external_id)
        if kind == "name":
            return _glob(asset.name, value)
        if kind in ("folder", "resource_pool"):
            return _path_match(meta.get(kind), value)
        if kind in ("datacenter", "cluster", "host"):
            return _glob(meta.get(kind), value)
        if kind == "power_state":
            return attr.normalize_power_state(meta.get(attr.POWER_STATE)) == value
        if kind == "template":
            return bool(meta.get(attr.TEMPLATE)) == (value == "yes")
        if kind == "tag":
            return _tag_match(meta, value)
        raise ValueError(f"unknown rule kind {kind!r}")


def parse_rule(text: str) -> Rule:
    """A rule from its ``kind=value`` text; ValueError says what is wrong with it."""
    raw = text.strip()
    if raw.lower() == "all":
        return Rule("all")
    kind, sep, value = raw.partition("=")
    kind, value = kind.strip().lower().replace("-", "_"), value.strip()
    if not sep or kind not in RULE_KINDS:
        raise ValueError(
            f"invalid selection rule {text!r}: expected KIND=VALUE with KIND one of "
            f"{', '.join(k for k in RULE_KINDS if k != 'all')} (or just 'all')"
        )
    if kind == "all" or not value:
        raise ValueError(f"invalid selection rule {text!r}: {kind} needs a value")
    if kind in ("folder", "resource_pool"):
        value = "/" + value.strip("/")
    elif kind == "power_state":
        state = attr.normalize_power_state(value)
        if state is None:
            raise ValueError(
                f"invalid selection rule {text!r}: unknown power state "
                f"(use {', '.join(attr.POWER_STATES)})"
            )
        value = state
    elif kind == "template":
        lowered = value.lower()
        if lowered not in _TRUE | _FALSE:
            raise ValueError(f"invalid selection rule {text!r}: template=yes or template=no")
        value = "yes" if lowered in _TRUE else "no"
    elif kind == "tag" and value.startswith("="):
        raise ValueError(f"invalid selection rule {text!r}: tag=KEY=VALUE needs a key")
    return Rule(kind, value)


def is_rule_text(text: str) -> bool:
    """True when ``text`` parses as a selection rule (``--exclude`` takes rules and globs)."""
    try:
        parse_rule(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Decision:
    """What the rules decided for one asset, and which rule decided it."""

    asset: AssetInfo
    selected: bool
    rule: Rule | None = None  # the first include rule that matched
    excluded_by: Rule | None = None  # the first exclude rule that matched

    @property
    def reason(self) -> str:
        """``rule folder=/DC0/vm/prod``, ``excluded by power_state=poweredOff`` or ``no rule``."""
        if self.excluded_by is not None:
            return f"excluded by {self.excluded_by}"
        if self.rule is not None:
            return f"rule {self.rule}"
        return "no rule matched"


@dataclass(frozen=True)
class RuleSet:
    """A job's include and exclude rules, and whether a run rediscovers its endpoint first."""

    include: tuple[Rule, ...] = ()
    exclude: tuple[Rule, ...] = ()
    discover: bool = True

    @classmethod
    def parse(
        cls, include: Iterable[str] = (), exclude: Iterable[str] = (), discover: bool = True
    ) -> RuleSet:
        """Rules from their texts (ValueError for the first bad one); duplicates dropped."""
        inc = tuple(dict.fromkeys(parse_rule(t) for t in include))
        exc = tuple(dict.fromkeys(parse_rule(t) for t in exclude))
        if any(r.kind == "all" for r in exc):
            raise ValueError("'all' cannot be an exclude rule (that would select nothing)")
        return cls(inc, exc, discover)

    @classmethod
    def from_selection(cls, selection: Mapping[str, Any] | None) -> RuleSet | None:
        """The rules stored in a job's ``selection``; None for a job without rules."""
        if not selection or not (selection.get("include") or selection.get("exclude")):
            return None
        return cls.parse(
            selection.get("include") or (),
            selection.get("exclude") or (),
            bool(selection.get("discover", True)),
        )

    def as_selection(self) -> dict[str, Any]:
        """The form stored in ``Job.selection``."""
        return {
            "include": [str(r) for r in self.include],
            "exclude": [str(r) for r in self.exclude],
            "discover": self.discover,
        }

    @property
    def effective_include(self) -> tuple[Rule, ...]:
        """The include rules, or ``all`` when only exclude rules were given."""
        return self.include or (Rule("all"),)

    def decide(self, asset: AssetInfo) -> Decision:
        """Selected, excluded or not matched, with the deciding rules."""
        rule = next((r for r in self.effective_include if r.matches(asset)), None)
        if rule is None:
            return Decision(asset, False)
        excluded_by = next((r for r in self.exclude if r.matches(asset)), None)
        return Decision(asset, excluded_by is None, rule, excluded_by)

    def evaluate(self, assets: Sequence[AssetInfo]) -> list[Decision]:
        """One decision per asset, in the order given."""
        return [self.decide(a) for a in assets]

    def unmatched_assets(self, decisions: Sequence[Decision]) -> list[Rule]:
        """``asset=`` include rules that matched nothing (a VM deleted or renamed)."""
        used = {d.rule for d in decisions if d.rule is not None}
        return [r for r in self.include if r.kind == "asset" and r not in used]


def _glob(subject: object, pattern: str) -> bool:
    if subject is None:
        return False
    return fnmatch.fnmatchcase(str(subject).lower(), pattern.lower())


def _path_match(path: object, pattern: str) -> bool:
    """The path, or one of the folders above it, matches the pattern."""
    if not isinstance(path, str) or not path:
        return False
    parts = [p for p in path.split("/") if p]
    prefixes = ["/" + "/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(_glob(p, pattern) for p in prefixes)


def _tag_match(meta: Mapping[str, Any], value: str) -> bool:
    tags = meta.get(attr.TAGS)
    if isinstance(tags, list | tuple) and any(_glob(t, value) for t in tags):
        return True
    key, sep, wanted = value.partition("=")
    if not sep:
        return False
    custom = meta.get(attr.CUSTOM_ATTRIBUTES)
    if not isinstance(custom, Mapping):
        return False
    return any(
        str(k).lower() == key.strip().lower() and _glob(v, wanted.strip())
        for k, v in custom.items()
    )
