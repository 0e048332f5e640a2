"""Verification of a pool: re-read and re-hash the chunks recovery points need.

The walk has two passes so memory holds only chunk ids, not paths: the first collects
the ids every chosen manifest references and checks each once; only when some chunk
failed does the second walk the items again to name the paths it breaks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..plugin_api.context import ProgressReporter
from ..plugin_api.errors import ChunkCorrupt, ChunkMissing, TapirError
from .manifest import Manifest

if TYPE_CHECKING:
    from .repository import Repository, VerifyProblem, VerifyReport

_BATCH = 32
_WORKERS = 2


def _display(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


class Verifier:
    """One verification run over a repository."""

    def __init__(
        self,
        repo: Repository,
        progress: ProgressReporter | None,
        check_canceled: Callable[[], None] | None,
    ) -> None:
        self.repo = repo
        self.progress = progress
        self.check_canceled = check_canceled or (lambda: None)

    def run(self, recovery_point_ids: Iterable[str] | None) -> VerifyReport:
        """Verify the given points, or the whole pool when None."""
        from .repository import VerifyProblem, VerifyReport

        report = VerifyReport()
        whole_pool = recovery_point_ids is None
        names = self.repo.manifest_ids() if whole_pool else list(dict.fromkeys(recovery_point_ids))
        manifests: list[Manifest] = []
        referenced: dict[bytes, None] = {}  # insertion-ordered set
        failed: dict[bytes, str] = {}
        for name in names:
            self.check_canceled()
            try:
                manifest = self.repo.read_manifest(name)
            except FileNotFoundError:
                report.problems.append(
                    VerifyProblem(None, f"recovery point {name} has no manifest", [name])
                )
                continue
            except TapirError as exc:
                report.problems.append(VerifyProblem(None, str(exc), [name]))
                continue
            report.manifests_checked += 1
            manifests.append(manifest)
            problem = self._collect(manifest, referenced)
            if problem is not None:
                report.problems.append(problem)
        self._check_all(list(referenced), report, failed)
        if whole_pool:
            extra = [cid for cid in self.repo.store.chunk_ids() if cid not in referenced]
            unreferenced_failed: dict[bytes, str] = {}
            self._check_all(extra, report, unreferenced_failed)
            for cid, message in unreferenced_failed.items():
                report.problems.append(
                    VerifyProblem(cid, f"{message} (not referenced by any recovery point)")
                )
        data_failed = {cid: msg for cid, msg in failed.items() if cid in referenced}
        if data_failed:
            report.problems.extend(self._name_damage(manifests, data_failed))
        return report

    def _collect(
        self,
        manifest: Manifest,
        referenced: dict[bytes, None],
    ) -> VerifyProblem | None:
        """Add ``manifest``'s chunk ids to ``referenced``; a problem if its item list breaks."""
        from .repository import VerifyProblem

        for cid in manifest.item_stream:
            referenced[cid] = None
        try:
            for item in self.repo.iter_items(manifest):
                for ref in item.chunks:
                    if ref.id is not None:
                        referenced[ref.id] = None
        except (ChunkMissing, ChunkCorrupt) as exc:
            # The chunk itself is reported with the others once checked; this problem
            # says what its loss hides.
            return VerifyProblem(
                None,
                f"item list of recovery point {manifest.id} is unreadable ({exc}): the items "
                "after that point could not be listed or checked",
                [manifest.id],
                ["(item list)"],
            )
        except TapirError as exc:
            return VerifyProblem(
                None, f"item list of recovery point {manifest.id}: {exc}", [manifest.id]
            )
        return None

    def _check_all(self, ids: list[bytes], report: VerifyReport, failed: dict[bytes, str]) -> None:
        """Load (and so verify) every chunk in ``ids``; record failures in ``failed``."""
        todo = [cid for cid in ids if cid not in failed]
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="tapir-verify") as pool:
            for start in range(0, len(todo), _BATCH):
                self.check_canceled()
                batch = todo[start : start + _BATCH]
                for cid, length, error in pool.map(self._check_one, batch):
                    report.chunks_checked += 1
                    if error is not None:
                        failed[cid] = error
                        continue
                    report.bytes_checked += length
                    if self.progress is not None:
                        self.progress.advance(bytes_done=length)

    def _check_one(self, cid: bytes) -> tuple[bytes, int, str | None]:
        try:
            return cid, len(self.repo.load_chunk(cid)), None
        except (ChunkMissing, ChunkCorrupt) as exc:
            return cid, 0, str(exc)

    def _name_damage(
        self, manifests: list[Manifest], failed: dict[bytes, str]
    ) -> Iterator[VerifyProblem]:
        """One problem per failed chunk, naming the points and item paths that need it."""
        from .repository import VerifyProblem

        points: dict[bytes, dict[str, None]] = {cid: {} for cid in failed}
        paths: dict[bytes, dict[str, None]] = {cid: {} for cid in failed}
        for manifest in manifests:
            self.check_canceled()
            for cid in manifest.item_stream:
                if cid in failed:
                    points[cid][manifest.id] = None
                    paths[cid]["(item list)"] = None
            try:
                for item in self.repo.iter_items(manifest):
                    for ref in item.chunks:
                        if ref.id in failed:
                            points[ref.id][manifest.id] = None
                            paths[ref.id][_display(item.path)] = None
            except TapirError:
                continue  # already reported by the first pass
        for cid, message in failed.items():
            yield VerifyProblem(cid, message, list(points[cid]), list(paths[cid]))
