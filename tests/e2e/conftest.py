"""A real local stack for the end-to-end tests: `prefect server start`, bootstrap, deploy, workers.

One stack per package (both test modules share it), under a temporary MLOPS_HOME and
PREFECT_HOME, bound to 127.0.0.1 on free ports; everything started is stopped at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.e2e import E2EStack, client_of, running_stack


@pytest.fixture(scope="package")
def e2e_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """Start the server, bootstrap it, deploy prefect.yaml, start one worker per pool."""
    with running_stack(tmp_path_factory.mktemp("e2e-home")) as e2e:
        yield e2e


@pytest.fixture
def prefect_api(e2e_stack: E2EStack) -> Iterator[E2EStack]:
    """Point this process's Prefect client at the stack (and its result storage)."""
    with client_of(e2e_stack) as e2e:
        yield e2e
