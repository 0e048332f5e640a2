"""A simulated vCenter for tests: govmomi's simulator library, built from Debian's packages.

Debian's ``golang-github-vmware-govmomi-dev`` ships the ``simulator`` library but
not the ``vcsim`` command, so ``tests/vmware/vcsim/main.go`` (the project's own
program) wraps it. :func:`build_vcsim` compiles it once with Debian's Go and keeps
the binary in a cache folder keyed by the source's hash; :func:`start_vcsim`
runs it on a free 127.0.0.1 port over HTTPS and returns a :class:`Vcsim` whose
``stop()`` ends the process (nothing is left running).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

SOURCE = Path(__file__).resolve().parent / "vmware" / "vcsim"  # main.go and cbt.go
GOPATH = "/usr/share/gocode"
_SIMULATOR = Path(GOPATH) / "src/github.com/vmware/govmomi/simulator"
_DEBIAN_PACKAGES = ("golang-go", "golang-github-vmware-govmomi-dev")
_START_TIMEOUT = 30.0


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tapir-tests" / "vcsim"


def _install_debian_packages() -> None:
    if shutil.which("go") and _SIMULATOR.is_dir():
        return
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *_DEBIAN_PACKAGES],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def build_vcsim() -> Path:
    """The vcsim binary for the current source, built on first use (about 15 s)."""
    digest = hashlib.sha256(
        b"".join(f.read_bytes() for f in sorted(SOURCE.glob("*.go")))
    ).hexdigest()[:16]
    binary = _cache_dir() / digest / "vcsim"
    if binary.is_file():
        return binary
    _install_debian_packages()
    binary.parent.mkdir(parents=True, exist_ok=True)
    # Build to a private name, then rename: parallel test processes never run half a file.
    partial = binary.with_name(f"vcsim.{os.getpid()}.partial")
    env = {
        **os.environ,
        "GOPATH": GOPATH,
        "GO111MODULE": "off",
        "GOFLAGS": "",
        "GOCACHE": str(_cache_dir() / "gocache"),
    }
    result = subprocess.run(
        # GOPATH mode builds a folder outside GOPATH only as a relative path.
        ["go", "build", "-o", str(partial), "."],
        cwd=SOURCE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"building vcsim failed:\n{result.stderr}")
    os.replace(partial, binary)
    return binary


@dataclass
class Vcsim:
    """A running simulator: where it is, who may log in, what its inventory holds."""

    url: str
    host: str
    port: int
    fingerprint: str
    username: str
    password: str
    count: dict[str, int]
    cert_file: Path
    process: subprocess.Popen[str] = field(repr=False)

    @property
    def address(self) -> str:
        """``host:port`` as an operator registers it."""
        return f"{self.host}:{self.port}"

    def soap_calls(self) -> dict[str, int]:
        """SOAP calls received so far, by method name (served by the wrapper in main.go)."""
        import ssl

        context = ssl.create_default_context(cafile=str(self.cert_file))
        with urllib.request.urlopen(
            f"https://{self.address}/tapir/stats", context=context, timeout=10
        ) as response:
            return {str(k): int(v) for k, v in json.load(response).items()}

    def stop(self) -> None:
        """End the simulator and wait for it (idempotent)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_vcsim(workdir: Path, *args: str) -> Vcsim:
    """Start a simulator on a free 127.0.0.1 port; ``args`` are main.go's flags."""
    binary = build_vcsim()
    workdir.mkdir(parents=True, exist_ok=True)
    cert_file = workdir / "vcsim-cert.pem"
    # The simulator's own messages go to a log next to its files, for failed tests.
    with open(workdir / "vcsim.log", "ab") as log:
        process = subprocess.Popen(
            [str(binary), "-cert-out", str(cert_file), *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=workdir,
            env={**os.environ, "TMPDIR": str(workdir)},
        )
    assert process.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(_START_TIMEOUT)
    if not lines or not lines[0].strip():
        process.kill()
        process.wait()
        raise RuntimeError(f"vcsim did not start (exit code {process.returncode})")
    info = json.loads(lines[0])
    url = str(info["url"])
    host_port = url.split("//", 1)[1].split("/", 1)[0]
    host, port = host_port.rsplit(":", 1)
    return Vcsim(
        url=url,
        host=host,
        port=int(port),
        fingerprint=str(info["fingerprint"]),
        username=str(info["username"]),
        password=str(info["password"]),
        count={str(k): int(v) for k, v in info["count"].items()},
        cert_file=cert_file,
        process=process,
    )
