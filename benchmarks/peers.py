"""One class per benchmarked tool, all driven through their command lines.

Each peer gets its own folder under the benchmark work folder and a
:class:`Runner` that measures every command it starts. ``setup`` is untimed
(creating an empty repository); ``backup``, ``backup2`` and ``restore`` are the
timed steps. ``restore`` returns the folder that holds the restored copy of the
source tree, because some tools nest the source's absolute path under the target.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

from datagen import tree_size
from measure import Measurement, StepMeasurement, run_measured

BENCH_PASSWORD = "tapir-benchmark-password"


class Runner:
    """Runs a peer's commands, logging them and recording their measurements."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.step = StepMeasurement()

    def begin_step(self) -> StepMeasurement:
        """Start collecting a new step's measurements and return the collector."""
        self.step = StepMeasurement()
        return self.step

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Measurement:
        """Run one command; raises ``CommandFailed`` on a non-zero exit."""
        measurement = run_measured(argv, log_path=self.log_path, cwd=cwd, env=env)
        self.step.commands.append(measurement)
        return measurement


class Peer(ABC):
    """A backup tool under test."""

    name: str = ""
    description: str = ""

    def __init__(self, work: Path, runner: Runner) -> None:
        self.root = work / self.name
        self.runner = runner
        self.src: Path | None = None

    def setup(self, src: Path) -> None:
        """Create an empty repository for backing up ``src`` (untimed)."""
        if self.root.exists():
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        self.src = src.resolve()

    @abstractmethod
    def backup(self, src: Path) -> None:
        """First (full) backup of ``src``."""

    @abstractmethod
    def backup2(self, src: Path) -> None:
        """Second backup of ``src`` after the day-2 mutation (incremental where possible)."""

    @abstractmethod
    def restore(self, dst: Path) -> Path:
        """Restore the latest backup into the empty folder ``dst``; return the tree's root."""

    @abstractmethod
    def repo_size(self) -> int:
        """Bytes the repository occupies on disk (allocated blocks)."""

    def cache_size(self) -> int:
        """Bytes of local cache or catalog kept outside the repository (0 if none)."""
        return 0


def _allocated(path: Path) -> int:
    return tree_size(path).allocated if path.exists() else 0


class Restic(Peer):
    """restic: repository format 2, compression ``auto`` (zstd), always encrypted."""

    name = "restic"
    description = "restic, repo v2, --compression auto, AES-256 (always on)"

    @property
    def repo(self) -> Path:
        """The restic repository folder."""
        return self.root / "repo"

    def _env(self) -> dict[str, str]:
        return {
            "RESTIC_PASSWORD": BENCH_PASSWORD,
            "RESTIC_REPOSITORY": str(self.repo),
            "RESTIC_CACHE_DIR": str(self.root / "cache"),
        }

    def setup(self, src: Path) -> None:
        """Create an empty restic repository (format version 2, so compression is on)."""
        super().setup(src)
        self.runner.run(["restic", "init", "--repository-version", "2"], env=self._env())

    def backup(self, src: Path) -> None:
        """``restic backup SRC``."""
        self.runner.run(["restic", "backup", "--quiet", str(src.resolve())], env=self._env())

    def backup2(self, src: Path) -> None:
        """``restic backup SRC`` again; restic picks the previous snapshot as parent."""
        self.backup(src)

    def restore(self, dst: Path) -> Path:
        """``restic restore latest --target DST``; restic nests the absolute source path."""
        self.runner.run(["restic", "restore", "latest", "--target", str(dst)], env=self._env())
        assert self.src is not None
        return dst / self.src.relative_to("/")

    def repo_size(self) -> int:
        """Allocated size of the repository folder."""
        return _allocated(self.repo)

    def cache_size(self) -> int:
        """restic's local metadata cache."""
        return _allocated(self.root / "cache")


