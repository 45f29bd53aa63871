"""Tasks that export, register, gate and promote model versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.inference.outputs import output_frame
from mlops.inference.scoring import IncompatibleModelError, score_onnx
from mlops.monitoring.profile import profile_frame, profile_to_bytes
from mlops.registry.store import ModelVersion, Registry
from mlops.release.card import render_model_card
from mlops.release.export import export_onnx
from mlops.release.gate import GateDecision, GatePolicy, decide, decision_markdown
from mlops.release.verify import VerificationReport, verify_export
from mlops.training.train import TrainedModel, predict_torch
from serving.bento_store import save_to_bentoml


@task(name="export-and-verify", cache_policy=NO_CACHE)
def export_and_verify(
    model: TrainedModel, contract: Contract, holdout: pd.DataFrame, workdir: str
) -> tuple[str, VerificationReport]:
    """Export the ONNX pipeline and check it (checker, parity, OOV, latency)."""
    path = export_onnx(model, contract, Path(workdir) / "model.onnx")
    report = verify_export(path, model, contract, holdout)
    get_run_logger().info(
        "ONNX verified: max |diff| %.2e on %d rows, p50 %.3f ms (batch 1) on %s",
        report.max_abs_diff,
        report.parity_rows,
        report.p50_ms_batch1,
        report.device,
    )
    return str(path), report


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


@task(name="register-challenger", cache_policy=NO_CACHE)
def register_challenger(
    registry: Registry,
    model_name: str,
    *,
    onnx_path: str,
    manifest: dict[str, Any],
    reference: bytes,
    actor: str,
) -> ModelVersion:
    """Register an immutable version and point the challenger alias at it."""
    card = render_model_card(manifest)
    version = registry.register(
        model_name,
        onnx_path=onnx_path,
        manifest=manifest,
        reference_profile=reference,
        model_card=card,
        actor=actor,
    )
    registry.set_alias(
        model_name, "challenger", version.version, actor=actor, reason="registered by train-model"
    )
    create_markdown_artifact(
        key="model-card",
        markdown=render_model_card(version.manifest, version=version.version)
        + f"\n\nStored at `{version.uri}`\n",
        description=f"Model card of {model_name} {version.version}",
    )
    return version


@task(name="gate-and-promote", cache_policy=NO_CACHE)
def gate_challenger(
    registry: Registry,
    challenger: ModelVersion,
    contract: Contract,
    holdout: pd.DataFrame,
    policy: GatePolicy,
    *,
    promote: bool,
    actor: str,
) -> GateDecision:
    """Score challenger and champion on the same holdout; promote when the gate passes."""
    log = get_run_logger()
    model = challenger.model
    state = registry.aliases(model)
    champion_name = state.aliases.get("champion")
    scored = score_onnx(
        registry.read_onnx(model, challenger.version), challenger.manifest, holdout, contract
    )
    assert policy.metric is not None
    champion_score, note = None, ""
    if champion_name:
        champ = registry.get(model, champion_name)
        try:
            found = score_onnx(
                registry.read_onnx(model, champion_name), champ.manifest, holdout, contract
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
    if decision.promote and promote:
        registry.promote(
            model,
            challenger.version,
            expected_revision=state.revision,
            actor=actor,
            reason=decision.verdict,
        )
        labels = {"task": contract.task, "contract": contract.name, "promoted_by": "train-model"}
        tag = save_to_bentoml(registry.get(model, challenger.version), registry, labels=labels)
        note += f"\n\nSaved to the BentoML model store as `{tag}`.\n"
    elif decision.promote:
        note += "\n\nPromotion disabled for this run (gate.promote = false).\n"
    create_markdown_artifact(
        key="gate-decision",
        markdown=decision_markdown(decision) + note,
        description=decision.verdict,
    )
    log.info(decision.verdict)
    return decision
