"""core.provenance: what a run records about software, machine, lab revision and inputs."""

from __future__ import annotations

import json
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from core import provenance

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_collects_versions_machine_and_inputs() -> None:
    info = {"name": "default", "kind": "default", "fingerprint": "ab" * 16, "revision": None, "path": "/x"}
    record = provenance.collect_provenance(info, "cd" * 16)
    assert json.loads(json.dumps(record)) == record  # JSON-able as stored
    assert record["packages"]["numpy"] == metadata.version("numpy")
    assert record["packages"]["sqlalchemy"] == metadata.version("SQLAlchemy")
    assert record["packages"]["torch"] == metadata.version("torch")
    assert record["packages"]["faiss"] == metadata.version("faiss-cpu")
    assert set(record["packages"]) >= {"transformers", "sentence-transformers", "scipy"}
    assert record["python"] == platform.python_version()
    assert record["hostname"] == socket.gethostname()
    assert record["cpu_model"] and record["cpu_model"] != "unknown"
    assert record["checkpoint"] == {
        "name": "default",
        "kind": "default",
        "fingerprint": "ab" * 16,
        "revision": None,
    }
    assert record["dataset_fingerprint"] == "cd" * 16
    assert record["timestamp_utc"].endswith("+00:00")
    assert provenance.collect_provenance(None, None)["checkpoint"] is None


def test_torch_threads_reported_when_torch_is_loaded() -> None:
    record = provenance.collect_provenance(None, None)
    if "torch" in sys.modules:
        assert record["torch_threads"] == sys.modules["torch"].get_num_threads()
    else:
        assert record["torch_threads"] is None


def test_git_revision_is_the_lab_checkout_head() -> None:
    done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True)
    expected = done.stdout.strip() if done.returncode == 0 else None
    assert provenance.collect_provenance(None, None)["lab_git_revision"] == expected
