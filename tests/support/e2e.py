"""Helpers of the end-to-end tests: the simulated world, the stack environment, runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.data.simulate import SimulationConfig, simulate
from mlops.registry.store import Registry
from mlops.settings import REPO_ROOT
from stack import services as stack
from tests.support.prefect_events import release_events_worker

MODEL = "card-fraud"  # the name prefect.yaml's trigger watches
WORLD = SimulationConfig(days=12, rows_per_day=1000, seed=5, label_delay_days=1)
# v1 trains on days 0-7; aware, as the UI's form checks date-times (JSON schema format)
TRAIN_END = dt.datetime.combine(WORLD.date_of(8), dt.time(), tzinfo=dt.UTC)
VARIABLES = {
    "mlops_train_data": {"end": TRAIN_END.isoformat()},
    "mlops_train_hyperparameters": {"max_epochs": 2, "patience": 1, "accelerator": "cpu"},
}


@dataclass(frozen=True)
class E2EStack:
    """The stack's URLs, environment and state folders."""

    api: str
    ui: str
    home: Path
    run_dir: Path
    env: dict[str, str]

    @property
    def registry(self) -> Registry:
        return Registry(str(self.home / "registry"))

    @property
    def simulated(self) -> Path:
        return self.home / "data" / "simulated"

    def logs(self) -> str:
        """Return the tails of the server's and workers' logs, for failure messages."""
        return "\n".join(f"--- {p.name}\n{p.log_tail(3000)}" for p in stack.recorded(self.run_dir))


def stack_env(home: Path, api: str) -> dict[str, str]:
    """The environment of every process of the stack: this test's stores, no telemetry."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_"))}
    return stack.prefect_env(base, home / "prefect", api) | {
        "MLOPS_HOME": str(home),
        "BENTOML_HOME": str(home / "bentoml"),
        "MLOPS_PREFER_GPU": "false",
        "MLOPS_DASK_WORKERS": "1",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


@contextmanager
def running_stack(home: Path, database_url: str | None = None) -> Iterator[E2EStack]:
    """Start the server, bootstrap it, deploy prefect.yaml, start one worker per pool; stop all.

    `database_url` is the server's PREFECT_API_DATABASE_CONNECTION_URL (None: SQLite under
    `home`/prefect).
    """
    run_dir = home / "run"
    port = stack.free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = stack_env(home, api)
    simulate(str(home / "data" / "simulated"), WORLD)
    release_events_worker()  # one created for an earlier server would keep its URL
    try:
        stack.start_prefect_server(run_dir, env, REPO_ROOT, port=port, database_url=database_url)
        stack.run_checked(bootstrap_command(), env, REPO_ROOT, "mlops bootstrap")
        deploy = [str(stack.BIN / "prefect"), "--no-prompt", "deploy", "--all"]
        stack.run_checked(deploy, env | {"PWD": str(REPO_ROOT)}, REPO_ROOT, "prefect deploy")
        for pool in stack.POOLS:
            stack.start_worker(pool, run_dir, env, REPO_ROOT)
        yield E2EStack(api, f"http://127.0.0.1:{port}", home, run_dir, env)
    finally:
        release_events_worker()  # while its server still answers
        stack.stop_all(run_dir)


@contextmanager
def client_of(e2e: E2EStack) -> Iterator[E2EStack]:
    """Point this process's Prefect client at the stack (and its result storage)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )

    updates: dict[Any, Any] = {
        PREFECT_API_URL: e2e.api,
        PREFECT_HOME: str(e2e.home / "prefect"),
        PREFECT_LOCAL_STORAGE_PATH: str(e2e.home / "prefect" / "storage"),
    }
    with temporary_settings(updates=updates):
        yield e2e


def bootstrap_command(*extra: str) -> list[str]:
    """Return `mlops bootstrap` with the test's variables."""
    command = [str(stack.BIN / "mlops"), "bootstrap", *extra]
    for name, value in VARIABLES.items():
        command += ["--set", f"{name}={json.dumps(value)}"]
    return command


def run_deployment(name: str, parameters: dict[str, Any], timeout_s: float = 300) -> Any:
    """Run a deployment through the workers; return the finished flow run."""
    from prefect.deployments import run_deployment as run

    return run(name, parameters=parameters, timeout=timeout_s)


def result_of(flow_run: Any, e2e: E2EStack) -> Any:
    """Return a completed run's persisted result, failing with the stack's logs otherwise."""
    assert flow_run.state.is_completed(), f"{flow_run.name}: {flow_run.state}\n{e2e.logs()}"
    return flow_run.state.result()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a Python module's CLI in the stack's environment."""
    return subprocess.run(
        [sys.executable, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
