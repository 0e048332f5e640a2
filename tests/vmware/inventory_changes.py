"""Changing vcsim's inventory through pyvmomi, as an administrator would in vSphere."""

from __future__ import annotations

from typing import Any

from pyVim.task import WaitForTask
from pyVmomi import vim


def find(si: Any, kind: type, name: str) -> Any:
    """The managed object of ``kind`` named ``name`` (AssertionError when absent)."""
    content = si.RetrieveContent()
    view = content.viewManager.CreateContainerView(content.rootFolder, [kind], True)
    try:
        for obj in view.view:
            if obj.name == name:
                return obj
    finally:
        view.DestroyView()
    raise AssertionError(f"no {kind.__name__} named {name!r}")


def create_vm(si: Any, name: str, datacenter: str = "DC0", host: str = "DC0_H0") -> Any:
    """A new powered-off VM in the datacenter's VM folder, on a standalone host."""
    dc = find(si, vim.Datacenter, datacenter)
    pool = find(si, vim.HostSystem, host).parent.resourcePool
    datastore = dc.datastore[0].name
    spec = vim.vm.ConfigSpec(
        name=name,
        guestId="otherGuest",
        files=vim.vm.FileInfo(vmPathName=f"[{datastore}]"),
    )
    task = dc.vmFolder.CreateVM_Task(config=spec, pool=pool)
    WaitForTask(task, si=si)
    return task.info.result


def remove_vm(si: Any, name: str) -> None:
    """Power off and delete a VM."""
    vm = find(si, vim.VirtualMachine, name)
    if vm.runtime.powerState == vim.VirtualMachinePowerState.poweredOn:
        WaitForTask(vm.PowerOffVM_Task(), si=si)
    WaitForTask(vm.Destroy_Task(), si=si)


def rename_vm(si: Any, name: str, new_name: str) -> None:
    """Rename a VM (its instance UUID stays)."""
    WaitForTask(find(si, vim.VirtualMachine, name).Rename_Task(new_name), si=si)


def set_custom_attribute(si: Any, vm_name: str, field: str, value: str) -> None:
    """Define a VM custom attribute (once) and set it on a VM."""
    manager = si.RetrieveContent().customFieldsManager
    existing = [f for f in manager.field or [] if f.name == field]
    definition = (
        existing[0]
        if existing
        else manager.AddCustomFieldDef(name=field, moType=vim.VirtualMachine)
    )
    manager.SetField(entity=find(si, vim.VirtualMachine, vm_name), key=definition.key, value=value)
