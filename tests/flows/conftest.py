"""A session-scoped Prefect test server for flow tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mlops.registry.store import Registry
from tests.support.models import MODEL, copy_registry
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


@pytest.fixture
def registry(mlops_home: str, monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A registry with v1 (champion) and v2 of MODEL, and no serving to notify."""
    for name in ("MLOPS_SERVING_URL", "MLOPS_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLOPS_MODEL_NAME", MODEL)
    found = copy_registry(f"{mlops_home}/registry")
    found.promote(MODEL, "v1", actor="tests", reason="first champion")
    return found
