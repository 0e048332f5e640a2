"""The asset attribute vocabulary: the ``AssetInfo.metadata`` keys selection rules read.

Jobs select virtual machines by rules (``folder=/DC0/vm/prod``, ``tag=backup``,
``power_state=poweredOff``...) that the core evaluates on the catalog, the same
way for every hypervisor. A hypervisor plugin makes its machines selectable by
filling in these keys in the metadata of the assets ``discover`` returns; a key
the hypervisor has no notion of is left out (a rule on it then matches nothing).
Plugins may add their own keys beside these.
"""

from __future__ import annotations

from typing import Final

#: Inventory path of the folder holding the machine, from the top, "/"-separated,
#: e.g. "/DC0/vm/prod" (VMware) or "/Production/web" (a XenServer folder path).
FOLDER: Final = "folder"
#: Datacenter (VMware) or pool (XenServer) name.
DATACENTER: Final = "datacenter"
#: Cluster name, when the machine's host belongs to one.
CLUSTER: Final = "cluster"
#: The host the machine runs on (or is registered with) now.
HOST: Final = "host"
#: Resource pool path (VMware); same "/"-separated form as FOLDER.
RESOURCE_POOL: Final = "resource_pool"
#: One of :data:`POWER_STATES` (translate the hypervisor's own words).
POWER_STATE: Final = "power_state"
#: True for a template (a machine that cannot be powered on).
TEMPLATE: Final = "template"
#: A list of tag names (vSphere tags, XenServer tags, libvirt metadata labels).
TAGS: Final = "tags"
#: A dict of key -> value (vSphere custom attributes, XenServer other-config keys).
CUSTOM_ATTRIBUTES: Final = "custom_attributes"

POWERED_ON: Final = "poweredOn"
POWERED_OFF: Final = "poweredOff"
SUSPENDED: Final = "suspended"
#: The power states a plugin publishes under POWER_STATE (VMware's own words).
POWER_STATES: Final = (POWERED_ON, POWERED_OFF, SUSPENDED)

# Other hypervisors' words for the same states (XenServer, libvirt), and short forms
# an operator may type in a rule.
_POWER_ALIASES: Final = {
    "poweredon": POWERED_ON,
    "on": POWERED_ON,
    "running": POWERED_ON,
    "paused": POWERED_ON,  # memory and CPU state still on the host
    "blocked": POWERED_ON,
    "idle": POWERED_ON,
    "poweredoff": POWERED_OFF,
    "off": POWERED_OFF,
    "halted": POWERED_OFF,
    "shutoff": POWERED_OFF,
    "shut off": POWERED_OFF,
    "shutdown": POWERED_OFF,
    "stopped": POWERED_OFF,
    "crashed": POWERED_OFF,
    "suspended": SUSPENDED,
    "pmsuspended": SUSPENDED,
}


def normalize_power_state(value: object) -> str | None:
    """The :data:`POWER_STATES` word for a hypervisor's or operator's power state.

    Case and spaces do not matter ("Running", "shut off", "poweredOn"); None for
    a value that names no known state.
    """
    if not isinstance(value, str):
        return None
    return _POWER_ALIASES.get(" ".join(value.split()).lower())
