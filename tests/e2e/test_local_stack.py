"""The pieces the demo and the end-to-end tests share: background processes, replay, timeline."""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

import pytest

from mlops.data.simulate import SimulationConfig
from stack import processes
from stack.replay import Served, land_partition, refused_indexes
from stack.timeline import DayRow, live_figures, render_timeline, short_decision

# A parent that starts a child in a session of its own (as BentoML starts its workers), then waits.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
time.sleep(60)
"""


def test_stop_ends_the_process_its_group_and_descendants_that_left_the_group(
    tmp_path: Path,
) -> None:
    started = processes.start(
        "parent", [sys.executable, "-c", PARENT], run_dir=tmp_path, env={}, cwd=tmp_path
    )
    processes.wait_until(
        lambda: len(processes._descendants(started.pid)) == 1, 20, "the child", started
    )
    (child,) = processes._descendants(started.pid)
    assert [p.name for p in processes.recorded(tmp_path)] == ["parent"]

    began = time.monotonic()
    assert processes.stop_all(tmp_path) == ["parent"]

    assert time.monotonic() - began < 10  # no zombie kept the group "alive" until the timeout
    assert not started.alive()
    assert processes._proc_stat(child) is None or processes._proc_stat(child)[0] == "Z"
    assert processes.recorded(tmp_path) == []


def test_a_second_start_under_the_same_name_is_refused_while_the_first_runs(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-c", "import time; time.sleep(30)"]
    processes.start("sleeper", command, run_dir=tmp_path, env={}, cwd=tmp_path)
    try:
        with pytest.raises(processes.StackError, match="already runs"):
            processes.start("sleeper", command, run_dir=tmp_path, env={}, cwd=tmp_path)
    finally:
        processes.stop_all(tmp_path)


def test_a_recorded_pid_reused_by_another_process_is_not_taken_for_it(tmp_path: Path) -> None:
    recorded = processes.Background("gone", 1, ["x"], str(tmp_path / "x.log"), started="0")
    assert not recorded.alive()  # pid 1 runs, but it did not start at tick 0


def test_a_refused_request_names_the_records_to_drop() -> None:
    body = {"detail": [{"loc": ["records", 3, "amount"]}, {"loc": ["records", 7, "channel"]}]}
    assert refused_indexes(body) == {3, 7}
    with pytest.raises(ValueError, match="names no record"):
        refused_indexes({"detail": [{"loc": ["body"]}]})


def test_served_span_covers_whole_seconds_around_the_traffic() -> None:
    first = dt.datetime(2026, 1, 1, 12, 0, 0, 700_000, tzinfo=dt.UTC)
    served = Served(first_at=first, last_at=first + dt.timedelta(seconds=3))
    assert served.span == (first.replace(microsecond=0), first + dt.timedelta(seconds=5))


def test_landing_copies_one_date_partition(tmp_path: Path) -> None:
    day = dt.date(2026, 1, 2)
    source = tmp_path / "world" / "raw" / f"date={day}"
    source.mkdir(parents=True)
    (source / "part-000.parquet").write_bytes(b"x")
    assert land_partition(tmp_path / "world", tmp_path / "landed", "raw", day)
    assert (tmp_path / "landed" / "raw" / f"date={day}" / "part-000.parquet").read_bytes() == b"x"
    assert not land_partition(tmp_path / "world", tmp_path / "landed", "labels", day)


def test_timeline_says_decisions_and_live_metrics_briefly() -> None:
    assert short_decision({"retrain": True, "reason": "drift"}) == "retrain: drift"
    held = {"retrain": False, "triggers": ["performance", "drift"]}
    assert short_decision(held) == "held: perf+drift"
    assert short_decision({"retrain": False, "triggers": []}) == "no"
    live = [
        {"labelled_rows": 10, "live": 0.5, "live_accuracy": 0.9},
        {"labelled_rows": 900, "live": 0.81234, "live_accuracy": 0.97},
    ]
    assert live_figures(live) == ("0.812", "0.970")
    assert live_figures([]) == ("pending", "")
    config = SimulationConfig(days=20, rows_per_day=10)
    rows = [DayRow(11, config.date_of(11), 3000, 0, ["v1"], 0.36, ["amount"], "no")]
    table = render_timeline(rows, config)
    assert table.row_count == 1
