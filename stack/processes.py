"""Background processes that can be stopped exactly: own session, log file, pid record.

Each process gets its own session (so its children stop with it), its output in
`<run_dir>/<name>.log` and a record in `<run_dir>/<name>.json` (pid, start time, command, URL),
so that `mlops stop`, or a test's teardown, stops exactly what was started and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx


class StackError(RuntimeError):
    """A background process that did not start or answer in time."""


@dataclass(frozen=True)
class Background:
    """A process started in the background, and where to find it."""

    name: str
    pid: int
    command: list[str]
    log: str
    url: str | None = None
    started: str | None = None  # the kernel's start time of the pid: tells a reused pid apart

    def alive(self) -> bool:
        """Tell whether the process still runs (and is still the one started)."""
        try:
            os.kill(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        state = _proc_stat(self.pid)
        if state is None:  # no /proc: trust the pid
            return True
        return state[0] != "Z" and (self.started is None or state[1] == self.started)

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of the process's output."""
        path = Path(self.log)
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_or_free(wanted: int) -> int:
    """Return `wanted` if it is free on 127.0.0.1, else a free port."""
    try:
        with socket.create_server(("127.0.0.1", wanted)):
            return wanted
    except OSError:
        return free_port()


def start(
    name: str,
    command: list[str],
    *,
    run_dir: Path,
    env: dict[str, str],
    cwd: Path,
    url: str | None = None,
) -> Background:
    """Start `command` in its own session, logging to `<run_dir>/<name>.log`; record it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    running = [p for p in recorded(run_dir) if p.name == name and p.alive()]
    if running:
        raise StackError(f"{name} already runs (pid {running[0].pid}): `mlops stop` first")
    log_path = run_dir / f"{name}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    stat = _proc_stat(process.pid)
    started = Background(name, process.pid, command, str(log_path), url, stat and stat[1])
    (run_dir / f"{name}.json").write_text(json.dumps(asdict(started), indent=2))
    return started


def recorded(run_dir: Path) -> list[Background]:
    """Return the processes recorded in `run_dir`, oldest first."""
    if not run_dir.exists():
        return []
    records = sorted(run_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
    return [Background(**json.loads(path.read_text())) for path in records]


def stop(process: Background, run_dir: Path, timeout_s: float = 20) -> bool:
    """Stop a recorded process, its group and its descendants (SIGTERM, then SIGKILL); forget it.

    Descendants that left the group (BentoML starts its workers in sessions of their own) are
    found through /proc before the signal and stopped by pid after their parent.
    """
    was_alive = process.alive()
    if was_alive:
        family = _descendants(process.pid)
        _signal_group(process.pid, signal.SIGTERM)
        _wait_gone(lambda: _group_alive(process.pid), timeout_s)
        _signal_group(process.pid, signal.SIGKILL)
        for pid, started in family.items():
            _stop_pid(pid, started, timeout_s)
    with suppress(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)  # no zombie when this process started it
    (run_dir / f"{process.name}.json").unlink(missing_ok=True)
    return was_alive


def stop_all(run_dir: Path) -> list[str]:
    """Stop every recorded process, newest first; return the names of those that were running."""
    return [p.name for p in reversed(recorded(run_dir)) if stop(p, run_dir)]


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """Return a process's state letter and start time from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)  # the session leader's pid is its process group id


def _group_alive(pgid: int) -> bool:
    with suppress(ChildProcessError):  # a leader this process started stays a zombie until reaped
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _wait_gone(alive: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)


def _descendants(pid: int) -> dict[int, str]:
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
        stat = _proc_stat(child)
        if stat is not None and child not in found:
            found[child] = stat[1]
            todo += parents.get(child, [])
    return found


def _stop_pid(pid: int, started: str, timeout_s: float) -> None:
    """Stop one process if it is still the one seen before (same start time)."""

    def same() -> bool:
        stat = _proc_stat(pid)
        return stat is not None and stat[0] != "Z" and stat[1] == started

    if same():
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        _wait_gone(same, timeout_s)
        if same():
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def wait_ready(
    process: Background, run_dir: Path, check: Callable[[], bool], timeout_s: float, what: str
) -> Background:
    """Wait until `check` passes; stop the process if it does not."""
    try:
        wait_until(check, timeout_s, what, process)
    except BaseException:
        stop(process, run_dir)
        raise
    return process


def wait_until(
    check: Callable[[], bool], timeout_s: float, what: str, process: Background | None = None
) -> None:
    """Poll `check` until it is true; fail with the process's log if it exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and not process.alive():
            raise StackError(f"{process.name} exited before {what}:\n{process.log_tail()}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    tail = f":\n{process.log_tail()}" if process is not None else ""
    raise StackError(f"timed out after {timeout_s:.0f} s waiting for {what}{tail}")
