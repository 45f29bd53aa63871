"""Run the local stack in the background: a Prefect server, workers, the prediction service.

Used by `mlops demo` and the end-to-end tests; `mlops stop` stops what they leave running.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from mlops.settings import TELEMETRY_OPT_OUTS
from stack.processes import (
    Background,
    StackError,
    free_port,
    http_ok,
    port_or_free,
    recorded,
    start,
    stop_all,
    wait_ready,
    wait_until,
)

__all__ = [
    "Background",
    "StackError",
    "free_port",
    "port_or_free",
    "recorded",
    "stop_all",
    "wait_until",
]
BIN = Path(sys.executable).parent
POOLS = ("gpu-pool", "cpu-pool")


def prefect_env(base: dict[str, str], prefect_home: Path, api_url: str) -> dict[str, str]:
    """Return an environment for Prefect commands against `api_url`, with no telemetry."""
    return base | {
        **TELEMETRY_OPT_OUTS,
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": api_url,
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_WORKER_QUERY_SECONDS": base.get("PREFECT_WORKER_QUERY_SECONDS", "2"),
        "PYTHONUNBUFFERED": "1",
    }


def start_prefect_server(
    run_dir: Path,
    env: dict[str, str],
    cwd: Path,
    *,
    port: int,
    timeout_s: float = 120,
    database_url: str | None = None,
) -> Background:
    """Start `prefect server start` on 127.0.0.1:`port`; wait for it.

    Its database is `database_url` (e.g. `postgresql+asyncpg://user:password@host/db`), else the
    environment's PREFECT_API_DATABASE_CONNECTION_URL, else SQLite under PREFECT_HOME. The
    scheduler service is off: scheduled runs do not start by themselves on this server
    (deployments keep their schedules; event triggers still fire).
    """
    api = f"http://127.0.0.1:{port}/api"
    server_env = env | {
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_UI_API_URL": api,
    }
    if database_url is not None:  # the newer name would win over it
        server_env.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
        server_env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = start("prefect-server", command, run_dir=run_dir, env=server_env, cwd=cwd, url=api)
    return wait_ready(
        server, run_dir, http_ok(f"{api}/health"), timeout_s, "the Prefect API to answer"
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
        service, run_dir, http_ok(f"{url}/readyz"), timeout_s, "the prediction service to be ready"
    )


def run_checked(command: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    """Run a command to completion; raise with its output if it fails."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise StackError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout
