"""Drive deployments on a Prefect server: run one, find the runs an automation started, results.

Used by `mlops demo`, a composition root; Prefect is imported inside the functions so that the
library's import graph stays free of it.
"""

from __future__ import annotations

import time
from typing import Any


def run_deployment(name: str, parameters: dict[str, Any], timeout_s: float = 900) -> Any:
    """Run a deployment through its work pool's worker; return the finished flow run."""
    from prefect.deployments import run_deployment as run

    return run(name, parameters=parameters, timeout=timeout_s)


def new_run(deployment: str, seen: set[str], timeout_s: float) -> Any:
    """Return the newest run of a deployment (by name) not in `seen`; None on timeout."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    deadline = time.monotonic() + timeout_s
    named = DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=named, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=5
            )
            fresh = [run for run in runs if str(run.id) not in seen]
            if fresh:
                return fresh[0]
            time.sleep(1)
    return None


def wait_final(run_id: Any, timeout_s: float) -> Any:
    """Poll a flow run until it is in a final state; return the state."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return state
            time.sleep(2)
    raise TimeoutError(f"flow run {run_id} did not finish in {timeout_s:.0f} s")


def result_of(state: Any) -> dict[str, Any]:
    """Return a final state's persisted dict result (empty when there is none)."""
    try:
        result = state.result(raise_on_failure=False)
    except Exception:  # not persisted, or its storage unreadable from here
        return {}
    return result if isinstance(result, dict) else {}
