"""Helpers of the end-to-end tests: the simulated world, the stack environment, runs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.data.simulate import SimulationConfig
from mlops.registry.store import Registry
from mlops.settings import REPO_ROOT
from stack import services as stack

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
