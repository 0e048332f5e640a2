"""The ``vmware`` source: VMware vSphere (vCenter or standalone ESXi) through pyvmomi.

This first slice registers endpoints, tests connections and discovers the
inventory; backup and restore are not implemented yet. See docs/plugins/vmware.md.
"""
