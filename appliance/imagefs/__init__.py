"""File systems inside the disk images of recovery points: browse, find, restore files.

A disk item of a recovery point is read in place through the data path's
random-access reader (only the chunks a request touches are loaded); partition
tables, LVM and file systems are interpreted in user space by the ``dissect``
libraries, with no mount, no loop device and no privileges.
"""

from .address import Address, parse_address
from .errors import ImageFsError, ImageNotFound
from .model import DiskInfo, Entry, VolumeInfo
from .point import PointFiles

__all__ = [
    "Address",
    "DiskInfo",
    "Entry",
    "ImageFsError",
    "ImageNotFound",
    "PointFiles",
    "VolumeInfo",
    "parse_address",
]
