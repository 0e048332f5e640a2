"""A private, root libvirtd with the QEMU driver, for the libvirt plugin's tests.

A root libvirtd reads its configuration from /etc/libvirt and keeps its state in
/run/libvirt and /var/lib/libvirt, paths it cannot be told to change. The daemon
therefore runs in its own mount and PID namespaces (``unshare``): bind mounts put a
temporary folder's ``etc``, ``run``, ``lib``, ``cache`` and ``log`` over those
paths, and a private copy of /etc/passwd and /etc/group adds the ``libvirt-qemu``
user and ``kvm`` group the Debian build looks up at start, without touching the
host's accounts. Clients reach the daemon through its socket in the temporary
folder: ``qemu+unix:///system?socket=<root>/run/libvirt-sock``.

A small reaper is PID 1 of the namespace, so every QEMU the daemon starts dies with it:
:meth:`Libvirtd.stop` kills the ``unshare`` process (``--kill-child`` then kills
the daemon) and waits until no process of the namespace is left.

The only trace on the host is the empty mount points (/run/libvirt,
/var/lib/libvirt, /var/cache/libvirt, /var/log/libvirt) that Debian's
``libvirt-daemon-system`` would create anyway.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

_PACKAGES = ("libvirt-daemon", "libvirt-daemon-driver-qemu", "qemu-system-x86", "qemu-utils")
_START_POLLS = 300  # 0.1 s each

LIBVIRTD_CONF = """\
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_rw_perms = "0700"
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
"""

# The settings the issue lists: no virtlogd, no host cgroup or security driver
# changes, QEMU as root on files the tests own.
QEMU_CONF = """\
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
stdio_handler = "file"
cgroup_controllers = [ ]
namespaces = [ ]
"""

_START_SCRIPT = """\
set -e
root=$1
mount --bind "$root/passwd" /etc/passwd
mount --bind "$root/group" /etc/group
for pair in /etc/libvirt:etc /run/libvirt:run /var/lib/libvirt:lib \
            /var/cache/libvirt:cache /var/log/libvirt:log; do
    target=${pair%%:*}
    mkdir -p "$target"
    mount --bind "$root/${pair#*:}" "$target"
done
exec "$2" -c "$3" "$root"
"""

# PID 1 of the namespace: QEMU daemonizes, so its parent becomes PID 1, which must
# reap it. libvirtd does not, and a QEMU left a zombie after a hard kill keeps the
# domain "running" (libvirt waits for the PID to vanish while holding its state lock).
_INIT = """\
import os, subprocess, sys
daemon = subprocess.Popen(["libvirtd", "--pid-file", sys.argv[1] + "/libvirtd.pid"])
while True:
    pid, _ = os.wait()
    if pid == daemon.pid:
        sys.exit(1)
"""


def ensure_packages() -> None:
    """Install the Debian packages when libvirtd or QEMU is missing (as the other servers do)."""
    if shutil.which("libvirtd") and shutil.which("qemu-system-x86_64"):
        return
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *_PACKAGES],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def _private_accounts(root: Path) -> None:
    passwd = Path("/etc/passwd").read_text()
    group = Path("/etc/group").read_text()
    if not any(line.startswith("libvirt-qemu:") for line in passwd.splitlines()):
        passwd += "libvirt-qemu:x:64055:64055::/nonexistent:/usr/sbin/nologin\n"
    for name, gid in (("kvm", 64054), ("libvirt-qemu", 64055)):
        if not any(line.startswith(f"{name}:") for line in group.splitlines()):
            group += f"{name}:x:{gid}:\n"
    (root / "passwd").write_text(passwd)
    (root / "group").write_text(group)


@dataclass
class Libvirtd:
    """A running private libvirtd."""

    root: Path
    process: subprocess.Popen[bytes]

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket}"

    @property
    def log(self) -> Path:
        return self.root / "log" / "libvirtd.log"

    def namespace_processes(self) -> list[psutil.Process]:
        """Every process of the daemon's PID namespace (the daemon and its QEMUs)."""
        try:
            init = psutil.Process(self.process.pid).children()
            ns = _ns_of(init[0].pid) if init else None
        except (psutil.NoSuchProcess, OSError):
            ns = None
        if ns is None:
            return []
        found = []
        for proc in psutil.process_iter():
            try:
                if _ns_of(proc.pid) == ns:
                    found.append(proc)
            except OSError:
                continue
        return found

    def qemu_pid(self, domain_name: str) -> int:
        """The host PID of the QEMU running ``domain_name`` (for hard-kill tests)."""
        for proc in self.namespace_processes():
            try:
                cmdline = proc.cmdline()
            except psutil.NoSuchProcess:
                continue
            if (
                cmdline
                and "qemu-system" in cmdline[0]
                and f"guest={domain_name}," in " ".join(cmdline)
            ):
                return proc.pid
        raise LookupError(f"no QEMU process for domain {domain_name}")

    def stop(self) -> None:
        """Kill the daemon and every QEMU it started; return once none is left."""
        members = self.namespace_processes()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        for proc in members:
            try:
                proc.kill()
                proc.wait()
            except psutil.NoSuchProcess:
                continue


def _ns_of(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/pid")


def start_libvirtd(root: Path) -> Libvirtd:
    """Start a private libvirtd whose folders live under ``root``."""
    ensure_packages()
    for name in ("etc", "run", "lib", "cache", "log", "images"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "etc" / "libvirtd.conf").write_text(LIBVIRTD_CONF)
    (root / "etc" / "qemu.conf").write_text(QEMU_CONF)
    _private_accounts(root)
    script = root / "start.sh"
    script.write_text(_START_SCRIPT)
    out = open(root / "libvirtd.out", "wb")  # noqa: SIM115 - the child keeps it
    process = subprocess.Popen(
        [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "bash",
            str(script),
            str(root),
            sys.executable,
            _INIT,
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    out.close()
    daemon = Libvirtd(root, process)
    for _ in range(_START_POLLS):
        if daemon.socket.exists():
            return daemon
        if process.poll() is not None:
            break
        time.sleep(0.1)
    daemon.stop()
    output = (root / "libvirtd.out").read_text(errors="replace")
    log = daemon.log.read_text(errors="replace") if daemon.log.exists() else ""
    raise RuntimeError(f"libvirtd did not start:\n{output}\n{log[-4000:]}")
