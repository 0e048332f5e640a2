"""event.from: a new VM is seen as soon as the pool reports it; templates are not VMs."""

from __future__ import annotations

import logging
import threading

from tapir.appliance.plugin_api import EndpointInfo, PluginContext, RunCanceled
from tapir.plugins.xenserver.role import XenServerPlugin

from .conftest import PASSWORD, USER, Pool


def _args(pool: Pool) -> tuple[EndpointInfo, PluginContext]:
    endpoint = EndpointInfo(
        "xen",
        "xenserver",
        pool.server.address,
        {"user": USER, "password_secret": "s", "fingerprint": pool.server.fingerprint},
    )
    return endpoint, PluginContext(logger=logging.getLogger("t"), read_secret=lambda n: PASSWORD)


def test_first_call_lists_the_current_vms(pool: Pool) -> None:
    endpoint, ctx = _args(pool)
    events = XenServerPlugin().poll_events(endpoint, ctx, "", timeout=0)
    x = pool.server.xapi
    assert sorted(events.added) == sorted(
        [x.db["VM"][pool.web]["uuid"], x.db["VM"][pool.legacy]["uuid"]]
    )
    assert events.token


def test_a_new_vm_wakes_the_watcher(pool: Pool) -> None:
    endpoint, ctx = _args(pool)
    plugin = XenServerPlugin()
    token = plugin.poll_events(endpoint, ctx, "", timeout=0).token
    x = pool.server.xapi
    created = threading.Event()
    new_uuid: list[str] = []

    def create_later() -> None:
        created.wait()
        with x.lock:
            ref = x.add_vm("new01", host=pool.host1)
            x.add_vm("another template", is_a_template=True)
            new_uuid.append(x.db["VM"][ref]["uuid"])

    thread = threading.Thread(target=create_later)
    thread.start()
    created.set()
    # A long timeout: the call returns as soon as the VM exists, not when it runs out.
    events = plugin.poll_events(endpoint, ctx, token, timeout=60)
    thread.join()
    while not events.added:  # the VM and the template may come in two answers
        events = plugin.poll_events(endpoint, ctx, events.token, timeout=60)
    assert events.added == new_uuid
    # Nothing happened since: an empty answer at the timeout.
    quiet = plugin.poll_events(endpoint, ctx, events.token, timeout=0)
    assert not quiet.any


def test_a_deleted_vm_is_reported(pool: Pool) -> None:
    endpoint, ctx = _args(pool)
    plugin = XenServerPlugin()
    token = plugin.poll_events(endpoint, ctx, "", timeout=0).token
    x = pool.server.xapi
    with x.lock:
        x.db["VM"][pool.legacy]["power_state"] = "Halted"
        x._VM_destroy(pool.legacy)
    events = plugin.poll_events(endpoint, ctx, token, timeout=60)
    assert pool.legacy in events.removed


def test_watch_calls_back_for_a_new_vm_and_ends_when_canceled(pool: Pool) -> None:
    endpoint, _ = _args(pool)
    stop = threading.Event()
    changed = threading.Event()
    calls: list[int] = []

    def check_canceled() -> None:
        if stop.is_set():
            raise RunCanceled("appliance stopping")

    def on_change() -> None:
        calls.append(1)
        changed.set()

    ctx = PluginContext(
        logger=logging.getLogger("t"),
        read_secret=lambda n: PASSWORD,
        check_canceled=check_canceled,
    )
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            XenServerPlugin().watch(endpoint, ctx, on_change)
        except BaseException as exc:  # the thread's result, checked below
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        assert changed.wait(30), "no first call back (the catch-up discovery)"
        changed.clear()
        before = len(calls)
        x = pool.server.xapi
        with x.lock:
            x.add_vm("new02", host=pool.host1)
        assert changed.wait(30), "no call back for the new VM"
        assert len(calls) > before
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], RunCanceled), outcome
