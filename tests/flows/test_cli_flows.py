"""The `mlops` flow commands on a simulated world: train, promote, rollback, monitor, score."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mlops.registry.store import Registry
from mlops.settings import get_settings
from stack.cli import app
from stack.cli_flows import default_train_end

runner = CliRunner()
MLOPS = str(Path(sys.executable).parent / "mlops")


@pytest.fixture(autouse=True, scope="module")
def _prefect_logging() -> None:
    """Set up Prefect's console logging before CliRunner swaps stderr for the first command.

    Its console handler keeps the stream it is created with, and CliRunner closes its own.
    """
    from prefect.logging.configuration import ensure_logging_setup

    ensure_logging_setup()


def _text(output: str) -> str:
    """Undo rich's wrapping at the terminal width."""
    return " ".join(output.split())


def _invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return _text(result.stdout)


def test_default_train_end_is_the_first_simulated_event(mlops_home: str) -> None:
    settings = get_settings()
    assert default_train_end(settings) is None  # nothing simulated yet

    _invoke("simulate", "--days", "14", "--rows-per-day", "20")
    assert default_train_end(settings) == "2026-01-08"

    _invoke("simulate", "--days", "14", "--rows-per-day", "20", "--scenario", "stable")
    assert default_train_end(settings) is None


@pytest.mark.slow
def test_default_simulate_and_train_give_a_champion_and_the_flow_commands_run(
    prefect_server: None, mlops_home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DASK_WORKERS", "1")  # `mlops score` scores one partition
    _invoke("simulate", "--days", "14", "--rows-per-day", "1200")

    trained = _invoke("train", "--max-epochs", "3", "--accelerator", "cpu")

    assert "before its first event (until 2026-01-08)" in trained
    assert "v1 is promoted as the first champion" in trained
    assert "Champion: card-fraud v1" in trained
    registry = Registry(get_settings().registry)
    assert registry.get("card-fraud", "v1").manifest["data"]["window_to"] < "2026-01-08"

    # a refused first version of another model: the command says what to run next
    refused = _invoke(
        "train", "--model-name", "fraud-b", "--max-epochs", "1", "--accelerator", "cpu",
        "--floor", "0.999", "--end", "2026-01-08", "--last-rows", "4000",
        "--holdout-fraction", "0.2",
    )  # fmt: skip
    assert "misses the floor (at least 0.9990)" in refused
    assert "Next: `mlops promote v1 --model-name fraud-b`" in refused
    data = registry.get("fraud-b", "v1").manifest["data"]
    assert (data["train_rows"] + data["val_rows"], data["holdout_rows"]) == (3200, 800)

    promoted = _invoke("promote", "v1", "--model-name", "fraud-b")
    assert "fraud-b champion: none -> v1 (promoted)" in promoted
    assert registry.aliases("fraud-b").aliases["champion"] == "v1"

    failed = runner.invoke(app, ["rollback", "--model-name", "fraud-b"])
    assert failed.exit_code == 1
    [line] = failed.stderr.splitlines()
    assert line.startswith("error: ") and "previous" in line

    monitored = _invoke("monitor", "--window-hours", "1")
    assert "retrain: no, because v1 served no rows" in monitored

    day = Path(mlops_home) / "data" / "simulated" / "raw" / "date=2026-01-02"
    scored = _invoke("score", "--data-uri", str(day), "--out", str(Path(mlops_home) / "scored"))
    assert "card-fraud v1 scored 1200 rows: 1200 valid, 0 quarantined" in scored
    assert list((Path(mlops_home) / "scored" / "card-fraud").glob("*.parquet"))


@pytest.mark.slow
def test_a_failing_flow_run_prints_one_error_line_and_no_traceback_or_prefect_error_logs(
    prefect_server: None, mlops_home: str, tmp_path: Path
) -> None:
    from prefect.settings import PREFECT_API_URL

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    # the session's Prefect server, so that the command does not start its own
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}

    quiet = subprocess.run(
        [MLOPS, "train", "--data-uri", str(empty)], env=env, capture_output=True, text=True
    )

    assert quiet.returncode == 1
    assert "Traceback" not in quiet.stderr and "Failed(" not in quiet.stderr
    assert (
        quiet.stderr.splitlines()[-1] == f"error: {empty} is empty: a CSV file needs a header row"
    )
    assert quiet.stderr.count("error:") == 1
