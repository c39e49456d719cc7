"""Environment mistakes: one error line naming the variable or file, credentials never echoed.

Issue 15, case 7: a non-numeric port in ``MLAB_DATABASE_URL`` (a ``ValueError`` traceback), ``MLAB_HOME``
or ``MLAB_CACHE_DIR`` pointing at a file (``FileExistsError``), a database URL whose folder is a file,
and an unparseable URL echoed with its password. Hypothesis draws the URLs (ports, passwords, hosts,
garbage); every one either works or is refused with one line that never contains the password.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from streamlit.testing.v1 import AppTest

from storage import db
from tests.faults import support
from tests.tinymodel import build_tiny_checkpoint

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://bob:{SECRET}@localhost:abc/lab",
        f"postgresql+psycopg://bob:{SECRET}@localhost:99999999999999999999/lab",
        f"bob:{SECRET}@localhost/lab",
        f"postgresql+nosuchdriver://bob:{SECRET}@localhost/lab",
        f"mysql://bob:{SECRET}@localhost:3306",
    ],
)
@pytest.mark.parametrize("command", [["results"], ["checkpoints"], ["datasets", "--json"]])
def test_a_bad_database_url_is_one_line_naming_the_variable_without_its_password(
    url: str, command: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAB_DATABASE_URL", url)
    code, out, err = support.run_cli(command)
    line = support.assert_one_error_line(code, err, "MLAB_DATABASE_URL")
    assert SECRET not in err and SECRET not in out and SECRET not in line


@settings(
    deadline=None,
    database=None,
    derandomize=True,
    max_examples=300,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    scheme=st.sampled_from(["postgresql", "postgresql+psycopg", "sqlite", "mysql", "", "http", "pg sql"]),
    user=st.text(st.characters(codec="ascii", exclude_characters=":@/"), max_size=6),
    password=st.text(st.characters(codec="ascii", exclude_characters="@/ "), min_size=4, max_size=12),
    host=st.sampled_from(["localhost", "", "db.example", "[::1]", "a b"]),
    port=st.one_of(st.none(), st.integers(-5, 10**8).map(str), st.sampled_from(["abc", "", "5x", "٣"])),
)
def test_database_urls_are_used_or_refused_and_the_password_never_shows(
    scheme: str, user: str, password: str, host: str, port: str | None
) -> None:
    url = f"{scheme}://{user}:{password}@{host}" + (f":{port}" if port is not None else "") + "/lab"
    elsewhere = password in url.replace(f":{password}@", ":@", 1)  # also the user, host...: not a leak
    try:
        db.get_engine(url)
    except db.StorageError as exc:
        assert "\n" not in str(exc)
        assert elsewhere or password not in str(exc), str(exc)
    finally:
        db.dispose_engines()
    assert elsewhere or password not in db.safe_url(url)


@pytest.mark.parametrize("variable", ["MLAB_HOME", "MLAB_CACHE_DIR"])
def test_a_home_or_cache_folder_that_is_a_file_is_named(
    variable: str, tmp_path: Path, lab_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("I am a file")
    monkeypatch.setenv(variable, str(a_file))
    if variable == "MLAB_HOME":
        monkeypatch.delenv("MLAB_DATABASE_URL")
        monkeypatch.delenv("MLAB_CACHE_DIR")
    sts = support.write_sts(tmp_path / "pairs.tsv", 6)
    tiny = build_tiny_checkpoint(tmp_path / "tiny", layers=1, hidden=16)
    code, _, err = support.run_cli(
        ["evaluate", "--checkpoint", str(tiny), "--dataset", str(sts), "--layers", "1", "--dims", "8"]
    )
    support.assert_one_error_line(code, err, variable, str(a_file), "is a file")
    assert a_file.read_text() == "I am a file"
    assert support.stored(lab_env)["runs"] == 0 and support.stored(lab_env)["checkpoints"] == 0


def test_a_database_url_under_a_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    monkeypatch.setenv("MLAB_DATABASE_URL", f"sqlite:///{a_file}/lab.sqlite3")
    code, _, err = support.run_cli(["results"])
    support.assert_one_error_line(code, err, "MLAB_DATABASE_URL", str(a_file))


def test_the_home_page_shows_a_bad_database_url_as_one_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAB_DATABASE_URL", f"postgresql+psycopg://bob:{SECRET}@localhost:abc/lab")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert at.error and "invalid database URL" in shown and SECRET not in shown
    assert not at.expander