class Borg(Peer):
    """borg 1.x with ``--compression zstd,3``; unencrypted unless a subclass says otherwise."""

    name = "borg"
    description = "borg, --encryption=none, --compression zstd,3"
    encryption = "none"
    compression = "zstd,3"

    @property
    def repo(self) -> Path:
        """The borg repository folder."""
        return self.root / "repo"

    def _env(self) -> dict[str, str]:
        return {
            "BORG_REPO": str(self.repo),
            "BORG_PASSPHRASE": BENCH_PASSWORD,
            "BORG_BASE_DIR": str(self.root / "base"),
            "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes",
            "BORG_RELOCATED_REPO_ACCESS_IS_OK": "yes",
        }

    def setup(self, src: Path) -> None:
        """``borg init`` with this variant's encryption mode."""
        super().setup(src)
        self.runner.run(["borg", "init", f"--encryption={self.encryption}"], env=self._env())

    def _create(self, src: Path, archive: str) -> None:
        # Archiving "." from inside the source stores relative paths, so extract lands in cwd.
        self.runner.run(
            ["borg", "create", "--compression", self.compression, f"::{archive}", "."],
            cwd=src,
            env=self._env(),
        )

    def backup(self, src: Path) -> None:
        """``borg create ::day1 .`` from inside the source."""
        self._create(src, "day1")

    def backup2(self, src: Path) -> None:
        """``borg create ::day2 .``; the files cache makes unchanged files cheap."""
        self._create(src, "day2")

    def restore(self, dst: Path) -> Path:
        """``borg extract ::day2`` inside DST."""
        self.runner.run(["borg", "extract", "::day2"], cwd=dst, env=self._env())
        return dst

    def repo_size(self) -> int:
        """Allocated size of the repository folder."""
        return _allocated(self.repo)

    def cache_size(self) -> int:
        """borg's chunks and files cache (under BORG_BASE_DIR)."""
        return _allocated(self.root / "base")


class BorgRepokey(Borg):
    """borg with authenticated encryption (repokey-blake2), for a like-for-like with restic."""

    name = "borg-repokey"
    description = "borg, --encryption=repokey-blake2, --compression zstd,3"
    encryption = "repokey-blake2"


class CopyTree(Peer):
    """``cp -a``: a plain full copy each time, the machine's own limit."""

    name = "cp"
    description = "cp -a (full copy each time; no dedup, no compression)"

    def _copy(self, source: Path, target: Path) -> None:
        target.mkdir(parents=True, exist_ok=True)
        self.runner.run(["cp", "-a", f"{source}/.", f"{target}/"])

    def backup(self, src: Path) -> None:
        """``cp -a SRC/. day1/``."""
        self._copy(src, self.root / "day1")

    def backup2(self, src: Path) -> None:
        """``cp -a SRC/. day2/`` (another full copy: cp has no incremental)."""
        self._copy(src, self.root / "day2")

    def restore(self, dst: Path) -> Path:
        """``cp -a day2/. DST/``."""
        self._copy(self.root / "day2", dst)
        return dst

    def repo_size(self) -> int:
        """Allocated size of both copies (cp keeps holes sparse)."""
        return _allocated(self.root / "day1") + _allocated(self.root / "day2")


class TarZstd(Peer):
    """``tar | zstd -T0 -3``: a full compressed archive each time."""

    name = "tarzstd"
    description = "tar -cf - . | zstd -T0 -3 (full archive each time)"

    def _archive(self, src: Path, out: Path) -> None:
        self.runner.run(
            [
                "bash",
                "-c",
                'set -o pipefail; tar -C "$1" -cf - . | zstd -T0 -3 -q > "$2"',
                "tar-zstd",
                str(src),
                str(out),
            ]
        )

    def backup(self, src: Path) -> None:
        """Archive the tree to ``day1.tar.zst``."""
        self._archive(src, self.root / "day1.tar.zst")

    def backup2(self, src: Path) -> None:
        """Archive the tree again to ``day2.tar.zst``."""
        self._archive(src, self.root / "day2.tar.zst")

    def restore(self, dst: Path) -> Path:
        """``zstd -d | tar -x`` into DST."""
        self.runner.run(
            [
                "bash",
                "-c",
                'set -o pipefail; zstd -d -q -c "$1" | tar -C "$2" -xf -',
                "zstd-tar",
                str(self.root / "day2.tar.zst"),
                str(dst),
            ]
        )
        return dst

    def repo_size(self) -> int:
        """Allocated size of both archives."""
        return _allocated(self.root)


