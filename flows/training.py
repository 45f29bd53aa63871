"""train-model: validate -> train -> evaluate -> export + verify -> register -> gate -> promote."""

from __future__ import annotations

import tempfile
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.parameters import DataSpec, GateSpec, Hyperparameters
from mlops.data.sources import Window
from mlops.registry.store import Registry
from mlops.release.card import build_manifest
from mlops.release.gate import GatePolicy
from mlops.release.lineage import data_fingerprint
from mlops.settings import get_settings
from mlops.training.train import TrainParams
from tasks.data import load_data, read_contract, validate_data
from tasks.registry import (
    export_and_verify,
    gate_challenger,
    reference_profile,
    register_challenger,
)
from tasks.training import evaluate_model, fit_model, gpu_slot, split_data


@flow(name="train-model", log_prints=True)
def train_model_flow(
    model_name: str | None = None,
    data: DataSpec | None = None,
    training: Hyperparameters | None = None,
    gate: GateSpec | None = None,
    max_failing_share: float = 0.05,
    reason: str = "manual run",
) -> dict[str, Any]:
    """Train a challenger on a data window, verify its ONNX export, and gate it vs the champion."""
    settings = get_settings()
    data, training, gate = data or DataSpec(), training or Hyperparameters(), gate or GateSpec()
    model_name = model_name or settings.model_name
    data_uri, labels_uri = resolve_data(data, settings.data)
    params = TrainParams(**{**training.model_dump(), "hidden": tuple(training.hidden)})
    run_id = str(flow_run.get_id() or "local")

    # 1. Data: read the window, validate against the contract, quarantine failures
    contract = read_contract(data.contract or settings.contract)
    window = Window(start=data.start, end=data.end, last_rows=data.last_rows)
    loaded = load_data(data_uri, contract, labels_uri=labels_uri, window=window)
    valid = validate_data(
        loaded,
        contract,
        quarantine_url=settings.quarantine,
        batch=f"train-{run_id}",
        max_failing_share=max_failing_share,
    ).valid

    # 2. Train and evaluate on the newest rows
    splits = split_data(valid, contract, params)
    with gpu_slot(params.accelerator):
        model = fit_model(splits, contract, params)
    metrics, slices = evaluate_model(model, contract, splits.holdout)

    # 3. Export, verify, register as challenger
    with tempfile.TemporaryDirectory(prefix="mlops-export-") as workdir:
        onnx_path, report = export_and_verify(model, contract, splits.holdout, workdir)
        lineage = data_lineage(data_uri, labels_uri, splits, contract.timestamp_column, valid)
        manifest = build_manifest(
            model=model,
            contract=contract,
            data=lineage,
            metrics=metrics,
            slice_metrics=slices,
            verification=report.to_dict(),
            flow_run_id=run_id,
        )
        manifest["reason"] = reason
        registry = Registry(settings.registry)
        version = register_challenger(
            registry,
            model_name,
            onnx_path=onnx_path,
            manifest=manifest,
            actor=f"train-model/{run_id}",
            reference=reference_profile(model, contract, splits.train),
        )

    # 4. Gate against the champion on the same holdout
    policy = GatePolicy(gate.metric, gate.floor, gate.max_regression).resolved(contract.task)
    decision = gate_challenger(
        registry,
        version,
        contract,
        splits.holdout,
        policy,
        promote=gate.promote,
        actor=f"train-model/{run_id}",
    )
    return {
        "version": version.version,
        "promoted": decision.promote and gate.promote,
        "verdict": decision.verdict,
        "metrics": metrics,
        "device": model.device,
        "uri": version.uri,
    }


def resolve_data(data: DataSpec, data_store: str) -> tuple[str, str | None]:
    """Return the data and labels URIs, defaulting to the simulator's output."""
    if data.data_uri:
        return data.data_uri, data.labels_uri
    simulated = f"{data_store.rstrip('/')}/simulated"
    return f"{simulated}/raw", data.labels_uri or f"{simulated}/labels"


def data_lineage(
    data_uri: str, labels_uri: str | None, splits: Any, timestamp: str | None, valid: Any
) -> dict[str, Any]:
    """Describe the training data for the manifest."""
    described = {row["split"]: row for row in splits.describe(timestamp)}
    return {
        "uri": data_uri,
        "labels_uri": labels_uri,
        "fingerprint": data_fingerprint(valid),
        "window_from": described["train"]["from"] if timestamp else "row 0",
        "window_to": described["holdout"]["to"] if timestamp else f"row {len(valid) - 1}",
        "train_rows": described["train"]["rows"],
        "val_rows": described["val"]["rows"],
        "holdout_rows": described["holdout"]["rows"],
    }
