"""AppTest of the Train page: read-only refusal, a real background job to completion, and Cancel.

The jobs are real ``python -m core train`` processes on a tiny checkpoint (a few seconds each after
start-up); the page is re-run while they work, as a reload would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.figures import training_loss_figure
from core.lab import jobs, registry
from core.lab.store import open_store
from core.training import TrainConfig
from storage import db, repository
from tests.pagedata import write_sts
from ui import train_widgets

ROOT = Path(__file__).resolve().parent.parent
PAGE = str(ROOT / "pages" / "6_Train.py")
TIMEOUT = 60
JOB_TIMEOUT_S = 300


@pytest.fixture
def lab(tiny_folder: Path, tmp_path: Path) -> tuple[str, Path]:
    """The tiny checkpoint registered in this test's database, and a tiny STS training file."""
    record = registry.register_checkpoint(str(tiny_folder), session_factory=open_store())
    db.dispose_engines()
    return record.name, write_sts(tmp_path / "train.tsv")


def _page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()


def _fill(at: AppTest, base: str, data: Path, max_steps: int, output: Path) -> AppTest:
    at.selectbox(key="train_base").set_value(base)
    at.selectbox(key="train_method").set_value("starbucks")
    at.selectbox(key="train_dataset").set_value("(a file or folder path)").run()
    at.text_input(key="train_path").set_value(str(data))
    at.text_input(key="train_pairs").set_value("1:16,3:48")
    at.number_input(key="train_max_steps").set_value(max_steps)
    at.number_input(key="train_batch").set_value(4)
    at.text_input(key="train_output").set_value(str(output))
    return at.button(key="train_start").click().run()


def _wait(job_id: str, until: str) -> jobs.TrainJob:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = jobs.read_job(jobs.jobs_dir() / job_id)
        if (until == "final" and not job.active) or (until == "stepping" and job.step >= 1):
            return job
        if not job.active:
            raise AssertionError(f"job ended early: {job.status} {job.error}")
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not reach {until} in {JOB_TIMEOUT_S} s")


def _no_errors(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_read_only_mode_refuses_training(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_READ_ONLY", "1")
    at = _page()
    assert not at.exception
    assert any("read-only" in i.value for i in at.info)
    assert not [b for b in at.button if b.key == "train_start"]


def test_a_started_job_runs_in_the_background_to_a_registered_checkpoint(
    lab: tuple[str, Path], tmp_path: Path
) -> None:
    base, data = lab
    at = _page()
    _no_errors(at)
    assert at.caption[-1].value == "No training job yet."
    at = _fill(at, base, data, max_steps=3, output=tmp_path / "trained")
    _no_errors(at)
    job_id = at.session_state["train_job"]
    job = _wait(job_id, "final")
    assert job.status == "completed", job.error
    at = _page()  # as after a reload: the job is found again from its files
    _no_errors(at)
    assert at.selectbox(key="train_job_select").value == job_id
    assert (
        "completed: 3/3 · " in at.get("progress")[0].proto.text
        and " s/step" in at.get("progress")[0].proto.text
    )
    assert any(str(tmp_path / "trained") in s.value for s in at.success)
    with open_store()() as s:
        record = repository.get_checkpoint(s, str(tmp_path / "trained"))
    assert record is not None and record.training_card is not None
    assert record.training_card["loss_curve"] == pytest.approx(job.losses, abs=1e-6)
    # page -> job -> CLI -> card: the config the page built is the one the job ran and the card records
    config = TrainConfig.load(jobs.jobs_dir() / job_id / "config.json")
    assert (config.method, config.pairs, config.max_steps, config.batch_size) == (
        "starbucks",
        ((1, 16), (3, 48)),
        3,
        4,
    )
    assert config.output_dir == str(tmp_path / "trained") and config.dataset == str(data)
    assert record.training_card["config"] == config.to_dict()


def test_cancel_button_stops_a_running_job(lab: tuple[str, Path], tmp_path: Path) -> None:
    base, data = lab
    at = _fill(_page(), base, data, max_steps=100_000, output=tmp_path / "never")
    _no_errors(at)
    job_id = at.session_state["train_job"]
    _wait(job_id, "stepping")
    at = _page()
    at.button(key="train_cancel").click().run()
    _no_errors(at)
    job = _wait(job_id, "final")
    assert job.status == "cancelled" and 1 <= job.step < 100_000
    assert not (tmp_path / "never").exists()
    at = _page()
    _no_errors(at)  # a cancelled job is not an error
    assert any(i.value.startswith("Cancelled") for i in at.info)


def test_bad_settings_are_refused_on_the_page_before_a_job_starts(
    lab: tuple[str, Path], tmp_path: Path
) -> None:
    base, data = lab
    at = _page()
    at.selectbox(key="train_base").set_value(base)
    at.selectbox(key="train_dataset").set_value("(a file or folder path)").run()
    at.text_input(key="train_path").set_value(str(data))
    for pairs, message in (("7:32", "layer must be in 1..3"), ("1:999", "1..48"), ("1:16,1:16", "twice")):
        at.text_input(key="train_pairs").set_value(pairs)
        at.button(key="train_start").click().run()
        assert not at.exception and message in at.error[0].value, (pairs, [e.value for e in at.error])
    at.text_input(key="train_pairs").set_value("")
    at.text_input(key="train_path").set_value(str(tmp_path / "missing.tsv"))
    at.button(key="train_start").click().run()
    assert "missing.tsv" in at.error[0].value
    assert jobs.list_jobs() == []  # nothing was started


def test_one_job_trains_at_a_time_the_next_is_queued(lab: tuple[str, Path], tmp_path: Path) -> None:
    base, data = lab
    first = _fill(_page(), base, data, max_steps=100_000, output=tmp_path / "first")
    first_id = first.session_state["train_job"]
    _wait(first_id, "stepping")
    second = _fill(_page(), base, data, max_steps=3, output=tmp_path / "second")
    _no_errors(second)
    second_id = second.session_state["train_job"]
    time.sleep(3)  # the second process is up, waiting for the training lock
    queued = jobs.read_job(jobs.jobs_dir() / second_id)
    assert queued.status == "queued" and queued.step == 0, queued.error
    assert any(i.value.startswith("Queued") for i in second.info)
    assert train_widgets.job_label(queued).startswith("tiny · starbucks · 20")  # named by base and method
    jobs.cancel_job(queued)
    assert jobs.read_job(jobs.jobs_dir() / second_id).status == "cancelled"
    jobs.cancel_job(first_id)
    assert _wait(first_id, "final").status == "cancelled"


def test_training_loss_figure_has_raw_and_smoothed_lines() -> None:
    fig = training_loss_figure([4.0, 2.0, 3.0, 1.0], window=2)
    assert list(fig.data[0].y) == [4.0, 2.0, 3.0, 1.0]
    assert list(fig.data[1].y) == [4.0, 3.0, 2.5, 2.0]


def test_a_trained_checkpoint_is_evaluated_on_the_test_split_of_its_training_data() -> None:
    assert jobs.evaluation_dataset("stsb-train").name == "stsb-test"  # type: ignore[union-attr]
    assert jobs.evaluation_dataset("stsb-dev").name == "stsb-dev"  # type: ignore[union-attr]
    assert jobs.evaluation_dataset("/data/my-pairs.tsv") is None  # no split known: Explore evaluates it
