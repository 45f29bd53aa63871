"""Take a trained model to a registered challenger: candidate -> registered.

A candidate is a verified ONNX export with its manifest and reference profile. It is registered
as an immutable version (the challenger); `mlops.release.gating` then gates it against the
champion and promotes it when it passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.contract.spec import Contract
from mlops.inference.outputs import output_frame
from mlops.monitoring.profile import profile_frame, profile_to_bytes
from mlops.registry.store import ModelVersion, Registry
from mlops.release.card import build_manifest, render_model_card
from mlops.release.export import export_onnx
from mlops.release.verify import VerificationReport, verify_export
from mlops.training.train import Splits, TrainedModel, predict_torch

CHALLENGER_REASON = "registered by train-model"


@dataclass(frozen=True)
class Candidate:
    """A verified ONNX export and what its registration stores next to it."""

    onnx_path: Path
    manifest: dict[str, Any]
    reference: bytes
    verification: VerificationReport


def reference_profile(model: TrainedModel, contract: Contract, train: pd.DataFrame) -> bytes:
    """Profile the training rows' features, target and model outputs (as serving logs them)."""
    columns = [*contract.feature_names, contract.target.name]
    target = model.preprocessor.target
    described = {
        "task": target.task,
        "classes": list(target.classes or []),
        "decision_threshold": model.decision_threshold,
    }
    outputs = output_frame(predict_torch(model, train), described)
    frame = pd.concat([train[columns].reset_index(drop=True), outputs], axis=1)
    return profile_to_bytes(profile_frame(frame))


def prepare_candidate(
    model: TrainedModel,
    contract: Contract,
    splits: Splits,
    *,
    workdir: str | Path,
    data: dict[str, Any],
    metrics: dict[str, float],
    slice_metrics: list[dict[str, Any]],
    flow_run_id: str | None,
    reason: str,
    prefer_gpu: bool = True,
) -> Candidate:
    """Export the model to `workdir`, verify the export on the holdout, and describe it.

    `data` is the data lineage (`mlops.release.lineage.data_lineage`); `metrics` and
    `slice_metrics` are the holdout's. For a refitted model (`refit_model`) they are those of the
    model before the refit, and its reference profile covers every row it learned, not only the
    training split. Raises ExportVerificationError when the export fails a check.
    """
    path = export_onnx(model, contract, Path(workdir) / "model.onnx")
    parity = pd.concat([splits.holdout, splits.val, splits.train], ignore_index=True)
    report = verify_export(path, model, contract, parity, prefer_gpu=prefer_gpu)
    manifest = build_manifest(
        model=model,
        contract=contract,
        data=data,
        metrics=metrics,
        slice_metrics=slice_metrics,
        verification=report.to_dict(),
        flow_run_id=flow_run_id,
    )
    manifest["reason"] = reason
    learned = splits.train
    if model.refit_rows is not None:
        learned = pd.concat([splits.train, splits.val, splits.holdout], ignore_index=True)
    return Candidate(path, manifest, reference_profile(model, contract, learned), report)


def register_candidate(
    registry: Registry, model_name: str, candidate: Candidate, *, actor: str
) -> ModelVersion:
    """Register the candidate as an immutable version, with its model card; set no alias."""
    return registry.register(
        model_name,
        onnx_path=candidate.onnx_path,
        manifest=candidate.manifest,
        reference_profile=candidate.reference,
        model_card=render_model_card(candidate.manifest),
        actor=actor,
    )


def register_challenger(
    registry: Registry, model_name: str, candidate: Candidate, *, actor: str
) -> ModelVersion:
    """Register the candidate and point the challenger alias at it."""
    version = register_candidate(registry, model_name, candidate, actor=actor)
    registry.set_alias(
        model_name, "challenger", version.version, actor=actor, reason=CHALLENGER_REASON
    )
    return version
