"""The hardware layer: SCSI media changers and tape drives (knows SCSI, not backups).

Entry points: ``changer.MediaChanger``, ``drive.TapeDrive``, ``writer.StreamingWriter``,
``transport.open_transport`` and ``discovery.scan``; see docs/hardware.md.
"""
