"""The ``imagefile`` source: local raw and qcow2 disk image files backed up as a machine's disks.

It stands in for a hypervisor on the image path: the same items (``ItemKind.DISK``),
the same changed-extent incrementals, without a hypervisor. See docs/plugins/imagefile.md.
"""
