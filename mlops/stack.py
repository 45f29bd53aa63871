"""Run the local stack in the background: a Prefect server, workers, the prediction service.

Each process gets its own session (so its children stop with it), its output in
`<run_dir>/<name>.log` and a record in `<run_dir>/<name>.json` (pid, command, URL), so that
`mlops stop`, or a test's teardown, stops exactly what was started and nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent
POOLS = ("gpu-pool", "cpu-pool")


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
    """Stop a recorded process and its session (SIGTERM, then SIGKILL); forget it."""
    was_alive = process.alive()
    if was_alive:
        _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while process.alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        _signal_group(process.pid, signal.SIGKILL)
    with_reaped(process.pid)
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
    try:
        os.killpg(pid, sig)  # the session leader's pid is its process group id
    except (ProcessLookupError, PermissionError):
        pass


def with_reaped(pid: int) -> None:
    """Collect the exit status of a child of this process, if it is one (no zombie is left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


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


def prefect_env(base: dict[str, str], prefect_home: Path, api_url: str) -> dict[str, str]:
    """Return an environment for Prefect commands against `api_url`, with no telemetry."""
    return base | {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_WORKER_QUERY_SECONDS": base.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
        "BENTOML_DO_NOT_TRACK": "true",
        "WHYLOGS_NO_ANALYTICS": "1",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }


def start_prefect_server(
    run_dir: Path, env: dict[str, str], cwd: Path, *, port: int, timeout_s: float = 120
) -> Background:
    """Start `prefect server start` on 127.0.0.1:`port` (SQLite under PREFECT_HOME); wait for it.

    The scheduler service is off: scheduled runs do not start by themselves on this server
    (deployments keep their schedules; event triggers still fire).
    """
    api = f"http://127.0.0.1:{port}/api"
    server_env = env | {
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_UI_API_URL": api,
    }
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = start("prefect-server", command, run_dir=run_dir, env=server_env, cwd=cwd, url=api)
    return wait_ready(
        server,
        run_dir,
        lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
        timeout_s,
        "the Prefect API to answer",
    )


def start_worker(
    pool: str, run_dir: Path, env: dict[str, str], cwd: Path, *, timeout_s: float = 90
) -> Background:
    """Start a process worker on `pool`; wait until the server lists it."""
    api = env["PREFECT_API_URL"]
    command = [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "process"]
    worker = start(f"worker-{pool}", command, run_dir=run_dir, env=env, cwd=cwd)

    def listed() -> bool:
        answer = httpx.post(f"{api}/work_pools/{pool}/workers/filter", json={}, timeout=5)
        return answer.status_code == 200 and any(w["status"] == "ONLINE" for w in answer.json())

    return wait_ready(worker, run_dir, listed, timeout_s, f"the {pool} worker to come online")


def start_service(
    run_dir: Path, env: dict[str, str], cwd: Path, *, port: int, timeout_s: float = 120
) -> Background:
    """Start `mlops serve` (bentoml serve) on 127.0.0.1:`port`; wait until it is ready."""
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mlops"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    service = start("bento-service", command, run_dir=run_dir, env=env, cwd=cwd, url=url)
    return wait_ready(
        service,
        run_dir,
        lambda: httpx.get(f"{url}/readyz", timeout=2).status_code == 200,
        timeout_s,
        "the prediction service to be ready",
    )


def run_checked(command: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    """Run a command to completion; raise with its output if it fails."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout
