"""Shared test setup: every store, cache and home points at a temporary folder."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import pytest

from mlops.settings import TELEMETRY_OPT_OUTS

# The S3 API server fixtures (`s3`, `s3_env`, `s3_home`), one server for the whole session: an
# s3fs instance is cached with the endpoint it was made with, so a second server would split state.
pytest_plugins = ["tests.support.s3_server"]
_SESSION_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    """Point every store at a session folder and turn telemetry off, before any test module loads.

    bentoml and prefect read these once, when first imported: no conftest imports them at module
    level, so they load with the test modules, after this hook.
    """
    early = [name for name in ("bentoml", "prefect") if name in sys.modules]
    if early:
        raise pytest.UsageError(f"{early} imported before tests/conftest.py set the environment")
    session_dir = tempfile.mkdtemp(prefix="mlops-tests-")
    config.stash[_SESSION_DIR] = session_dir
    os.environ.update(TELEMETRY_OPT_OUTS)
    os.environ.update(
        {
            "BENTOML_HOME": f"{session_dir}/bentoml",
            "PREFECT_RESULTS_LOCAL_STORAGE_PATH": f"{session_dir}/prefect-results",
            "MLOPS_HOME": f"{session_dir}/mlops",
        }
    )
    os.makedirs(f"{session_dir}/bentoml/models", exist_ok=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Remove the session folder."""
    session_dir = config.stash.get(_SESSION_DIR, None)
    if session_dir is not None:
        shutil.rmtree(session_dir, ignore_errors=True)
