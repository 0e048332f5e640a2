"""The snapshot of a hypervisor member of a consistency group, taken inside the freeze.

A hypervisor member's backup runs in a thread from the start of the group run. Its
plugin wraps the call that takes the VM snapshot in ``ctx.snapshot_window()``; the
window given to it here (1) waits until the group has frozen and marked every
application member, or raises when the group gave up (so no snapshot is taken),
(2) lets the snapshot call run, (3) reports on exit that the snapshot was taken.
The group thaws the applications once every member's snapshot is reported, within
the same freeze window; a snapshot that comes too late fails the group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from ..plugin_api.errors import TapirError
from ..plugin_api.roles import BackupResult

#: The recovery point metadata key naming the group run a VM snapshot belongs to.
GROUP_KEY = "consistency_group"


class SnapshotGate:
    """What the group and its hypervisor members tell each other, under one lock."""

    def __init__(self, titles: list[str], label: str) -> None:
        self.label = label
        self._cond = threading.Condition()
        self._waiting = set(titles)  # members whose snapshot is not reported yet
        self._failed: dict[str, str] = {}  # member -> why it will take no snapshot
        self._open = False
        self._gave_up: str | None = None
        self._verdict: bool | None = None  # the group's: were the snapshots in time?

    # The group's side.
    def open(self) -> None:
        """Every application member is frozen and marked: snapshots may be taken."""
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def give_up(self, reason: str) -> None:
        """The group failed before the snapshots: a window not yet entered raises."""
        with self._cond:
            if self._gave_up is None:
                self._gave_up = reason
            self._cond.notify_all()

    def wait_taken(self, timeout: float, clock: Callable[[], float]) -> list[str]:
        """Wait up to ``timeout`` s for every snapshot; the problems (empty: all taken)."""
        deadline = clock() + timeout
        with self._cond:
            while self._waiting and not self._failed:
                left = deadline - clock()
                if left <= 0:
                    break
                self._cond.wait(left)
            problems = [f"member {t}: no snapshot: {why}" for t, why in self._failed.items()]
            if not problems:
                problems = [
                    f"member {t}: no snapshot within the freeze window"
                    for t in sorted(self._waiting)
                ]
            return problems

    def settle(self, in_time: bool) -> None:
        """The group's verdict, once the applications are thawed (or the group failed)."""
        with self._cond:
            if self._verdict is None:  # the first verdict wins
                self._verdict = in_time
            if not in_time and self._gave_up is None:
                self._gave_up = "the consistency group failed"
            self._cond.notify_all()

    # The hypervisor member's side.
    @contextmanager
    def window(self, title: str) -> Iterator[None]:
        """``ctx.snapshot_window`` of member ``title``."""
        with self._cond:
            while not self._open and self._gave_up is None:
                self._cond.wait()
            if self._gave_up is not None:
                self._failed.setdefault(title, "the group gave up")
                raise TapirError(
                    f"consistency group run {self.label} gave up before the snapshot "
                    f"({self._gave_up}): no snapshot taken"
                )
        try:
            yield
        except BaseException as exc:
            self.failed(title, f"the snapshot call failed: {exc}")
            raise
        with self._cond:
            self._waiting.discard(title)
            self._cond.notify_all()

    def failed(self, title: str, reason: str) -> None:
        """Member ``title`` will take no snapshot (its backup ended before it, or failed)."""
        with self._cond:
            if title in self._waiting:
                self._failed.setdefault(title, reason)
                self._cond.notify_all()

    def verdict(self) -> bool:
        """Block until the group has judged the snapshots; True when all were in time."""
        with self._cond:
            while self._verdict is None:
                self._cond.wait()
            return self._verdict


class MemberSnapshot:
    """The freeze record of one hypervisor member asset (``backup_asset``'s ``freeze``)."""

    def __init__(self, gate: SnapshotGate, title: str) -> None:
        self.gate = gate
        self.title = title

    def window(self) -> AbstractContextManager[None]:
        """The snapshot window of this member (see :meth:`SnapshotGate.window`)."""
        return self.gate.window(self.title)

    def annotate(self, result: BackupResult) -> None:
        """Name the group run in the point, when its snapshot was inside the window."""
        if self.gate.verdict():
            result.metadata[GROUP_KEY] = self.gate.label
        else:
            result.warnings.append(
                f"snapshot not inside consistency group run {self.gate.label}'s freeze window: "
                "not part of the group's moment"
            )