class Tapir(Peer):
    """Tapir through its CLI: own ``--home``, a disk pool, a ``files`` job."""

    name = "tapir"
    compression = "zstd:3"
    description = "tapir, disk pool, --encrypt, --compression zstd:3"
    executable = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "tapir"

    @property
    def home(self) -> Path:
        """The Tapir home (catalog, keys) for this benchmark."""
        return self.root / "home"

    @property
    def pool(self) -> Path:
        """The disk pool's folder."""
        return self.root / "pool"

    def _tapir(self, *args: str) -> None:
        self.runner.run([str(self.executable), "--home", str(self.home), *args])

    def setup(self, src: Path) -> None:
        """``init``, ``pool create bench`` and ``job create bench`` for the source."""
        super().setup(src)
        self._tapir("init")
        self._tapir(
            "pool",
            "create",
            "bench",
            "--media",
            "disk",
            "--path",
            str(self.pool),
            "--encrypt",
            "--compression",
            self.compression,
        )
        self._tapir(
            "job", "create", "bench", "--plugin", "files", "--pool", "bench", "--path", str(src)
        )

    def backup(self, src: Path) -> None:
        """``tapir job run bench --level full``."""
        self._tapir("job", "run", "bench", "--level", "full")

    def backup2(self, src: Path) -> None:
        """``tapir job run bench --level incremental``."""
        self._tapir("job", "run", "bench", "--level", "incremental")

    def restore(self, dst: Path) -> Path:
        """``tapir restore bench:latest --to DST``; finds where the tree landed."""
        self._tapir("restore", "bench:latest", "--to", str(dst))
        assert self.src is not None
        return locate_restored_root(dst, self.src)

    def repo_size(self) -> int:
        """Allocated size of the pool folder."""
        return _allocated(self.pool)

    def cache_size(self) -> int:
        """The home: SQLite catalog and keys."""
        return _allocated(self.home)


class TapirZstd1(Tapir):
    """Tapir with the faster ``zstd:1`` pool compression."""

    name = "tapir-z1"
    compression = "zstd:1"
    description = "tapir, disk pool, --encrypt, --compression zstd:1"


def locate_restored_root(dst: Path, src: Path) -> Path:
    """The folder under ``dst`` that mirrors ``src``: DST itself, DST/<abs src> or DST/<name>.

    The spec does not fix whether a restore nests the original path, so accept
    the usual layouts and name them all when none matches.
    """
    candidates = [dst, dst / src.relative_to("/"), dst / src.name]
    expected = {p.name for p in src.iterdir()}
    for candidate in candidates:
        if candidate.is_dir() and expected <= {p.name for p in candidate.iterdir()}:
            return candidate
    found = sorted(str(p.relative_to(dst)) for p in dst.iterdir()) if dst.exists() else []
    raise FileNotFoundError(
        f"restored tree not found under {dst}: tried {', '.join(map(str, candidates))}; "
        f"top level holds {found}"
    )


PEERS: dict[str, type[Peer]] = {
    cls.name: cls for cls in (Tapir, TapirZstd1, Restic, Borg, BorgRepokey, CopyTree, TarZstd)
}


def make_peers(names: Sequence[str], work: Path, logs: Path) -> list[Peer]:
    """Instantiate the named peers, each logging to ``logs/<name>.log``."""
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown tool(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    return [PEERS[n](work, Runner(logs / f"{n}.log")) for n in names]


def environ_has(tool: str) -> bool:
    """True when ``tool`` is on PATH."""
    return shutil.which(tool, path=os.environ.get("PATH")) is not None
