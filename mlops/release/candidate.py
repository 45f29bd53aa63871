"""Take a trained model to production: candidate -> registered -> gated -> promoted.

A candidate is a verified ONNX export with its manifest and reference profile. It is registered
as an immutable version (the challenger), gated against the champion on the same holdout, both
scored through ONNX as serving scores them, and promoted only if the gate passes and the aliases
have not moved since the gate read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.contract.spec import Contract
from mlops.inference.outputs import output_frame
from mlops.inference.scoring import IncompatibleModelError, score_onnx
from mlops.monitoring.profile import profile_frame, profile_to_bytes
from mlops.registry.store import ModelVersion, Registry
from mlops.release.card import build_manifest, render_model_card
from mlops.release.export import export_onnx
from mlops.release.gate import GateDecision, GatePolicy, decide
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


@dataclass(frozen=True)
class GateOutcome:
    """The gate's decision on a challenger, and the alias revision it was taken at."""

    challenger: ModelVersion
    decision: GateDecision
    revision: int  # promotion succeeds only while the aliases are still at this revision
    note: str = ""  # markdown for the report: why the champion could not be compared


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
    `slice_metrics` are the holdout's. Raises ExportVerificationError when the export fails a check.
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
    return Candidate(path, manifest, reference_profile(model, contract, splits.train), report)


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


def gate_challenger(
    registry: Registry,
    challenger: ModelVersion,
    contract: Contract,
    holdout: pd.DataFrame,
    policy: GatePolicy,
) -> GateOutcome:
    """Score challenger and champion through ONNX on the same holdout and decide by `policy`.

    A champion whose inputs the contract's rows cannot feed is left out: the challenger is then
    judged on the floor only, and the outcome's note says so.
    """
    if policy.metric is None:
        raise ValueError("the gate policy has no metric: resolve it for the task first")
    model = challenger.model
    state = registry.aliases(model)
    champion_name = state.aliases.get("champion")
    onnx = registry.read_onnx(model, challenger.version)
    scored = score_onnx(onnx, challenger.manifest, holdout, contract)
    champion_score, note = None, ""
    if champion_name:
        champion = registry.get(model, champion_name)
        try:
            found = score_onnx(
                registry.read_onnx(model, champion_name), champion.manifest, holdout, contract
            )
            champion_score = found[policy.metric]
        except IncompatibleModelError as exc:
            note = f"\n\nChampion {champion_name} cannot score these rows ({exc}); floor only.\n"
            champion_name = None
    decision = decide(
        scored[policy.metric],
        champion_score,
        policy,
        challenger_version=challenger.version,
        champion_version=champion_name,
    )
    return GateOutcome(challenger, decision, state.revision, note)


def promote_challenger(registry: Registry, outcome: GateOutcome, *, actor: str) -> bool:
    """Make the challenger champion if it passed the gate; return whether it was promoted.

    Raises ConcurrentUpdateError, promoting nothing, when the aliases moved after the gate read
    them: the decision may no longer hold.
    """
    if not outcome.decision.promote:
        return False
    registry.promote(
        outcome.challenger.model,
        outcome.challenger.version,
        expected_revision=outcome.revision,
        actor=actor,
        reason=outcome.decision.verdict,
    )
    return True
