"""Start and stop the HTTP servers the serving benchmark drives, each in its own process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def quiet_env(**extra: str) -> dict[str, str]:
    """Return this environment without MLOPS_/BENTOML_ settings, telemetry off, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    return env | {"BENTOML_DO_NOT_TRACK": "true", "WHYLOGS_NO_ANALYTICS": "1", **extra}


def bentoml_command(service: str) -> list[str]:
    """Return the command serving a BentoML service on 127.0.0.1, its port left as {port}."""
    return [str(BIN / "bentoml"), "serve", service, "--host", "127.0.0.1", "--port", "{port}"]


def uvicorn_command(app: str) -> list[str]:
    """Return the command serving an ASGI app with uvicorn's defaults, its port left as {port}."""
    return [str(BIN / "python"), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}"]


@dataclass
class Server:
    """A server subprocess; `cpu_seconds` sums the CPU time of its whole process tree."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def cpu_seconds(self) -> float:
        """Return the CPU time used so far by the server and its live children."""
        try:
            root = psutil.Process(self.process.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            with suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def wait_ready(self, timeout_s: float) -> None:
        """Poll /readyz until it answers 200; raise if the process exits or time runs out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout_s}s: {self.tail()}")

    def tail(self, chars: int = 2000) -> str:
        """Return the end of the server's output."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM the server; SIGKILL it and its workers if they have not exited in time."""
        try:  # BentoML's workers run in process groups of their own
            workers = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout_s)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        _, alive = psutil.wait_procs(workers, timeout=5)
        for worker in alive:
            with suppress(psutil.NoSuchProcess):
                worker.kill()


@contextmanager
def running(
    command: list[str], env: dict[str, str], port: int, log_path: Path, ready_timeout_s: float = 120
) -> Iterator[Server]:
    """Run a server from the repository root until the block ends."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    try:
        server.wait_ready(ready_timeout_s)
        yield server
    finally:
        server.stop()
