"""The ``vmware`` source: VMware vSphere (vCenter or standalone ESXi) through pyvmomi.

It registers endpoints, tests connections, discovers the inventory and makes full
image backups through a snapshot and the datastore HTTPS path; incrementals (CBT)
and restore are not implemented yet. See docs/plugins/vmware.md.
"""
