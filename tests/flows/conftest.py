"""A session-scoped Prefect test server for flow tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.prefect_events import release_events_worker


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """Start one temporary Prefect API for the session (it takes ~12 s to start)."""
    from prefect.testing.utilities import prefect_test_harness

    release_events_worker()  # a worker bound to an earlier server would get this one's events
    with prefect_test_harness(server_startup_timeout=120):
        yield
        release_events_worker()


@pytest.fixture
def mlops_home(tmp_path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Give each test its own MLOPS_HOME (registry, data, quarantine)."""
    home = tmp_path / "mlops"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    return str(home)
