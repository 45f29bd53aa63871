"""Fixtures for serving tests: a registry with trained champion versions, and the service app."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlops.registry.store import Registry
from tests.support.service import (
    MODEL,
    fixture_serving_home,
    open_client,
    register_trained,
    simulated_rows,
)

__all__ = ["MODEL", "register_trained", "simulated_rows"]  # helpers other scripts import from here


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLOPS_HOME whose registry holds v1 (champion) and v2 (registered, not promoted)."""
    return fixture_serving_home(tmp_path_factory.getbasetemp())


@pytest.fixture
def service_env(serving_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the service at the fixture registry, with its own log stores and fast reloads."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(serving_home / "registry"))
    monkeypatch.setenv("MLOPS_RELOAD_INTERVAL_S", "0.2")
    monkeypatch.setenv("MLOPS_LOG_FLUSH_S", "0.2")
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "admin-secret")
    monkeypatch.setenv("MLOPS_PREFER_GPU", "false")  # the same answers on machines with a GPU
    # A profiler process loads whylogs anew for each service (seconds); the real-server tests
    # run it, and these in-process ones profile in the test process, where whylogs stays loaded.
    monkeypatch.setenv("MLOPS_PROFILE_PROCESS", "false")
    for name in ("MLOPS_API_TOKEN", "MLOPS_SERVE_REF", "MLOPS_SERVE_MODEL_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


@pytest.fixture
def client(service_env: Path) -> Iterator[Any]:
    """An in-process client of the service (lifespan run: model loaded, logger started)."""
    with open_client() as test_client:
        yield test_client
    assert os.environ["MLOPS_HOME"] == str(service_env)


@pytest.fixture
def registry_copy(serving_home: Path, tmp_path: Path) -> Registry:
    """A private copy of the fixture registry, for tests that move aliases or add versions."""
    root = tmp_path / "registry"
    shutil.copytree(serving_home / "registry", root)
    return Registry(str(root))
