"""train-model: validate -> find change -> train -> evaluate -> refit -> export + verify ->
register -> gate."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import flow
from prefect.runtime import flow_run

from flows.parameters import DataSpec, GateSpec
from mlops.contract.spec import Contract
from mlops.registry.store import Registry
from mlops.release.build import champion_learned, refit_for_release
from mlops.release.lineage import data_lineage
from mlops.settings import get_settings
from mlops.training.train import TrainedModel, TrainParams
from tasks.data import load_data, read_contract, set_aside_incidents, validate_data
from tasks.registry import (
    check_registry_lock,
    gate_and_promote,
    prepare_candidate,
    register_challenger,
)
from tasks.training import evaluate_holdout, find_change, fit_model, gpu_slot, refit_model


@flow(name="train-model", log_prints=True)
def train_model_flow(
    model_name: str | None = None,
    data: DataSpec | None = None,
    training: TrainParams | None = None,
    gate: GateSpec | None = None,
    max_failing_share: float = 0.05,
    reason: str = "manual run",
) -> dict[str, Any]:
    """Train a challenger on a data window, verify its ONNX export, and gate it vs the champion."""
    settings, data, gate = get_settings(), data or DataSpec(), gate or GateSpec()
    params, model_name = training or TrainParams(), model_name or settings.model_name
    run_id = str(flow_run.get_id() or "local")

    # 1. Data: read the window, validate against the contract, quarantine failures
    rows = prepare_rows(data, model_name, run_id, max_failing_share)

    # 2-4. Train, evaluate, refit, export + verify, register, gate
    return release_model(rows, params, gate, model_name, run_id=run_id, reason=reason)


@dataclass(frozen=True)
class TrainingRows:
    """The validated rows of a data window, with their contract and where they came from."""

    contract: Contract
    valid: pd.DataFrame
    data_uri: str
    labels_uri: str | None


def prepare_rows(
    data: DataSpec, model_name: str, run_id: str, max_failing_share: float
) -> TrainingRows:
    """Read the window, validate it against the contract, quarantine failures and incidents."""
    settings = get_settings()
    data_uri, labels_uri = data.uris(settings.data)
    contract = read_contract(data.contract or settings.contract)
    loaded = load_data(data_uri, contract, labels_uri=labels_uri, window=data.window())
    valid = validate_data(
        loaded,
        contract,
        quarantine_url=settings.quarantine,
        batch=f"train-{run_id}",
        max_failing_share=max_failing_share,
    ).valid
    if data.exclude_incidents:  # rows served while monitoring saw a broken feed
        valid = set_aside_incidents(valid, contract, settings, model_name, batch=f"train-{run_id}")
    return TrainingRows(contract, valid, data_uri, labels_uri)


def release_model(
    rows: TrainingRows,
    params: TrainParams,
    gate: GateSpec,
    model_name: str,
    *,
    run_id: str,
    reason: str,
    actor: str | None = None,
) -> dict[str, Any]:
    """Train on validated rows, evaluate, refit, export + verify, register and gate (in a flow)."""
    contract, valid, actor = rows.contract, rows.valid, actor or f"train-model/{run_id}"

    # 2. Train (after a change of concept, maybe on the rows since it only), evaluate on the
    #    newest rows, then refit on all rows learned (the metrics stay the first model's)
    registry = Registry(get_settings().registry)
    check_registry_lock(registry, model_name)  # a held lock fails the run now, not after training
    change = find_change(registry, model_name, valid, contract, params)
    learned = champion_learned(registry, model_name, valid, contract)
    with gpu_slot(params.accelerator, params.devices):
        fitted = fit_model(valid, contract, params, change, learned)
    splits = fitted.splits

    def refit_task(model: TrainedModel, rows: pd.DataFrame, contract: Contract) -> TrainedModel:
        with gpu_slot(params.accelerator, params.devices):
            return refit_model(model, rows, contract)

    # a refit challenger is gated by a model that has not seen the holdout
    model, gated, gate_rows = refit_for_release(fitted, contract, params, refit_task)
    metrics, slices = evaluate_holdout(gated, contract, splits.holdout)

    # 3. Export, verify, describe, register as challenger
    lineage = data_lineage(rows.data_uri, rows.labels_uri, splits, contract, fitted.rows)
    with tempfile.TemporaryDirectory(prefix="mlops-export-") as workdir:
        candidate = prepare_candidate(
            model, contract, splits, lineage, metrics, slices,
            workdir=workdir, run_id=run_id, reason=reason,
        )  # fmt: skip
        version = register_challenger(registry, model_name, candidate, actor=actor)

    # 4. Gate against the champion on the same holdout; promote (or try) it when it passes
    policy = gate.resolved(contract.task)
    decision, trial = gate_and_promote(
        registry, version, contract, gate_rows, policy, promote=gate.promote, actor=actor,
        release_as=gate.release, canary_share=gate.canary_share,
    )  # fmt: skip
    return {
        "version": version.version,
        "promoted": decision.promote and gate.promote and trial is None,
        "on_trial": None if trial is None else trial.to_dict(),
        "verdict": decision.verdict,
        "metrics": metrics,
        "device": model.device,
        "uri": version.uri,
    }
