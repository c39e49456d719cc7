"""Security: checkpoint code and pickles never run unless the user said so.

- ``trust_remote_code`` is off for every checkpoint unless its name is listed in
  ``MLAB_TRUST_REMOTE_CODE``: a folder whose config points at its own Python module (``auto_map``) loads
  WITHOUT importing that module, and imports it only when that very folder is listed.
- Weights load from safetensors, or from a legacy ``.bin`` with ``torch.load(weights_only=True)``: a
  pickled ``.bin`` whose ``__reduce__`` would run code is refused with a clear ``CheckpointError`` and the
  payload never runs (it would create a marker file).

Read-only demo mode refusing writes in core is covered by tests/test_read_only.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core import checkpoints
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

EVIL_MODULE = '''
import os
import pathlib

pathlib.Path(os.environ["MLAB_EVIL_MARKER"]).write_text("remote code ran")

from transformers import BertModel


class EvilModel(BertModel):
    """Behaves like BERT; its import is the payload."""
'''


def _remote_code_folder(folder: Path) -> Path:
    build_tiny_checkpoint(folder, layers=2, hidden=32)
    (folder / "modeling_evil.py").write_text(EVIL_MODULE)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _load_in_subprocess(
    folder: Path, marker: Path, tmp_path: Path, trusted: str
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "MLAB_EVIL_MARKER": str(marker),
        "MLAB_TRUST_REMOTE_CODE": trusted,
        "HF_HOME": str(tmp_path / "hf-home"),  # dynamic modules are copied under here, not ~/.cache
        "HF_HUB_OFFLINE": "1",
    }
    code = (
        "import sys; from core import checkpoints; "
        "spec = checkpoints.parse_checkpoint(sys.argv[1]); "
        "loaded = checkpoints.load(spec); "
        "print(spec.trust_remote_code, type(loaded.model[0].auto_model).__name__)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, str(folder)],
        cwd=support.REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_trust_remote_code_is_off_unless_the_checkpoint_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _remote_code_folder(tmp_path / "remote-code-model")
    monkeypatch.delenv("MLAB_TRUST_REMOTE_CODE", raising=False)
    assert checkpoints.parse_checkpoint(str(folder)).trust_remote_code is False
    assert checkpoints.parse_checkpoint("default").trust_remote_code is False
    assert checkpoints.parse_checkpoint("org/model@v1").trust_remote_code is False
    monkeypatch.setenv("MLAB_TRUST_REMOTE_CODE", f"org/model, {folder}")
    assert checkpoints.parse_checkpoint(str(folder)).trust_remote_code is True
    assert checkpoints.parse_checkpoint("org/model").trust_remote_code is True
    assert checkpoints.parse_checkpoint("org/other").trust_remote_code is False
    assert checkpoints.parse_checkpoint("default").trust_remote_code is False
    monkeypatch.setenv("MLAB_TRUST_REMOTE_CODE", str(tmp_path / "another-folder"))
    assert checkpoints.parse_checkpoint(str(folder)).trust_remote_code is False


@pytest.mark.slow
def test_checkpoint_code_runs_only_when_that_checkpoint_is_trusted(tmp_path: Path) -> None:
    folder = _remote_code_folder(tmp_path / "remote-code-model")
    marker = tmp_path / "remote-code-ran"

    untrusted = _load_in_subprocess(folder, marker, tmp_path, trusted="")
    assert untrusted.returncode == 0, untrusted.stderr
    assert untrusted.stdout.split() == ["False", "BertModel"]  # the library's own class, not EvilModel
    assert not marker.exists()

    other = _load_in_subprocess(folder, marker, tmp_path, trusted=str(tmp_path / "some-other-model"))
    assert other.returncode == 0, other.stderr
    assert not marker.exists()

    trusted = _load_in_subprocess(folder, marker, tmp_path, trusted=str(folder))
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.split() == ["True", "EvilModel"]
    assert marker.read_text() == "remote code ran"  # the switch is real: named checkpoint, code runs


class _Payload:
    """Unpickling this runs ``exec``: it would write the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pickle payload ran')",))


def test_pickled_bin_with_code_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    folder = build_tiny_checkpoint(tmp_path / "pickled-model", layers=2, hidden=32)
    from safetensors.torch import load_file

    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pickle-payload-ran"
    torch.save({**state, "evil": _Payload(marker)}, folder / "pytorch_model.bin")
    assert not marker.exists()

    with pytest.raises(checkpoints.CheckpointError) as raised:
        checkpoints.load(str(folder))
    message = str(raised.value)
    assert str(folder) in message
    # The lab's own sentence, on one line: not torch's advice to load it the unsafe way.
    assert "pickle" in message and "safetensors" in message
    assert "weights_only=False" not in message and "\n" not in message
    print(f"\nrefused with: {message}")
    assert not marker.exists()  # weights_only=True refused the payload before running it

    # The same file loaded the unsafe way really would run the payload (the test's bait is real).
    torch.load(folder / "pytorch_model.bin", weights_only=False)
    assert marker.read_text() == "pickle payload ran"


def test_plain_tensor_bin_still_loads_safely(tmp_path: Path) -> None:
    """A legacy ``.bin`` of plain tensors (no code) loads under ``weights_only=True``."""
    folder = build_tiny_checkpoint(tmp_path / "legacy-bin", layers=2, hidden=32)
    from safetensors.torch import load_file

    reference = checkpoints.load(str(folder)).model.encode(["a legacy checkpoint"])
    state = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    loaded = checkpoints.load(str(folder))
    assert loaded.model.encode(["a legacy checkpoint"]) == pytest.approx(reference, abs=1e-6)
