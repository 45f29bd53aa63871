"""Tasks that prepare, register, gate and promote model versions (the steps: mlops.release)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.registry.rollouts import CANARY_STEPS, Rollout
from mlops.registry.store import ModelVersion, Registry
from mlops.release import candidate as release
from mlops.release import gating
from mlops.release.card import render_model_card
from mlops.release.gate import GateDecision, GatePolicy, decision_markdown
from mlops.release.rollout import put_on_trial
from mlops.training.train import Splits, TrainedModel
from serving.bento_store import BentoSave, try_save_to_bentoml


@task(name="prepare-candidate", cache_policy=NO_CACHE)
def prepare_candidate(
    model: TrainedModel,
    contract: Contract,
    splits: Splits,
    lineage: dict[str, Any],
    metrics: dict[str, float],
    slices: list[dict[str, Any]],
    *,
    workdir: str,
    run_id: str,
    reason: str,
) -> release.Candidate:
    """Export the ONNX pipeline, check it (checker, parity, OOV, latency) and describe it."""
    candidate = release.prepare_candidate(
        model,
        contract,
        splits,
        workdir=workdir,
        data=lineage,
        metrics=metrics,
        slice_metrics=slices,
        flow_run_id=run_id,
        reason=reason,
    )
    report = candidate.verification
    get_run_logger().info(
        "ONNX verified: max |diff| %.2e on %d rows, p50 %.3f ms (batch 1) on %s",
        report.max_abs_diff,
        report.parity_rows,
        report.p50_ms_batch1,
        report.device,
    )
    return candidate


@task(name="check-registry-lock", cache_policy=NO_CACHE)
def check_registry_lock(registry: Registry, model_name: str) -> None:
    """Fail now, not after training, when another writer holds the model's registry lock.

    A lock left by a process of this host that has exited is broken here.
    """
    registry.check_lock(model_name)


@task(name="register-challenger", cache_policy=NO_CACHE)
def register_challenger(
    registry: Registry, model_name: str, candidate: release.Candidate, *, actor: str
) -> ModelVersion:
    """Register an immutable version and point the challenger alias at it."""
    version = release.register_challenger(registry, model_name, candidate, actor=actor)
    create_markdown_artifact(
        key="model-card",
        markdown=render_model_card(version.manifest, version=version.version)
        + f"\n\nStored at `{version.uri}`\n",
        description=f"Model card of {model_name} {version.version}",
    )
    return version


@task(name="gate-and-promote", cache_policy=NO_CACHE)
def gate_and_promote(
    registry: Registry,
    challenger: ModelVersion,
    contract: Contract,
    holdout: pd.DataFrame,
    policy: GatePolicy,
    *,
    promote: bool,
    actor: str,
    release_as: str = "direct",
    canary_share: float = CANARY_STEPS[0],
) -> tuple[GateDecision, Rollout | None]:
    """Score challenger and champion on the same holdout; promote when the gate passes.

    With `release_as` shadow or canary, a challenger that passes goes on trial beside the
    champion instead (the first model, with no champion, is promoted directly).
    """
    outcome = gating.gate_challenger(registry, challenger, contract, holdout, policy)
    decision, note = outcome.decision, outcome.note
    trial = None
    has_champion = decision.champion_version is not None
    if promote and decision.promote and release_as != "direct" and has_champion:
        trial = put_on_trial(registry, outcome, release_as, share=canary_share, actor=actor)
        decision = replace(
            decision,
            verdict=decision.verdict.replace(
                f"{challenger.version} is promoted:",
                f"{challenger.version} passes the gate and goes on trial as a {release_as}:",
                1,
            ),
        )
        note += (
            f"\n\nOn trial as a {release_as} beside {decision.champion_version} (gate.release): "
            "monitor-model promotes it or ends it on live traffic.\n"
        )
    elif promote and gating.promote_challenger(registry, outcome, actor=actor):
        # The champion has moved: from here on nothing may fail the run.
        saved = _save_champion(registry, challenger, contract)
        note += f"\n\n{saved.describe()}\n"
        if saved.error is not None:
            get_run_logger().warning(saved.describe())
    elif decision.promote:
        note += "\n\nPromotion disabled for this run (gate.promote = false).\n"
    create_markdown_artifact(
        key="gate-decision",
        markdown=decision_markdown(decision) + note,
        description=decision.verdict,
    )
    get_run_logger().info(decision.verdict)
    return decision, trial


def _save_champion(registry: Registry, version: ModelVersion, contract: Contract) -> BentoSave:
    """Save the new champion into the BentoML model store, so a Bento can package it."""
    labels = {"task": contract.task, "contract": contract.name, "promoted_by": "train-model"}
    return try_save_to_bentoml(version, registry, labels=labels)
