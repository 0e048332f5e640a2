"""Run every benchmarked tool on the same data in the same run; write docs/benchmarks.md.

    .venv/bin/python benchmarks/run.py [--scale 1.0] [--seed 1] [--tools a,b] [--work DIR]

Steps: generate (or reuse) the seeded data set, copy it to ``WORK/src``, create
each tool's empty repository, then for every tool: first backup; apply the
day-2 mutation once; second backup for every tool; full restore for every tool,
each compared with the source tree by content hash. The page cache is dropped
before every timed step when the kernel permits it. Exit code 1 when any step
fails or any restore differs from the source.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import datagen
import machine
import peers
import report
import treehash
from measure import CommandFailed

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TOOLS = ("tapir", "tapir-z1", "restic", "borg", "borg-repokey", "cp", "tarzstd")
NEEDS = {
    "restic": ["restic"],
    "borg": ["borg"],
    "borg-repokey": ["borg"],
    "cp": ["cp"],
    "tarzstd": ["tar", "zstd", "bash"],
}


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def cached_dataset(work: Path, seed: int, scale: float) -> tuple[Path, dict]:
    """The pristine data set for (seed, scale), generated once and reused."""
    cache = work / "cache"
    key = f"v{datagen.FORMAT_VERSION}-seed{seed}-scale{scale:g}"
    folder = cache / key
    summary_file = cache / f"{key}.json"
    if folder.exists() and summary_file.exists():
        return folder, json.loads(summary_file.read_text())
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted generation: start over
    _log(f"generating data set seed={seed} scale={scale:g} in {folder}")
    started = time.perf_counter()
    summary = datagen.generate(folder, seed=seed, scale=scale)
    data = asdict(summary) | {
        "total_bytes": summary.total_bytes,
        "tree": asdict(datagen.tree_size(folder)),
        "generate_seconds": time.perf_counter() - started,
    }
    # Written last: its presence marks the cached folder as complete.
    summary_file.write_text(json.dumps(data, indent=2))
    return folder, data


def _fresh_copy(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run(["cp", "-a", "--sparse=always", f"{source}/.", f"{target}/"], check=True)


def check_tools(names: list[str]) -> None:
    """Fail early, naming what to install, when a tool's programs are missing."""
    missing = []
    for name in names:
        if name.startswith("tapir"):
            if not peers.Tapir.executable.exists():
                missing.append(f"{name}: {peers.Tapir.executable}")
            continue
        missing += [
            f"{name}: {prog} (apt-get install -y {'borgbackup' if prog == 'borg' else prog})"
            for prog in NEEDS.get(name, [])
            if not peers.environ_has(prog)
        ]
    if missing:
        raise SystemExit("error: missing programs:\n  " + "\n  ".join(missing))


def _timed(peer: peers.Peer, step: str, action, source_bytes: int, result: dict) -> bool:
    """Run one timed step, recording wall time, MB/s and peak RSS; False on failure."""
    if result.get("error"):
        return False
    result.setdefault("cache_dropped", []).append(machine.drop_caches())
    collector = peer.runner.begin_step()
    started = time.perf_counter()
    try:
        value = action()
    except (CommandFailed, OSError, ValueError) as exc:
        result["error"] = f"{step}: {exc}"
        _log(f"{peer.name} {step} FAILED: {exc}")
        return False
    wall = time.perf_counter() - started
    result[step] = {
        "seconds": wall,
        "mb_per_s": source_bytes / wall / 1e6 if wall else 0.0,
        "peak_rss": collector.peak_rss,
    }
    result[f"{step}_value"] = str(value) if value is not None else None
    _log(f"{peer.name} {step}: {wall:.1f} s, {source_bytes / wall / 1e6:.0f} MB/s")
    return True


def one_round(tool_set: list[peers.Peer], dataset: Path, work: Path, seed: int, keep: bool) -> dict:
    """Back up, mutate, back up again and restore with every tool, once."""
    src = work / "src"
    _log(f"copying data set to {src}")
    _fresh_copy(dataset, src)
    day1 = datagen.tree_size(src)

    results: dict[str, dict] = {p.name: {"description": p.description} for p in tool_set}
    for peer in tool_set:
        try:
            peer.setup(src)
        except (CommandFailed, OSError) as exc:
            results[peer.name]["error"] = f"setup: {exc}"
            _log(f"{peer.name} setup FAILED: {exc}")

    for peer in tool_set:
        res = results[peer.name]
        if _timed(peer, "backup", lambda p=peer: p.backup(src), day1.apparent, res):
            res["repo_after_backup"] = peer.repo_size()

    _log("applying day-2 mutation")
    mutation = datagen.mutate(src, seed=seed)
    day2 = datagen.tree_size(src)

    for peer in tool_set:
        res = results[peer.name]
        if _timed(peer, "backup2", lambda p=peer: p.backup2(src), day2.apparent, res):
            res["repo_after_backup2"] = peer.repo_size()
            res["bytes_added"] = res["repo_after_backup2"] - res["repo_after_backup"]
            res["cache_size"] = peer.cache_size()

    _log("hashing the source tree")
    expected = treehash.digest_tree(src)
    for peer in tool_set:
        res = results[peer.name]
        dst = work / "restore" / peer.name
        if dst.exists():
            shutil.rmtree(dst)
        dst.mkdir(parents=True)
        if _timed(peer, "restore", lambda p=peer, d=dst: p.restore(d), day2.apparent, res):
            root = Path(res["restore_value"])
            try:
                comparison = treehash.compare_trees(expected, treehash.digest_tree(root))
            except FileNotFoundError as exc:
                res["verify"] = f"FAILED: {exc}"
            else:
                res["verify"] = "identical" if comparison.identical else comparison.describe()
                res["mode_differs"] = len(comparison.mode_differs)
                res["mtime_differs"] = len(comparison.mtime_differs)
            if res["verify"] != "identical":
                _log(f"{peer.name} RESTORE DIFFERS FROM SOURCE: {res['verify']}")
        if not keep:
            shutil.rmtree(dst, ignore_errors=True)
    return {
        "results": results,
        "day1_tree": asdict(day1),
        "day2_tree": asdict(day2),
        "mutation": asdict(mutation) | {"bytes_written": mutation.bytes_written},
    }


