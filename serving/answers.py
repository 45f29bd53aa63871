"""The answers of the admin routes (`GET /model`, `POST /admin/reload`), declared in OpenAPI.

The routes build their bodies from `ModelKeeper.status()` and `LoadedModel.summary()`; these
models only describe those bodies, so that the OpenAPI document says what a client receives.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from serving.errors import ErrorAnswer


class RolloutStatus(BaseModel):
    """The challenger on trial beside the served version (see `mlops.release.rollout`)."""

    strategy: str = Field(description="shadow (scores every record, answers none) or canary.")
    version: str = Field(description="The version on trial.")
    share: float = Field(description="The share of records a canary answers; 0 for a shadow.")
    loaded: bool = Field(description="Whether it is loaded; if not, the champion serves alone.")
    error: str | None = Field(description="Why it could not be loaded, if it could not.")


class KeeperStatus(BaseModel):
    """Which version is served, and why the last reload failed (if it did)."""

    served_version: str | None = Field(description="The version served now; null before a load.")
    serve_ref: str = Field(description="The alias or version the service follows.")
    last_reload_error: str | None = Field(description="Why the last load failed, if it did.")
    refused_version: str | None = Field(description="The version that failed to load, if any.")
    error: str | None = Field(description="The same as last_reload_error.")
    rollout: RolloutStatus | None = Field(
        None, description="The version on trial (shadow or canary); null when there is none."
    )


class ReloadOutcome(KeeperStatus):
    """The keeper's state after a reload that left a model served."""

    changed: bool = Field(description="Whether the reload switched to another version.")


class ReloadFailed(ReloadOutcome):
    """A reload whose target could not be read or loaded; what was served is served still."""

    error: str = Field(description="Why the target version was refused.")


class ModelUnavailable(KeeperStatus):
    """No model is loaded yet, or none could be."""

    error: str = Field(description="Why no model is served.")


class ModelInput(BaseModel):
    """One named input of the ONNX graph: a raw feature column."""

    name: str
    type: str = Field(description="The ONNX element type, e.g. float32 or string.")


class ServedModel(KeeperStatus):
    """The model being served: its version, manifest summary and device."""

    model: str = Field(description="The registered model's name.")
    version: str = Field(description="The registry version served.")
    device: str = Field(description="Where onnxruntime runs it: cpu or cuda.")
    providers: list[str] = Field(description="The onnxruntime execution providers in use.")
    task: str | None = Field(description="binary, multiclass or regression.")
    classes: list[Any] | None = Field(description="The class labels (classification only).")
    decision_threshold: float | None = Field(description="The binary decision threshold.")
    created_at: str | None = Field(description="When the version was registered (ISO 8601).")
    contract_fingerprint: str | None = Field(description="The data contract it was trained on.")
    onnx_sha256: str | None = Field(description="The SHA-256 of the ONNX file.")
    metrics: dict[str, Any] | None = Field(description="The evaluation metrics of its manifest.")
    training_device: str | None = Field(description="Where it was trained.")
    data_window: list[str | None] = Field(description="The first and last training timestamps.")
    inputs: list[ModelInput] = Field(description="The graph's inputs, one per raw feature.")


def described(model: type[BaseModel], description: str) -> dict[str, Any]:
    """Return a FastAPI `responses` entry: a JSON body of `model`."""
    return {"model": model, "description": description}


MODEL_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: described(ServedModel, "The model served now"),
    503: described(ModelUnavailable, "No model loaded yet, or none could be loaded"),
}
RELOAD_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: described(ReloadOutcome, "The alias was checked; the target version is served"),
    401: described(ErrorAnswer, "Missing or wrong bearer token (MLOPS_ADMIN_TOKEN)"),
    403: described(ErrorAnswer, "Admin endpoints are disabled: MLOPS_ADMIN_TOKEN is not set"),
    409: described(ReloadFailed, "The target version could not be loaded"),
}
