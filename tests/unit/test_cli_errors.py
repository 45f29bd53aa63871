"""A failing `mlops` command prints one line, `error: <message>`, on stderr and exits 1."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from mlops.data.sources import DataSourceError
from mlops.training.train import TrainParams
from stack.cli import app
from stack.cli_errors import error_message, quiet_failed_runs

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _prefect_logging() -> None:
    """Set up Prefect's console logging before CliRunner swaps stderr for the first command.

    Its console handler keeps the stream it is created with, and CliRunner closes its own.
    """
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))


def test_a_data_error_is_one_line_on_stderr_naming_the_file(tmp_path: Path) -> None:
    empty = tmp_path / "traffic.csv"
    empty.write_bytes(b"")

    result = runner.invoke(app, ["replay", str(empty)])

    assert result.exit_code == 1
    assert result.stderr == f"error: {empty} is empty: a CSV file needs a header row\n"
    assert "Traceback" not in result.output


def test_debug_lets_the_exception_and_its_traceback_through(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--debug", "replay", str(tmp_path / "missing.csv")])

    assert result.exit_code == 1
    assert isinstance(result.exception, DataSourceError)
    assert "error:" not in result.stderr


def test_invalid_training_options_are_one_line_naming_the_field() -> None:
    result = runner.invoke(app, ["train", "--holdout-fraction", "0.9", "--data-uri", "x.csv"])

    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("error: invalid TrainParams: holdout_fraction: ")


def test_a_bad_window_time_is_one_line() -> None:
    result = runner.invoke(app, ["train", "--end", "next tuesday"])

    assert result.exit_code == 1
    assert result.stderr == "error: Invalid isoformat string: 'next tuesday'\n"


def test_a_last_span_that_is_not_a_duration_is_one_line() -> None:
    result = runner.invoke(app, ["train", "--last", "500"])
    assert result.exit_code == 2
    assert "'500' is not a duration (e.g. 90d)" in result.stderr

    result = runner.invoke(app, ["train", "--last", "soon"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: 'soon' is neither a row count")


def test_usage_errors_keep_typer_s_own_message() -> None:
    result = runner.invoke(app, ["promote"])

    assert result.exit_code == 2
    assert "Missing argument 'version'" in result.output


def test_error_message_is_one_line_without_key_error_quotes() -> None:
    with pytest.raises(ValidationError) as invalid:
        TrainParams(max_epochs=0, dropout=2.0)

    message = error_message(invalid.value)

    assert "\n" not in message
    assert "max_epochs: " in message and "dropout: " in message
    assert error_message(KeyError("no version v9")) == "no version v9"


def test_quiet_failed_runs_hides_prefect_errors_from_the_console_until_the_block_ends() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    [console] = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]

    def record(name: str, level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, None, None)

    failed = record("prefect.flow_runs", logging.ERROR, "Encountered exception during execution")
    final = record("prefect.flow_runs", logging.INFO, "Finished in state Failed('boom')")
    progress = record("prefect.task_runs", logging.INFO, "validation: 10 valid, 0 quarantined")
    done = record("prefect.task_runs", logging.INFO, "Finished in state Completed()")
    with quiet_failed_runs(debug=False):
        assert not console.filter(failed) and not console.filter(final)
        assert console.filter(progress) and console.filter(done)
    assert console.filter(failed) and console.filter(final)
    with quiet_failed_runs(debug=True):
        assert console.filter(failed)
