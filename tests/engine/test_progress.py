"""The run progress reporter: smoothing, ETA, throttling, cancellation."""

from __future__ import annotations

import pytest

from tapir.appliance.engine.progress import ProgressSnapshot, RunProgress
from tapir.appliance.plugin_api import RunCanceled


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_rate_eta_and_throttling() -> None:
    clock = Clock()
    persisted: list[ProgressSnapshot] = []
    heard: list[ProgressSnapshot] = []
    p = RunProgress(7, "backup", listener=heard.append, persist=persisted.append, clock=clock)
    p.set_total(bytes_total=10_000, items_total=10)
    assert len(persisted) == 1 and len(heard) == 1  # the first update goes out at once
    for _ in range(100):  # 100 calls within 0.1 s: throttled away
        clock.t += 0.001
        p.advance(1, 0, "f")
    assert len(persisted) == 1 and len(heard) == 1
    clock.t += 0.2
    p.advance(0, 1)
    assert len(heard) == 2 and len(persisted) == 1
    clock.t += 1.0
    p.advance(0, 1)
    assert len(persisted) == 2
    snap = persisted[-1]
    assert (snap.run_id, snap.phase, snap.bytes_done, snap.items_done) == (7, "backup", 100, 2)
    assert snap.current == "f" and snap.elapsed == pytest.approx(1.3)

    # A steady 1000 B/s for a while: the smoothed rate converges and the ETA follows.
    for _ in range(60):
        clock.t += 1.0
        p.advance(1000)
    snap = p.flush()
    assert snap.rate == pytest.approx(1000, rel=0.05)
    assert snap.bytes_done == 60_100
    assert snap.eta == 0.0  # past the announced total: never negative
    p.set_total(bytes_total=100_100)
    assert p.snapshot().eta == pytest.approx(40, rel=0.1)
    # A short stall only dents the smoothed rate; it does not drop to zero.
    clock.t += 1.0
    p.advance(0)
    assert 700 < p.snapshot().rate < 1000
    assert persisted[-1].bytes_done == 60_100


def test_unknown_total_has_no_eta_and_cancel_raises() -> None:
    canceled = False

    def check() -> None:
        if canceled:
            raise RunCanceled("run 1 was canceled")

    p = RunProgress(1, check_canceled=check)
    p.advance(10)
    assert p.snapshot().eta is None
    canceled = True
    with pytest.raises(RunCanceled):
        p.advance(10)
    assert p.bytes_done == 10