def aggregate(rounds: list[dict]) -> dict[str, dict]:
    """Per tool: median time per step (with min and max), worst RSS, median sizes.

    Any error or restore difference in any round is carried into the summary.
    """
    summary: dict[str, dict] = {}
    day_bytes = {
        "backup": rounds[0]["day1_tree"]["apparent"],
        "backup2": rounds[0]["day2_tree"]["apparent"],
        "restore": rounds[0]["day2_tree"]["apparent"],
    }
    for name in rounds[0]["results"]:
        runs = [r["results"][name] for r in rounds]
        out: dict = {"description": runs[0]["description"], "rounds": len(runs)}
        errors = [r["error"] for r in runs if r.get("error")]
        if errors:
            out["error"] = errors[0]
        verdicts = [r.get("verify") for r in runs if r.get("verify") != "identical"]
        out["verify"] = verdicts[0] if verdicts else "identical"
        for step, source_bytes in day_bytes.items():
            done = [r[step] for r in runs if r.get(step)]
            if len(done) != len(runs):
                continue
            seconds = sorted(d["seconds"] for d in done)
            median = statistics.median(seconds)
            out[step] = {
                "seconds": median,
                "min_seconds": seconds[0],
                "max_seconds": seconds[-1],
                "mb_per_s": source_bytes / median / 1e6 if median else 0.0,
                "peak_rss": max(d["peak_rss"] for d in done),
            }
        for key in ("repo_after_backup", "repo_after_backup2", "bytes_added", "cache_size"):
            values = [r[key] for r in runs if key in r]
            if len(values) == len(runs):
                out[key] = int(statistics.median(values))
        for key in ("mode_differs", "mtime_differs"):
            out[key] = max((r.get(key, 0) for r in runs), default=0)
        out["cache_dropped"] = [flag for r in runs for flag in r.get("cache_dropped", [])]
        summary[name] = out
    return summary


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; returns the process exit code."""
    if args.render_only:
        write_doc(args.work.resolve(), args.doc)
        return 0
    if args.repeat < 1:
        raise SystemExit("error: --repeat must be at least 1")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    names = [n.strip() for n in args.tools.split(",") if n.strip()]
    check_tools(names)
    tool_set = peers.make_peers(names, work / "tools", work / "logs")
    dataset, data_summary = cached_dataset(work, args.seed, args.scale)
    load_before = os.getloadavg()
    # Taken before the rounds: the code under test may change while they run.
    versions = machine.tool_versions(
        peers.Tapir.executable if any(n.startswith("tapir") for n in names) else None
    )

    rounds = []
    for number in range(1, args.repeat + 1):
        _log(f"round {number} of {args.repeat}")
        rounds.append(one_round(tool_set, dataset, work, args.seed, args.keep))
    results = aggregate(rounds)
    failed = any(r.get("error") or r["verify"] != "identical" for r in results.values())

    record = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seed": args.seed,
        "scale": args.scale,
        "repeat": args.repeat,
        "tools": names,
        "command": shlex.join([".venv/bin/python", "benchmarks/run.py", *sys.argv[1:]]),
        "machine": machine.machine_info(work)
        | {"load average at start": " ".join(f"{x:.2f}" for x in load_before)},
        "versions": versions,
        "dataset": data_summary,
        "day1_tree": rounds[0]["day1_tree"],
        "day2_tree": rounds[0]["day2_tree"],
        "mutation": rounds[0]["mutation"],
        "results": results,
        "rounds": rounds,
        "drop_caches_permitted": all(all(r["cache_dropped"]) for r in results.values()),
    }
    results_dir = work / "results"
    results_dir.mkdir(exist_ok=True)
    (results_dir / f"scale-{args.scale:g}.json").write_text(json.dumps(record, indent=2))
    write_doc(work, args.doc)
    print(report.render_table(record))
    if failed:
        _log("FAILED: at least one step failed or one restore differs (see above)")
    return 1 if failed else 0


def write_doc(work: Path, doc: Path) -> None:
    """Render every saved result (one per scale) in ``WORK/results`` into ``doc``."""
    records = [json.loads(p.read_text()) for p in sorted((work / "results").glob("scale-*.json"))]
    if not records:
        raise SystemExit(f"error: no results in {work / 'results'}; run the benchmark first")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(report.render(records))
    _log(f"wrote {doc}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="data set size x 2 GiB")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tools", default=",".join(DEFAULT_TOOLS), help="comma-separated subset")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "bench-work")
    parser.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--keep", action="store_true", help="keep restored trees")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="only rewrite the document from the results saved in WORK/results",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; the tables show medians (default 3)"
    )
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
