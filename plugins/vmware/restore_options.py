"""The options of a VMware restore, checked before anything is changed on the vCenter."""

from __future__ import annotations

from dataclasses import dataclass, field

from tapir.appliance.plugin_api import OptionSpec, PluginError, RestoreRequest
from tapir.appliance.plugin_api.option_values import parse_bool

MODES = ("vm", "disk", "download")

RESTORE_OPTIONS = [
    OptionSpec(
        "mode",
        "choice",
        "vm: the whole VM; disk: disks attached to an existing VM; download: disk images "
        "into the target folder (default: download with a target folder, else vm)",
        choices=MODES,
    ),
    OptionSpec(
        "vm_name",
        "str",
        "vm: the restored VM's name (default: the original name); disk: the existing VM "
        "that receives the disks (required)",
    ),
    OptionSpec("host", "str", "vm: the ESXi host to register the VM on (default: the original)"),
    OptionSpec(
        "datastore",
        "str",
        "the datastore for the VM's files and disks (default: each disk's original one; "
        "disk mode: the target VM's)",
    ),
    OptionSpec(
        "network",
        "str",
        "vm: a network for every adapter, or 'ADAPTER LABEL=NETWORK,...' "
        "(default: the original networks, which must exist)",
    ),
    OptionSpec(
        "resource_pool",
        "str",
        "vm: the resource pool (default: the host's cluster or host root pool)",
    ),
    OptionSpec("power_on", "bool", "vm: power the VM on after the restore", default=False),
]


@dataclass(frozen=True)
class RestoreSettings:
    """The restore options of one request, checked and typed."""

    mode: str
    vm_name: str | None = None
    host: str | None = None
    datastore: str | None = None
    #: Adapter label -> network name; "" stands for every adapter.
    network: dict[str, str] = field(default_factory=dict)
    resource_pool: str | None = None
    power_on: bool = False


def _text(options: dict[str, object], name: str) -> str | None:
    value = options.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise PluginError(f"restore option {name!r} must be a text, not {value!r}")
    return value.strip()


def _bool(options: dict[str, object], name: str) -> bool:
    return parse_bool(options.get(name, False), name, "restore option")


def parse_network(text: str | None) -> dict[str, str]:
    """``NET`` (every adapter) or ``Network adapter 1=NET1,Network adapter 2=NET2``."""
    if not text:
        return {}
    if "=" not in text:
        return {"": text}
    mapping: dict[str, str] = {}
    for part in text.split(","):
        label, sep, network = part.partition("=")
        if not sep or not label.strip() or not network.strip():
            raise PluginError(
                f"restore option 'network': {part!r} is not 'ADAPTER LABEL=NETWORK' "
                "(or give one network name for every adapter)"
            )
        mapping[label.strip()] = network.strip()
    return mapping


def restore_settings(request: RestoreRequest) -> RestoreSettings:
    """The request's options as :class:`RestoreSettings`; PluginError naming a bad one."""
    options = request.options
    mode = _text(options, "mode") or ("download" if request.target is not None else "vm")
    if mode not in MODES:
        raise PluginError(f"restore option 'mode' must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "download" and request.target is None:
        raise PluginError("a download restore needs a target folder (--to DIR)")
    settings = RestoreSettings(
        mode=mode,
        vm_name=_text(options, "vm_name"),
        host=_text(options, "host"),
        datastore=_text(options, "datastore"),
        network=parse_network(_text(options, "network")),
        resource_pool=_text(options, "resource_pool"),
        power_on=_bool(options, "power_on"),
    )
    if mode == "disk" and not settings.vm_name:
        raise PluginError("a disk restore needs the restore option vm_name (the VM to attach to)")
    return settings
