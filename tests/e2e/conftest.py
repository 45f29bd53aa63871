"""A real local stack for the end-to-end tests: `prefect server start`, bootstrap, deploy, workers.

One stack per package (both test modules share it), under a temporary MLOPS_HOME and
PREFECT_HOME, bound to 127.0.0.1 on free ports; everything started is stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from mlops.data.simulate import simulate
from mlops.settings import REPO_ROOT
from stack import services as stack
from tests.support.e2e import WORLD, E2EStack, bootstrap_command, stack_env
from tests.support.prefect_events import release_events_worker


@pytest.fixture(scope="package")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """Start the server, bootstrap it, deploy prefect.yaml, start one worker per pool."""
    home = tmp_path_factory.mktemp("e2e-home")
    run_dir = home / "run"
    port = stack.free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = stack_env(home, api)
    simulate(str(home / "data" / "simulated"), WORLD)
    try:
        stack.start_prefect_server(run_dir, env, REPO_ROOT, port=port)
        stack.run_checked(bootstrap_command(), env, REPO_ROOT, "mlops bootstrap")
        deploy = [str(stack.BIN / "prefect"), "--no-prompt", "deploy", "--all"]
        stack.run_checked(deploy, env | {"PWD": str(REPO_ROOT)}, REPO_ROOT, "prefect deploy")
        for pool in stack.POOLS:
            stack.start_worker(pool, run_dir, env, REPO_ROOT)
        yield E2EStack(api, f"http://127.0.0.1:{port}", home, run_dir, env)
    finally:
        release_events_worker()  # while its server still answers
        stack.stop_all(run_dir)


@pytest.fixture
def prefect_api(e2e_stack: E2EStack) -> Iterator[E2EStack]:
    """Point this process's Prefect client at the stack (and its result storage)."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_HOME,
        PREFECT_LOCAL_STORAGE_PATH,
        temporary_settings,
    )

    updates: dict[Any, Any] = {
        PREFECT_API_URL: e2e_stack.api,
        PREFECT_HOME: str(e2e_stack.home / "prefect"),
        PREFECT_LOCAL_STORAGE_PATH: str(e2e_stack.home / "prefect" / "storage"),
    }
    with temporary_settings(updates=updates):
        yield e2e_stack
