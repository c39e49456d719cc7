"""Digest of what an MTEB import stores: import PATH into a fresh SQLite database with the code of TREE, then
print the row counts and one sha256 over every stored reference model, task-file and score row (natural
keys, provenance, values; database ids left out).

Two code versions store the same thing when their digests are equal, e.g. before and after a change to
the importer (``git archive <commit> | tar -x -C /tmp/old``)::

    python bench/mteb_digest.py /tmp/old /path/to/results
    python bench/mteb_digest.py . /path/to/results

Give a PATH outside both trees (copy the shipped folder with ``cp -a`` first): inside a tree the stored
paths are relative to it, outside absolute, so the same files compared from two trees give two digests.
Used for the figures in README.md: the whole public results repository gives the same digest with the
importer before and after the msgspec speed-up.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

QUERIES = {
    "reference_models": "SELECT name, revision, embed_dim, n_parameters, max_tokens, similarity, meta_path, "
    "meta_sha256 FROM reference_models ORDER BY name, revision",
    "reference_results": "SELECT m.name, m.revision, r.task, r.source_path, r.sha256, r.mteb_version, "
    "r.dataset_revision, r.file_size, r.file_mtime_ns FROM reference_results r "
    "JOIN reference_models m ON m.id = r.model_id ORDER BY 1, 2, 3",
    "reference_scores": "SELECT m.name, m.revision, r.task, s.split, s.subset, s.metric, s.value "
    "FROM reference_scores s JOIN reference_results r ON r.id = s.result_id "
    "JOIN reference_models m ON m.id = r.model_id ORDER BY 1, 2, 3, 4, 5, 6",
}
# Since migration 0008 a task file's scores are packed in its reference_results row: the same rows,
# unpacked here and sorted as the query above sorts them (SQLite's binary order is Python's str order).
PACKED_SCORES = (
    "SELECT m.name, m.revision, r.task, r.scores FROM reference_results r "
    "JOIN reference_models m ON m.id = r.model_id"
)


def _score_rows(connection: sqlite3.Connection) -> list[tuple[object, ...]]:
    tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "reference_scores" in tables:
        return [tuple(row) for row in connection.execute(QUERIES["reference_scores"])]
    rows = [
        (name, revision, task, *score)
        for name, revision, task, packed in connection.execute(PACKED_SCORES)
        for score in json.loads(packed)
    ]
    return sorted(rows, key=lambda row: row[:6])


IMPORT = (
    "import sys\n"
    "from core.lab import mteb\n"
    "from storage import db\n"
    "report = mteb.import_results(db.init_db(sys.argv[1]), sys.argv[2])\n"
    "print(f'{report.files_seen} files, {report.files_changed} written, {len(report.errors)} refused')\n"
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "tree", type=Path, help="a checkout (or unpacked archive) of the lab whose importer to run"
    )
    parser.add_argument("path", type=Path, help="MTEB results folder to import")
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mlab-mteb-digest-"))
    database = home / "digest.sqlite3"
    env = {**os.environ, "MLAB_HOME": str(home), "MLAB_DATABASE_URL": f"sqlite:///{database}"}
    done = subprocess.run([sys.executable, "-c", IMPORT, f"sqlite:///{database}", str(args.path.resolve())],
                          cwd=args.tree, env=env, capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        sys.exit(f"error: the import with {args.tree} failed:\n{done.stderr}")
    print(f"{args.tree}: {done.stdout.strip()}")
    digest = hashlib.sha256()
    with sqlite3.connect(database) as connection:
        for table, query in QUERIES.items():
            count = 0
            rows = _score_rows(connection) if table == "reference_scores" else connection.execute(query)
            for row in rows:
                digest.update(repr(row).encode())
                count += 1
            print(f"{table}: {count:,} rows")
    print(f"digest {digest.hexdigest()}")


if __name__ == "__main__":
    main()
