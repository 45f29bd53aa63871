"""Profiling in a child process: the same profiles as in process, and no row lost or doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_window_profiles
from mlops.monitoring.prediction_writer import Chunk
from mlops.monitoring.profile import profile_summary
from mlops.monitoring.profiler_process import ProfilerProcess

WINDOW_S = 300
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOWS = (T0, T0 + timedelta(seconds=WINDOW_S))


def make_logger(root: Path, *, profile_process: bool) -> PredictionLogger:
    settings = LogSettings(
        profiles_url=str(root / "profiles"),
        predictions_url=str(root / "predictions"),
        window_seconds=WINDOW_S,
        profile_process=profile_process,
    )
    return PredictionLogger(settings, model_name="churn", writer_id="host-1")


def record(logger: PredictionLogger, start: int, n: int, at: datetime) -> None:
    """Record n rows (amounts start..start+n-1) served at `at`."""
    amounts = [float(i) for i in range(start, start + n)]
    logger.record(
        request_id=f"r{start}",
        model_version="v1",
        features=pd.DataFrame({"amount": amounts, "city": ["oslo"] * n}),
        outputs=pd.DataFrame({"prediction": [i % 2 for i in range(n)]}),
        received_at=at,
    )


def window_summary(root: Path, start: datetime) -> pd.DataFrame | None:
    """Summarise every writer's profile of the window starting at `start`."""
    end = start + timedelta(seconds=WINDOW_S)
    view = read_window_profiles(str(root / "profiles"), "churn", "v1", start, end, WINDOW_S)
    return None if view is None else profile_summary(view)


def counts(root: Path) -> list[int]:
    """Return the number of rows profiled in each of the two windows."""
    summaries = [window_summary(root, start) for start in WINDOWS]
    return [0 if s is None else int(s.loc["amount", "count"]) for s in summaries]


def alive(pid: int) -> bool:
    """Tell whether a process runs (a zombie, exited but not reaped, does not count)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_child_process_profiles_equal_the_in_process_ones_over_two_windows(tmp_path):
    for name, in_child in (("child", True), ("inline", False)):
        logger = make_logger(tmp_path / name, profile_process=in_child)
        record(logger, 0, 40, WINDOWS[0] + timedelta(seconds=10))
        record(logger, 40, 25, WINDOWS[1] + timedelta(seconds=5))
        first = logger.flush()
        record(logger, 65, 15, WINDOWS[0] + timedelta(seconds=200))  # a late row of window one
        second = logger.flush()
        stopped = logger.stop()
        assert first.ok and second.ok and stopped.ok, (first, second, stopped)
        assert first.profiles_written == 2 and second.profiles_written == 1
    assert counts(tmp_path / "child") == counts(tmp_path / "inline") == [55, 25]
    for start in WINDOWS:
        child, inline = (
            window_summary(tmp_path / "child", start),
            window_summary(tmp_path / "inline", start),
        )
        assert child is not None and inline is not None
        columns = ["count", "null_count", "mean", "min", "max"]
        pd.testing.assert_frame_equal(child[columns], inline[columns])
    written = sorted(p.name for p in (tmp_path / "child/profiles/churn/v1").iterdir())
    assert all(name.endswith("-host-1-p1.bin") for name in written), written


def test_a_killed_child_is_replaced_and_every_row_counts_once(tmp_path):
    logger = make_logger(tmp_path, profile_process=True)
    logger.start()
    try:
        record(logger, 0, 30, WINDOWS[0] + timedelta(seconds=1))
        record(logger, 30, 20, WINDOWS[1] + timedelta(seconds=1))
        assert logger.flush().ok
        first_pid = logger.profiler_pid
        assert first_pid is not None
        os.kill(first_pid, signal.SIGKILL)
        record(logger, 50, 7, WINDOWS[0] + timedelta(seconds=2))
        record(logger, 57, 11, WINDOWS[1] + timedelta(seconds=2))
        after_kill = logger.flush()
        second_pid = logger.profiler_pid
    finally:
        stopped = logger.stop()

    # Seen dead before the exchange ("died") or during it (its pipe closed): either names it.
    assert len(after_kill.errors) == 1, after_kill
    assert f"host-1-p1 (pid {first_pid}, exit code -9)" in after_kill.errors[0]
    assert after_kill.profiles_written == 2
    assert logger.stats.last_error == after_kill.errors[0]
    assert logger.stats.write_failures == 1
    assert second_pid is not None and second_pid != first_pid
    assert stopped.ok, stopped
    assert counts(tmp_path) == [37, 31]
    files = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "profiles/churn/v1").iterdir())
    assert files == ["host-1-p1.bin", "host-1-p1.bin", "host-1-p2.bin", "host-1-p2.bin"]


def test_stop_leaves_no_child_process_and_a_sigterm_to_the_child_loses_nothing(tmp_path):
    logger = make_logger(tmp_path, profile_process=True)
    logger.start()
    pid = logger.profiler_pid
    assert pid is not None and alive(pid)
    record(logger, 0, 5, WINDOWS[0])
    assert logger.flush().ok
    os.kill(pid, signal.SIGTERM)  # as a server stopping its whole process tree sends it
    record(logger, 5, 4, WINDOWS[0])
    report = logger.stop()
    assert report.ok, report  # the same child took the last rows: no restart, no error
    assert logger.profiler_pid is None
    assert not alive(pid)  # reaped, not a zombie
    assert counts(tmp_path) == [9, 0]


def make_profiler(root: Path, **timeouts: float) -> ProfilerProcess:
    return ProfilerProcess(
        profiles_url=str(root / "profiles"),
        window_seconds=WINDOW_S,
        storage_options=None,
        model_name="churn",
        writer_id="host-1",
        **timeouts,
    )


def amounts_chunk(*amounts: float) -> Chunk:
    return Chunk("r0", "v1", WINDOWS[0], pd.DataFrame({"amount": amounts}), pd.DataFrame())


def test_a_child_that_stops_answering_is_killed_and_its_chunks_resent(tmp_path):
    profiler = make_profiler(tmp_path, reply_timeout_s=1.0)
    errors: list[str] = []
    try:
        assert profiler.write_profiles([amounts_chunk(1.0, 2.0)], errors) == 1 and not errors
        hung = profiler.pid
        assert hung is not None
        os.kill(hung, signal.SIGSTOP)  # alive, but never answers
        late = amounts_chunk(3.0, 4.0, 5.0)
        written = profiler.write_profiles([late], errors)
        replacement = profiler.pid
    finally:
        closing = profiler.close(timeout_s=10.0)
    assert closing == []
    assert len(errors) == 1 and "timed out waiting for its answer" in errors[0], errors
    assert written == 1 and late.profiled
    assert replacement not in (None, hung) and not alive(hung)
    assert counts(tmp_path) == [5, 0]


PARENT = """
import sys, time
from mlops.monitoring.profiler_process import ProfilerProcess
profiler = ProfilerProcess(profiles_url=sys.argv[1], window_seconds=300, storage_options=None,
                           model_name="churn", writer_id="host-1")
profiler.start()
print(profiler.pid, flush=True)
time.sleep(120)
"""


def test_the_child_exits_when_its_parent_dies(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(tmp_path / "profiles")], stdout=subprocess.PIPE
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30  # the child may still be loading whylogs
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(child)
