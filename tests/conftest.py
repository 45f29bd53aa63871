"""Shared test setup: every store, cache and home points at a temporary folder."""

from __future__ import annotations

import os
import tempfile

# Set before anything imports bentoml or prefect: both read these once.
_SESSION_DIR = tempfile.mkdtemp(prefix="mlops-tests-")
for _key, _value in {
    "BENTOML_HOME": f"{_SESSION_DIR}/bentoml",
    "BENTOML_DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH": f"{_SESSION_DIR}/prefect-results",
    "WHYLOGS_NO_ANALYTICS": "1",
    "DO_NOT_TRACK": "1",
    "MLOPS_HOME": f"{_SESSION_DIR}/mlops",
}.items():
    os.environ[_key] = _value
os.makedirs(f"{_SESSION_DIR}/bentoml/models", exist_ok=True)
