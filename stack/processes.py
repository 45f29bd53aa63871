"""Background processes that can be stopped exactly: own session, log file, pid record.

Each process gets its own session (so its children stop with it) and its output in a log file.
`start` also records it in `<run_dir>/<name>.json` (pid, start time, command, URL), so that
`mlops stop`, or a test's teardown, stops exactly what was started and nothing else. `running`
keeps a child of this process for the length of a block (tests, benchmarks) and gives its exit
code, its log and the CPU time of its process tree.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from stack import proctree


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
        state = proctree.proc_stat(self.pid)
        if state is None:  # no /proc: trust the pid
            return True
        return state[0] != "Z" and (self.started is None or state[1] == self.started)

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of the process's output."""
        return _tail(Path(self.log), chars)


@dataclass
class Child:
    """A process this one started in a session of its own; `stop` gives its exit code."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str | None = None
    stop_signal: signal.Signals = signal.SIGTERM
    stop_timeout_s: float = 20

    def alive(self) -> bool:
        """Tell whether the process still runs."""
        return self.process.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        """Return the end of the process's output."""
        return _tail(self.log, chars)

    def cpu_seconds(self) -> float:
        """Return the CPU time used so far by the process and its live descendants."""
        pid = self.process.pid
        return sum(proctree.cpu_seconds(p) for p in [pid, *proctree.descendants(pid)])

    def stop(self, timeout_s: float | None = None) -> int:
        """Send `stop_signal` to the group; SIGKILL what is left after `timeout_s`; return the code.

        Descendants that left the group (BentoML's workers, Prefect's flow runs) are found before
        the signal and stopped by pid after their parent.
        """
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        family = proctree.descendants(self.process.pid) if self.alive() else {}
        if self.alive():
            proctree.signal_group(self.process.pid, self.stop_signal)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout_s)
        proctree.signal_group(self.process.pid, signal.SIGKILL)  # a worker outliving its parent
        code = self.process.wait(10)
        for pid, started in family.items():
            proctree.stop_pid(pid, started, timeout_s)
        return code


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


def http_ok(url: str) -> Callable[[], bool]:
    """Return a check that `url` answers 200 (for `wait_until`, which retries on HTTP errors)."""
    return lambda: httpx.get(url, timeout=2).status_code == 200


def spawn(
    command: list[str], *, log_path: Path, env: dict[str, str], cwd: Path, append: bool = True
) -> subprocess.Popen[bytes]:
    """Start `command` in a session of its own, its output going to `log_path`."""
    with open(log_path, "ab" if append else "wb") as log:
        return subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextmanager
def running(
    name: str,
    command: list[str],
    *,
    log_path: Path,
    env: dict[str, str],
    cwd: Path,
    url: str | None = None,
    ready: Callable[[], bool] | None = None,
    ready_timeout_s: float = 120,
    stop_signal: signal.Signals = signal.SIGTERM,
    stop_timeout_s: float = 20,
) -> Iterator[Child]:
    """Run `command` until the block ends (a fresh log), first waiting for `ready` if given."""
    process = spawn(command, log_path=log_path, env=env, cwd=cwd, append=False)
    child = Child(name, process, log_path, url, stop_signal, stop_timeout_s)
    try:
        if ready is not None:
            wait_until(ready, ready_timeout_s, f"{name} to be ready", child)
        yield child
    finally:
        child.stop()


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
    already = [p for p in recorded(run_dir) if p.name == name and p.alive()]
    if already:
        raise StackError(f"{name} already runs (pid {already[0].pid}): `mlops stop` first")
    log_path = run_dir / f"{name}.log"
    process = spawn(command, log_path=log_path, env=env, cwd=cwd)
    stat = proctree.proc_stat(process.pid)
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
        family = proctree.descendants(process.pid)
        proctree.signal_group(process.pid, signal.SIGTERM)
        proctree.wait_gone(lambda: proctree.group_alive(process.pid), timeout_s)
        proctree.signal_group(process.pid, signal.SIGKILL)
        for pid, started in family.items():
            proctree.stop_pid(pid, started, timeout_s)
    with suppress(ChildProcessError):
        os.waitpid(process.pid, os.WNOHANG)  # no zombie when this process started it
    (run_dir / f"{process.name}.json").unlink(missing_ok=True)
    return was_alive


def stop_all(run_dir: Path) -> list[str]:
    """Stop every recorded process, newest first; return the names of those that were running."""
    return [p.name for p in reversed(recorded(run_dir)) if stop(p, run_dir)]


def _tail(path: Path, chars: int) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


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
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: Background | Child | None = None,
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
