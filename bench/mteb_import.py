"""MTEB import benchmark: a whole results folder (e.g. a checkout of embeddings-benchmark/results) into a
fresh database, then the same folder again (every file unchanged), timed in one process.

Usage: ``python bench/mteb_import.py PATH [--out bench/results/mteb_import.md]``. Prints a table (files,
models, scores written, seconds, database size) and writes it as markdown; the README quotes a run of it.
Nothing from PATH is copied into the repository.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _commit(path: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True)  # fmt: skip
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _cpu() -> tuple[float, float]:
    """CPU seconds (user + sys) of this process, and of its finished children (the import's reader processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="results folder or a checkout with results/ inside")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "mteb_import.md")
    parser.add_argument(
        "--source", default=None, help="what PATH is, for the report (default: its git commit)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="mlab-bench-mteb-"))
    os.environ["MLAB_HOME"] = str(workdir)
    database = workdir / "bench.sqlite3"
    os.environ["MLAB_DATABASE_URL"] = f"sqlite:///{database}"

    from core.lab import mteb as lab_mteb
    from core.lab.store import open_store

    factory = open_store()
    load_start = os.getloadavg()
    size = sum(p.stat().st_size for p in args.path.rglob("*.json"))
    rows = []
    for label in ("first import (empty database)", "again (every file unchanged)"):
        started, (own_started, children_started) = time.perf_counter(), _cpu()
        report = lab_mteb.import_results(factory, args.path)
        own, children = _cpu()
        wall, main_cpu, readers_cpu = (
            time.perf_counter() - started,
            own - own_started,
            children - children_started,
        )
        rows.append((label, report, wall, main_cpu, readers_cpu))
        print(f"{label}: {report.files_seen:,} files, {report.models:,} models, {report.files_changed:,} changed, "
              f"{report.scores_written:,} scores ({report.scores_written / wall:,.0f}/s), {len(report.errors)} refused, "
              f"{wall:.1f} s wall, {main_cpu + readers_cpu:.1f} s CPU ({main_cpu:.1f} main + {readers_cpu:.1f} readers)")  # fmt: skip
    db_mb = sum(p.stat().st_size for p in workdir.glob("bench.sqlite3*")) / 1e6
    load = os.getloadavg()  # the load at the end; the start's is printed below
    lines = [
        "# Importing a whole MTEB results repository (`python bench/mteb_import.py`)",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.machine()}, {os.cpu_count()} CPUs "
        f"(load average {load_start[0]:.1f} at the start, {load[0]:.1f} at the end: the machine is shared), Python {platform.python_version()}.",
        f"Source: {args.source or args.path.name + ' @ ' + _commit(args.path)}, {size / 1e9:.2f} GB of JSON.",
        "",
        "| run | files | models | task files written | scores written | scores/s | refused | wall s | CPU s (main + readers) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, report, wall, main_cpu, readers_cpu in rows:
        lines.append(f"| {label} | {report.files_seen:,} | {report.models:,} | {report.files_changed:,} | "
                     f"{report.scores_written:,} | {report.scores_written / wall:,.0f} | {len(report.errors)} | {wall:.1f} | "
                     f"{main_cpu + readers_cpu:.1f} ({main_cpu:.1f} + {readers_cpu:.1f}) |")  # fmt: skip
    lines += [
        "",
        "CPU s: user + sys time of this process (listing, database writes) and of the reader processes it "
        "forks (one per core, for a large import: reading, hashing, parsing); with readers running beside "
        "the database writes, CPU can exceed wall on an idle machine, while on a loaded one wall is mostly "
        "time waiting for a core.",
        "",
        f"SQLite database after the import: {db_mb:.0f} MB.",
        "",
    ]
    conflicts = rows[0][1].conflicts
    lines.append(f"Metadata conflicts shown: {len(conflicts)} models, e.g.:")
    lines += [f"- {c.describe()}" for c in conflicts[:5]]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
