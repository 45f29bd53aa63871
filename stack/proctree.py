"""Process trees on Linux: read /proc for state, start time, CPU time and descendants; signal
process groups and single processes only while they are still the ones seen before.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """Return the fields of /proc/<pid>/stat from the state on (None where there is none)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def proc_stat(pid: int) -> tuple[str, str] | None:
    """Return a process's state letter and start time from /proc (None where there is none)."""
    fields = stat_fields(pid)
    return None if fields is None else (fields[0], fields[19])


def cpu_seconds(pid: int) -> float:
    """Return a process's user + system CPU time from /proc (0 where there is none)."""
    fields = stat_fields(pid)
    return 0.0 if fields is None else (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the session leader's pid is its process group id


def group_alive(pgid: int) -> bool:
    with suppress(ChildProcessError):  # a leader this process started stays a zombie until reaped
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def wait_gone(alive: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)


def descendants(pid: int) -> dict[int, str]:
    """Return the descendants of a process with their start times (empty without /proc)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(parents.get(pid, []))
    while todo:
        child = todo.pop()
        stat = proc_stat(child)
        if stat is not None and child not in found:
            found[child] = stat[1]
            todo += parents.get(child, [])
    return found


def stop_pid(pid: int, started: str, timeout_s: float) -> None:
    """Stop one process if it is still the one seen before (same start time)."""

    def same() -> bool:
        stat = proc_stat(pid)
        return stat is not None and stat[0] != "Z" and stat[1] == started

    if same():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_gone(same, timeout_s)
        if same():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
