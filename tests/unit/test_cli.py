"""Tests of the `mlops` command line (without `mlops train`, which starts a Prefect server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from stack.cli import app

runner = CliRunner()


def _text(output: str) -> str:
    """Undo rich's wrapping at the terminal width."""
    return " ".join(output.split())


def test_help_lists_the_simulate_train_and_status_commands() -> None:
    result = runner.invoke(app, ["--help"])

    assert result.exit_code == 0
    for command in ("simulate", "train", "status"):
        assert command in result.output


def test_simulate_writes_raw_partitions_labels_and_the_scenario(tmp_path: Path) -> None:
    out = tmp_path / "sim"

    result = runner.invoke(
        app, ["simulate", "--days", "10", "--rows-per-day", "200", "--out", str(out)]
    )

    assert result.exit_code == 0, result.output
    assert "2000 rows" in _text(result.output)
    assert any((out / "raw").rglob("*.parquet"))
    assert any((out / "labels").rglob("*.parquet"))
    assert json.loads((out / "scenario.json").read_text())


def test_status_with_an_empty_registry_exits_1_and_says_to_run_mlops_train(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))

    result = runner.invoke(app, ["status"])

    assert result.exit_code == 1
    text = _text(result.output)
    assert "No versions of 'card-fraud'" in text
    assert "Run `mlops train`" in text


def test_status_as_json_with_an_empty_registry_lists_no_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))

    result = runner.invoke(app, ["status", "some-model", "--json"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "model": "some-model",
        "aliases": {},
        "versions": [],
        "rollout": None,
    }
