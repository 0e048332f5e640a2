"""The ``libvirt`` source: KVM/QEMU domains backed up through libvirt's backup API.

Full and incremental (checkpoint) image backups in pull mode over NBD. See
docs/plugins/libvirt.md.
"""
