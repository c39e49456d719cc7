"""Checkpoint folders that are not what they claim: refused before anything is scored or stored.

Issue 15, cases 3 and 5: a copy of a checkpoint whose config.json asks for more (or fewer) layers than
its weights hold was loaded with freshly initialised layers and scored as valid (different numbers on
every run); ``--checkpoint /`` walked the whole file system to fingerprint it and died on a
PermissionError. Now the weights must cover the config exactly (the message names the keys), a folder
must hold modules.json or config.json before anything is read, and the fingerprint reads only the
files of the folder and of the module folders modules.json lists.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from core import checkpoints
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny", layers=2, hidden=16)


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return support.write_sts(tmp_path_factory.mktemp("sts") / "pairs.tsv", 8)


def _with_layers(tiny: Path, folder: Path, layers: int) -> Path:
    shutil.copytree(tiny, folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = layers
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("layers", "needles"),
    [
        (4, ["missing", "encoder.layer.2.", "and "]),  # layers 3-4 would be random
        (1, ["does not know", "encoder.layer.1."]),  # weights of layer 2 would be dropped
    ],
)
def test_config_weights_mismatch_is_refused_naming_the_keys(
    layers: int, needles: list[str], tiny: Path, sts: Path, tmp_path: Path, lab_env: Path
) -> None:
    folder = _with_layers(tiny, tmp_path / f"copy-{layers}", layers)
    code, out, err = support.run_cli(
        ["evaluate", "--checkpoint", str(folder), "--dataset", str(sts), "--dims", "8", "--quiet"]
    )
    support.assert_one_error_line(code, err, str(folder), "does not match its config.json", *needles)
    assert out == ""
    assert support.stored(lab_env) == support.NOTHING_STORED  # no run, result, checkpoint or cache entry


def test_a_matching_checkpoint_still_evaluates(tiny: Path, sts: Path, lab_env: Path) -> None:
    code, _, err = support.run_cli(
        ["evaluate", "--checkpoint", str(tiny), "--dataset", str(sts), "--dims", "8", "--quiet", "--json"]
    )
    assert code == 0, err
    assert support.stored(lab_env)["results"] == 2 * 2  # 2 layers x 1 dim x 2 metrics


@pytest.mark.parametrize("where", ["/", "/usr", "empty"])
def test_a_folder_that_is_not_a_checkpoint_is_refused_before_reading_it(
    where: str, tmp_path: Path, lab_env: Path, sts: Path
) -> None:
    target = str(tmp_path) if where == "empty" else where
    started = time.perf_counter()
    code, _, err = support.run_cli(["evaluate", "--checkpoint", target, "--dataset", str(sts)])
    elapsed = time.perf_counter() - started
    support.assert_one_error_line(code, err, "modules.json or config.json")
    print(f"\n{target} refused in {elapsed:.2f} s")
    assert support.stored(lab_env) == support.NOTHING_STORED


def test_fingerprint_reads_only_the_files_a_checkpoint_uses(tiny: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(tiny, folder)
    before = checkpoints.fingerprint_folder(folder)
    used = {p.relative_to(folder).as_posix() for p in checkpoints.checkpoint_files(folder)}
    assert {"model.safetensors", "config.json", "modules.json", "1_Pooling/config.json"} <= used
    # Anything outside the folder's own files and its modules' folders is not read: nested training
    # folders, data, a huge tree.
    junk = folder / "runs" / "deep" / "deeper"
    junk.mkdir(parents=True)
    (junk / "weights.bin").write_bytes(b"x" * 1000)
    (folder / "checkpoint-500").mkdir()
    (folder / "checkpoint-500" / "model.safetensors").write_bytes(b"not read")
    assert checkpoints.fingerprint_folder(folder) == before
    # A file the checkpoint uses changes it.
    (folder / "1_Pooling" / "config.json").write_text(
        (folder / "1_Pooling" / "config.json").read_text().replace("true", "true ")
    )
    assert checkpoints.fingerprint_folder(folder) != before


def test_a_module_path_outside_the_folder_is_refused(tiny: Path, tmp_path: Path, lab_env: Path) -> None:
    folder = tmp_path / "escape"
    shutil.copytree(tiny, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["path"] = "../../../../.."
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(checkpoints.CheckpointError, match="outside the checkpoint"):
        checkpoints.fingerprint_folder(folder)


def test_the_default_checkpoint_keeps_its_fingerprint() -> None:
    """Bounding the files read did not change what the default's fingerprint covers (stored results)."""
    assert (
        checkpoints.fingerprint_folder(checkpoints.default_model_path()) == "15f2566a2064d7e163cfad00a419a6c5"
    )


@pytest.mark.parametrize("which", ["mismatch", "root"])
def test_the_home_page_refuses_such_checkpoints_with_one_message(
    which: str, tiny: Path, tmp_path: Path, lab_env: Path
) -> None:
    from streamlit.testing.v1 import AppTest

    folder = str(_with_layers(tiny, tmp_path / "copy", 4)) if which == "mismatch" else "/"
    at = AppTest.from_file(str(support.REPO / "app.py"), default_timeout=120).run()
    at.text_input(key="home_checkpoint_text").input(folder)
    at.button(key="home_checkpoint_go").click().run()
    assert not at.exception and len(at.error) == 1 and not at.expander
    expected = "does not match its config.json" if which == "mismatch" else "modules.json or config.json"
    assert expected in at.error[0].value
    assert support.stored(lab_env)["checkpoints"] == 0
