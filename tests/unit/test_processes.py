"""Background processes (stack.processes): started in a session of their own, stopped exactly."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from stack import processes, proctree

# A parent that starts a child in a session of its own (as BentoML starts its workers), then waits.
PARENT = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
time.sleep(60)
"""
# A parent whose child, in a session of its own, burns about a second of CPU and then waits.
BUSY_PARENT = """
import subprocess, sys, time
busy = "import time\\nend = time.process_time() + 1\\nwhile time.process_time() < end: pass\\n"
subprocess.Popen([sys.executable, "-c", busy + "time.sleep(60)"], start_new_session=True)
time.sleep(60)
"""
# Says "ready", then exits with 3 on SIGINT, saying goodbye.
POLITE = """
import signal, sys, time
def leave(*_):
    print("goodbye", flush=True)
    sys.exit(3)
signal.signal(signal.SIGINT, leave)
print("ready", flush=True)
time.sleep(60)
"""


def test_stop_ends_the_process_its_group_and_descendants_that_left_the_group(
    tmp_path: Path,
) -> None:
    started = processes.start(
        "parent", [sys.executable, "-c", PARENT], run_dir=tmp_path, env={}, cwd=tmp_path
    )
    processes.wait_until(
        lambda: len(proctree.descendants(started.pid)) == 1, 20, "the child", started
    )
    (child,) = proctree.descendants(started.pid)
    assert [p.name for p in processes.recorded(tmp_path)] == ["parent"]

    began = time.monotonic()
    assert processes.stop_all(tmp_path) == ["parent"]

    assert time.monotonic() - began < 10  # no zombie kept the group "alive" until the timeout
    assert not started.alive()
    assert proctree.proc_stat(child) is None or proctree.proc_stat(child)[0] == "Z"
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


def test_running_waits_for_ready_and_stop_gives_the_exit_code_of_its_signal(
    tmp_path: Path,
) -> None:
    log = tmp_path / "polite.log"
    ready = lambda: "ready" in log.read_text()  # noqa: E731
    command = [sys.executable, "-c", POLITE]
    with processes.running(
        "polite", command, log_path=log, env={}, cwd=tmp_path, ready=ready,
        ready_timeout_s=20, stop_signal=signal.SIGINT,
    ) as child:  # fmt: skip
        assert child.alive()
        assert child.stop() == 3
    assert child.stop() == 3  # the block's own stop is harmless
    assert "goodbye" in child.log_tail()


def test_a_child_ignoring_its_stop_signal_is_killed_after_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready')"
    command = [sys.executable, "-u", "-c", stubborn + "; time.sleep(60)"]
    ready = lambda: "ready" in log.read_text()  # noqa: E731
    with processes.running(
        "stubborn", command, log_path=log, env={}, cwd=tmp_path, ready=ready, stop_timeout_s=1
    ) as child:
        began = time.monotonic()
        assert child.stop() == -signal.SIGKILL
    assert time.monotonic() - began < 10


def test_a_child_that_exits_before_it_is_ready_fails_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('no model here'); raise SystemExit(1)"]
    with (
        pytest.raises(processes.StackError, match=r"exited before(.|\n)*no model here"),
        processes.running(
            "broken",
            command,
            log_path=tmp_path / "x.log",
            env={},
            cwd=tmp_path,
            ready=lambda: False,
            ready_timeout_s=20,
        ),
    ):
        pass


def test_cpu_seconds_count_descendants_and_stop_ends_those_that_left_the_group(
    tmp_path: Path,
) -> None:
    command = [sys.executable, "-c", BUSY_PARENT]
    with processes.running(
        "busy", command, log_path=tmp_path / "x.log", env={}, cwd=tmp_path
    ) as child:
        processes.wait_until(lambda: child.cpu_seconds() > 0.8, 20, "the busy child", child)
        (busy,) = proctree.descendants(child.process.pid)
        child.stop()
    assert proctree.proc_stat(busy) is None or proctree.proc_stat(busy)[0] == "Z"


def test_free_port_can_be_bound_and_port_or_free_keeps_a_free_wanted_port() -> None:
    port = processes.free_port()
    assert processes.port_or_free(port) == port
