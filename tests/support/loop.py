"""Helpers of the closed-loop test: a runner process serving train-model, replay, Prefect reads.

Run as a module (`python -m tests.support.loop SPEC_JSON`), it registers the train-model deployment
with its retrain trigger and serves it until interrupted: the test's runner process.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound

from mlops.settings import REPO_ROOT
from stack import processes

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None], timeout_s: float, what: str, diagnose: Callable[[], str]
) -> T:
    """Poll `probe` until it returns a value; fail with `diagnose()`'s logs after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}\n{diagnose()}")


# -- the runner process -----------------------------------------------------------------------


def train_model_runner(
    spec: dict[str, Any], env: dict[str, str], log_path: Path
) -> AbstractContextManager[processes.Child]:
    """Run this module serving the deployment `spec` describes until the block ends.

    The runner's log holds the output of the flow runs it starts too. It stops on SIGINT; it,
    and any flow run it started (in a session of its own), is killed if it lingers.
    """
    command = [sys.executable, "-m", "tests.support.loop", json.dumps(spec)]
    return processes.running(
        "runner", command, log_path=log_path, env=env, cwd=REPO_ROOT, stop_signal=signal.SIGINT
    )


def serve_train_model(spec: dict[str, Any]) -> None:
    """Register train-model with the retrain trigger and default parameters; run what comes."""
    from prefect import serve

    from flows.training import train_model_flow
    from flows.triggers import retrain_trigger

    deployment = train_model_flow.to_deployment(
        name=spec["deployment"],
        triggers=[retrain_trigger(spec["model_name"])],
        parameters=spec["parameters"],
    )
    serve(deployment, limit=1)


# -- traffic and data -------------------------------------------------------------------------


def day_records(simulated: str | Path, day: date) -> list[dict[str, Any]]:
    """Return a simulated day's raw rows (a local folder or fsspec URL) as request records."""
    frame = pd.read_parquet(f"{simulated}/raw/date={day.isoformat()}/part-000.parquet")
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def post_records(url: str, records: list[dict[str, Any]], batch: int = 256) -> set[str]:
    """POST the records to /predict in batches; return the model versions that answered."""
    versions = set()
    with httpx.Client(base_url=url, timeout=30) as client:
        for start in range(0, len(records), batch):
            response = client.post("/predict", json={"records": records[start : start + batch]})
            assert response.status_code == 200, response.text[:500]
            versions.add(response.json()["model_version"])
    return versions


# -- the loop's processes, watched through the Prefect API -------------------------------------


@dataclass
class Loop:
    """The runner and the prediction server of the loop, and the deployment the runner serves."""

    runner: processes.Child
    server: processes.Child
    deployment: str  # flow/deployment name
    deployment_id: Any = None

    def diagnose(self) -> str:
        """Return the logs that explain a failure: runner, server, newest train-model run."""
        runs = self.runs() if self.deployment_id else []
        run_logs = flow_run_logs(runs[-1].id) if runs else "(no run)"
        return (
            f"--- runner log\n{self.runner.log_tail()}\n--- server log\n{self.server.log_tail()}\n"
            f"--- newest {self.deployment} run\n{run_logs}"
        )

    def wait(self, probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
        """Poll `probe` while the runner lives; fail with the loop's logs after `timeout_s`."""

        def checked() -> T | None:
            if not self.runner.alive():
                code = self.runner.process.returncode
                pytest.fail(f"the runner exited with {code}:\n{self.runner.log_tail()}")
            return probe()

        return wait_for(checked, timeout_s, what, self.diagnose)

    def registered_automation(self, name: str, timeout_s: float = 90) -> Any:
        """Wait for the runner to register the deployment and its trigger's automation."""
        self.deployment_id = self.wait(self._deployment_id, timeout_s, self.deployment)
        return self.wait(lambda: self._automation(name), 30, f"the automation {name!r}")

    def triggered_run(self, timeout_s: float) -> Any:
        """Wait for the deployment's newest flow run to reach a final state; return it."""

        def finished() -> Any:
            runs = self.runs()
            state = runs[-1].state if runs else None
            return runs[-1] if state is not None and state.is_final() else None

        run = self.wait(finished, timeout_s, f"a triggered {self.deployment} run to finish")
        assert run.state.is_completed(), f"{run.state}\n{self.diagnose()}"
        return run

    def runs(self) -> list[Any]:
        """Return the deployment's flow runs, oldest first."""
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[self.deployment_id])
                ),
                sort=FlowRunSort.START_TIME_ASC,
            )

    def _deployment_id(self) -> Any:
        with get_client(sync_client=True) as client:
            try:
                return client.read_deployment_by_name(self.deployment).id
            except ObjectNotFound:
                return None

    def _automation(self, name: str) -> Any:
        with get_client(sync_client=True) as client:
            found = client.read_automations_by_name(name)
        mine = [a for a in found if a.actions[0].deployment_id == self.deployment_id]
        return mine[0] if mine else None


def delete_automations(name: str) -> None:
    """Remove the automations called `name`: the session's test server outlives the test."""
    with get_client(sync_client=True) as client:
        for automation in client.read_automations_by_name(name):
            client.delete_automation(automation.id)


def artifact_keys(flow_run_id: Any) -> set[str]:
    """Return the keys of the artifacts a flow run left."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[str(flow_run_id)])
            )
        )
    return {a.key for a in found if a.key}


def flow_run_logs(flow_run_id: Any, limit: int = 60) -> str:
    """Return the last log lines of a flow run, for failure messages."""
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )
    return "\n".join(f"{log.level} {log.message}" for log in logs[-limit:])


if __name__ == "__main__":
    serve_train_model(json.loads(sys.argv[1]))
