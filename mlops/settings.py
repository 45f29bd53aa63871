"""One typed settings object, read from `MLOPS_*` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONTRACT = REPO_ROOT / "contracts" / "card_fraud.yaml"
# A card-fraud record is ~330 bytes of JSON (~420 pretty-printed): 4 KiB leaves room for wider
# contracts and long ids, and still refuses a body no valid request needs.
BODY_BYTES_PER_RECORD = 4096

# Telemetry of the tools we run tries the network; these turn it off. Python entry points and the
# environments of the processes they start take them from here. Files read before Python starts
# keep their own copy: Makefile, prefect.yaml (job variables), deployments/Dockerfile.worker,
# deployments/templates/*.json (job templates) and serving/bentofile.yaml (the Bento's envs).
TELEMETRY_OPT_OUTS: Mapping[str, str] = MappingProxyType(
    {
        "BENTOML_DO_NOT_TRACK": "true",
        "WHYLOGS_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
)


def quiet_telemetry() -> None:
    """Turn telemetry off in this process's environment, keeping values already set."""
    for key, value in TELEMETRY_OPT_OUTS.items():
        os.environ.setdefault(key, value)


class Settings(BaseSettings):
    """Where state lives and the defaults every entry point shares."""

    model_config = SettingsConfigDict(env_prefix="MLOPS_", extra="ignore")

    home: str = Field(".mlops", description="Root of all state; each store below may override it.")
    data_url: str | None = Field(None, description="Raw data store (default: <home>/data).")
    registry_url: str | None = Field(None, description="Model registry (default: <home>/registry).")
    profiles_url: str | None = Field(
        None, description="whylogs profiles (default: <home>/profiles)."
    )
    reports_url: str | None = Field(None, description="HTML reports (default: <home>/reports).")
    model_name: str = Field("card-fraud", description="Registry name of the model to train/serve.")
    contract: str = Field(str(DEFAULT_CONTRACT), description="Path or URL of the data contract.")
    predictions_url: str | None = Field(
        None, description="Prediction log store (default: <home>/predictions)."
    )

    # Serving
    serve_ref: str = Field("champion", description="Alias or version the service loads.")
    serve_model_dir: str | None = Field(
        None, description="Folder with model.onnx + manifest.json to serve instead (a built Bento)."
    )
    api_token: str | None = Field(
        None, description="Bearer token required by /predict if set (empty counts as unset)."
    )
    admin_token: str | None = Field(
        None,
        description="Bearer token of the admin endpoints (they refuse all calls without it; "
        "empty counts as unset).",
    )
    max_records: int = Field(1024, ge=1, description="Most records accepted in one request.")
    max_body_bytes: int | None = Field(
        None,
        ge=1,
        description="Largest /predict request body in bytes; a larger one gets 413 before it is "
        "read. Unset: 4 KiB per record of max_records (4 MiB at the default 1024).",
    )
    batching: bool = Field(True, description="Batch concurrent requests into one model call.")
    max_batch_size: int = Field(512, ge=1, description="Most records in one model call.")
    max_latency_ms: float = Field(
        2.0, ge=0, description="Longest a partial batch is held open while others wait."
    )
    reload_interval_s: float = Field(
        5.0, gt=0, description="How often the service checks the registry alias for a new version."
    )
    profile_window_s: int = Field(300, ge=1, description="whylogs profile window of served rows.")
    log_flush_s: float = Field(
        1.0,
        gt=0,
        description="How often served rows are written to the prediction log: about what a "
        "killed service loses.",
    )
    profile_flush_s: float = Field(
        10.0,
        gt=0,
        description="How often, under steady traffic, served rows are added to the window "
        "profiles (at once when traffic pauses).",
    )
    profile_process: bool = Field(
        True,
        description="Profile served rows with whylogs in a child process, so that profiling "
        "does not hold the service's GIL and stall requests.",
    )
    prefer_gpu: bool = Field(True, description="Use CUDA for onnxruntime when it really works.")
    onnx_threads: int = Field(
        1, ge=0, description="onnxruntime threads per model call (0: all cores); 1 wastes no CPU."
    )
    workers: int = Field(
        1,
        ge=1,
        description="Service worker processes. Each reloads on its own, so during a switch "
        "requests may alternate between the old and new version.",
    )

    # Promotion and batch scoring
    serving_url: str | None = Field(
        None,
        description="Base URL of the prediction service; promote-model and rollback-model POST "
        "its /admin/reload (with MLOPS_ADMIN_TOKEN) so the switch is immediate. Unset: serving "
        "picks the new champion up on its next registry poll.",
    )
    dask_address: str | None = Field(
        None,
        description="Dask scheduler address (tcp://host:8786) score-batch runs on; unset: a "
        "temporary local cluster.",
    )
    dask_workers: int = Field(
        0, ge=0, description="Worker processes of the local Dask cluster (0: one per CPU core)."
    )

    def store(self, name: str) -> str:
        """Return the URL of store `name` (data, registry, profiles, reports, quarantine)."""
        explicit = getattr(self, f"{name}_url", None)
        return explicit or f"{self.home.rstrip('/')}/{name}"

    @property
    def registry(self) -> str:
        return self.store("registry")

    @property
    def body_limit(self) -> int:
        """Return the largest /predict body accepted: max_body_bytes, or 4 KiB per record."""
        return self.max_body_bytes or self.max_records * BODY_BYTES_PER_RECORD

    @property
    def data(self) -> str:
        return self.store("data")

    @property
    def quarantine(self) -> str:
        return f"{self.data.rstrip('/')}/quarantine"

    @field_validator("api_token", "admin_token")
    @classmethod
    def _blank_token_is_unset(cls, value: str | None) -> str | None:
        # An env file often leaves `MLOPS_ADMIN_TOKEN=` empty: that must not make "Bearer " valid.
        if value is None:
            return None
        return value.strip() or None


def get_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
