"""Tests of a version's manifest (its lineage) and of the model card rendered from it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from mlops.release.card import build_manifest, render_model_card
from mlops.release.verify import VerificationReport
from mlops.training.features import Preprocessor
from tests.support.synthetic import trained

DATA = {
    "uri": "memory://data/raw",
    "labels_uri": "memory://data/labels",
    "fingerprint": "f" * 64,
    "window_from": "2026-01-01",
    "window_to": "2026-01-15",
    "train_rows": 560,
    "val_rows": 120,
    "holdout_rows": 120,
}
METRICS = {"roc_auc": 0.91234, "log_loss": 0.31, "accuracy": 0.875}
SLICES = [
    {"slice": "city", "value": "paris", "rows": 64, "roc_auc": 0.9, "accuracy": 0.8},
    {"slice": "city", "value": "lyon", "rows": 56, "roc_auc": 0.85, "accuracy": 0.75},
]
VERIFICATION = VerificationReport(
    checker="onnx.checker full_check passed",
    parity_rows=1200,
    max_abs_diff=6e-8,
    tolerance=1e-4,
    oov_max_abs_diff=3e-8,
    p50_ms_batch1=0.025,
    p50_ms_batch256=0.09,
    providers=("CPUExecutionProvider",),
    device="cpu",
).to_dict()


@pytest.fixture(scope="module")
def manifest() -> dict[str, Any]:
    """Build the manifest of the session's small binary model."""
    contract, model = trained("binary")
    return build_manifest(
        model=model,
        contract=contract,
        data=DATA,
        metrics=METRICS,
        slice_metrics=SLICES,
        verification=VERIFICATION,
        flow_run_id="run-123",
    )


def test_manifest_records_contract_data_parameters_and_metrics(manifest: dict[str, Any]) -> None:
    contract, model = trained("binary")

    assert manifest["contract_fingerprint"] == contract.fingerprint
    assert manifest["contract"] == {
        "name": contract.name, "fingerprint": contract.fingerprint, "source": contract.source,
    }  # fmt: skip
    assert manifest["data"] == DATA
    assert manifest["parameters"]["max_epochs"] == model.params.max_epochs
    assert manifest["parameters"]["hidden"] == list(model.params.hidden)
    assert manifest["metrics"] == METRICS
    assert manifest["slice_metrics"] == SLICES
    assert manifest["flow_run_id"] == "run-123"


def test_manifest_records_training_and_onnxruntime_devices(manifest: dict[str, Any]) -> None:
    assert manifest["training"]["device"] == "cpu"
    assert manifest["training"]["epochs"] == trained("binary")[1].epochs
    assert manifest["onnxruntime_device"] == "cpu"
    assert manifest["verification"] == VERIFICATION


def test_manifest_records_code_version_and_package_versions(manifest: dict[str, Any]) -> None:
    code, packages = manifest["code"], manifest["packages"]

    assert set(code) == {"git_sha", "dirty"}
    assert code["git_sha"] is None or len(code["git_sha"]) == 40
    assert "torch" in packages and "pytorch-lightning" in packages
    assert any(name.startswith("onnxruntime") for name in packages)


def test_manifest_describes_inputs_in_contract_order_and_the_output(
    manifest: dict[str, Any],
) -> None:
    contract, _ = trained("binary")

    assert [(i["name"], i["type"]) for i in manifest["inputs"]] == [
        (c.name, "float32" if c.is_numeric else "string") for c in contract.features
    ]
    assert manifest["output"] == "probabilities"
    assert manifest["task"] == "binary" and manifest["classes"] == [0, 1]


def test_manifest_is_json_ready_and_its_preprocessor_can_be_rebuilt(
    manifest: dict[str, Any],
) -> None:
    reloaded = json.loads(json.dumps(manifest))

    assert Preprocessor.from_dict(reloaded["preprocessor"]) == trained("binary")[1].preprocessor
    assert reloaded["decision_threshold"] == trained("binary")[1].decision_threshold


def test_manifest_and_card_record_the_threshold_and_the_objective_it_was_tuned_for(
    manifest: dict[str, Any],
) -> None:
    _, model = trained("binary")

    assert model.threshold_objective == "accuracy"  # auto: positives are not rare in these rows
    assert manifest["threshold_objective"] == "accuracy"
    assert manifest["decision_threshold"] == model.decision_threshold
    assert 0.0 < model.decision_threshold < 1.0
    card = render_model_card(manifest)
    assert f"- Decision threshold: {model.decision_threshold:.4f} (tuned for accuracy" in card
    assert trained("regression")[1].threshold_objective is None
    refit = render_model_card(
        {**manifest, "decision_threshold": 0.5, "refit": {"rows": 9, "epochs": 2, "seconds": 1.0}}
    )
    assert "- Decision threshold: 0.5000 (accuracy: a refit serves at 0.5, its calibrated" in refit


def test_model_card_renders_metrics_slices_lineage_and_verification(
    manifest: dict[str, Any],
) -> None:
    card = render_model_card(manifest, version="v7")

    assert card.startswith("# Model card: synthetic-binary v7")
    assert "- Task: **binary**, classes [0, 1]" in card
    assert "| roc_auc | 0.9123 |" in card and "| log_loss | 0.3100 |" in card
    assert "## Slices" in card
    assert "| slice | value | rows | roc_auc | accuracy |" in card
    assert "| city | paris | 64 | 0.9000 | 0.8000 |" in card
    assert "| city | lyon | 56 | 0.8500 | 0.7500 |" in card
    assert "Trained on **cpu**" in card and "Prefect flow run: run-123" in card
    assert "onnxruntime on **cpu** (CPUExecutionProvider)" in card
    assert "ONNX vs PyTorch on 1200 rows" in card
    assert "train 560, validation 120, holdout 120" in card


def test_model_card_prefers_the_registered_version_and_omits_empty_slices(
    manifest: dict[str, Any],
) -> None:
    card = render_model_card({**manifest, "version": "v2", "slice_metrics": []}, version="v9")

    assert card.startswith("# Model card: synthetic-binary v2")
    assert "## Slices" not in card


def test_model_card_says_how_rows_were_weighed_by_recency(manifest: dict[str, Any]) -> None:
    assert "Recency weights" not in render_model_card(manifest)  # unweighted by default
    weighted = {**manifest, "parameters": {**manifest["parameters"], "recency_half_life": 0.5}}

    assert (
        "- Recency weights: a row weighs half as much for every 0.5 of the rows learned it is "
        "older than the newest (the oldest weighs 0.25)" in render_model_card(weighted)
    )
