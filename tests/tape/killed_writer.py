"""Run one backup job, stopping for good in the middle of its chunk archive.

Usage: killed_writer.py HOME JOB BLOCKS. After BLOCKS tape writes it prints
WRITING and sleeps, so that the test kills it (kill -9) with a tape file cut
short on the cartridge.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from tapir.appliance.config import load_settings
from tapir.appliance.engine.service import Appliance
from tapir.hardware.drive import TapeDrive

home, job, limit = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
write = TapeDrive.write
count = 0


def stalling_write(drive: TapeDrive, data: bytes) -> None:
    global count
    write(drive, data)
    count += 1
    if count == limit:
        print("WRITING", flush=True)
        time.sleep(600)


TapeDrive.write = stalling_write  # type: ignore[method-assign]
app = Appliance.open(load_settings(home))
app.run_job(job)
