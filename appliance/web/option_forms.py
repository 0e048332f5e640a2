"""A plugin's declared options (:class:`OptionSpec`) as form fields, and back.

Pages post text (a checkbox is absent when off, a list is one value a line); the
API posts JSON with native types. Both end as the typed dict the facade takes, or a
ValueError naming the option, before anything is saved.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from ..cli.options import convert
from ..plugin_api.context import OptionSpec

FIELD_PREFIX = "opt."


@dataclass(frozen=True)
class Field:
    """How one option is shown: its input kind and current value as text."""

    spec: OptionSpec
    name: str  # the form field's name
    widget: str  # text, number, checkbox, select, lines, password
    value: str
    checked: bool


def _widget(spec: OptionSpec) -> str:
    if spec.type == "int":
        return "number"
    if spec.type == "bool":
        return "checkbox"
    if spec.type == "choice" and spec.choices:
        return "select"
    if spec.type.startswith("list"):
        return "lines"
    if spec.type == "secret":
        return "password"
    return "text"


def fields(specs: Sequence[OptionSpec], form: Mapping[str, Any] | None = None) -> list[Field]:
    """The form fields for ``specs``, filled from a posted ``form`` or the defaults."""
    result = []
    for spec in specs:
        name = FIELD_PREFIX + spec.name
        if form is not None and name in form:
            value = str(form.get(name, ""))
        elif spec.default is None:
            value = ""
        elif isinstance(spec.default, list | tuple):
            value = "\n".join(str(v) for v in spec.default)
        else:
            value = str(spec.default)
        checked = (
            form is not None and name in form
            if form is not None and spec.type == "bool"
            else bool(spec.default)
        )
        result.append(Field(spec, name, _widget(spec), value, checked))
    return result


def from_form(specs: Sequence[OptionSpec], form: MultiDict[str, str]) -> dict[str, Any]:
    """Typed options from a posted page form; empty fields are left unset."""
    result: dict[str, Any] = {}
    for spec in specs:
        name = FIELD_PREFIX + spec.name
        if spec.type == "bool":
            if name in form or spec.default is not None:
                result[spec.name] = name in form
            continue
        raw = form.get(name, "")
        if spec.type.startswith("list"):
            values = [line.strip() for line in raw.splitlines() if line.strip()]
            if values:
                result[spec.name] = values
        elif raw.strip():
            result[spec.name] = convert(spec, raw.strip())
    return result


def from_json(specs: Sequence[OptionSpec], data: Any) -> dict[str, Any]:
    """Options posted as a JSON object, checked against their declared types.

    Keys the plugin does not declare are passed on: the facade refuses them by name.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("options must be an object")
    by_name = {s.name: s for s in specs}
    result: dict[str, Any] = {}
    for key, value in data.items():
        spec = by_name.get(key)
        if spec is not None:
            _check_type(spec, value)
        result[key] = value
    return result


def _check_type(spec: OptionSpec, value: Any) -> None:
    kind = spec.type
    if kind == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        want = "a whole number"
    elif kind == "bool":
        ok, want = isinstance(value, bool), "true or false"
    elif kind.startswith("list"):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        want = "a list of strings"
    else:
        ok, want = isinstance(value, str), "a string"
        if ok and kind == "choice" and spec.choices and value not in spec.choices:
            ok, want = False, f"one of {', '.join(spec.choices)}"
    if not ok:
        raise ValueError(f"option {spec.name} expects {want}, got {value!r}")
