"""Set up the serving benchmark: one trained model, its ONNX export as champion, its PyTorch copy.

The service ((2), (3)) serves the registry's champion; the FastAPI baseline ((4)) loads the very
model that was exported, saved with torch.save; the requests are raw simulator records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "card-fraud"
MAX_RECORDS = 64


@dataclass(frozen=True)
class Setup:
    """What the setup step left in the work folder."""

    work: Path
    version: str
    torch_path: Path
    records: list[dict[str, Any]]


def prepare(work: Path, *, seed: int = 1, max_epochs: int = 2) -> Setup:
    """Train once; register the ONNX export as champion and keep the PyTorch model."""
    import torch

    from mlops.contract.spec import load_contract
    from mlops.monitoring.profile import profile_frame, profile_to_bytes
    from mlops.registry.store import Registry
    from mlops.release.card import build_manifest, render_model_card
    from mlops.release.export import export_onnx
    from mlops.release.verify import verify_export
    from mlops.settings import DEFAULT_CONTRACT
    from mlops.training.train import TrainParams, split_by_time, train_model

    contract = load_contract(DEFAULT_CONTRACT)
    rows = simulated_rows(contract.target.name)
    splits = split_by_time(rows)
    model = train_model(splits, contract, TrainParams(max_epochs=max_epochs, seed=seed))
    onnx_path = export_onnx(model, contract, work / "model.onnx")
    report = verify_export(onnx_path, model, contract, splits.holdout, prefer_gpu=False)
    manifest = build_manifest(
        model=model, contract=contract, data={"uri": "bench"}, metrics={}, slice_metrics=[],
        verification=report.to_dict(), flow_run_id=None,
    )  # fmt: skip
    registry = Registry(str(work / "registry"))
    version = registry.register(
        MODEL, onnx_path=onnx_path, manifest=manifest, model_card=render_model_card(manifest),
        reference_profile=profile_to_bytes(profile_frame(splits.train[list(contract.feature_names)])),
    ).version  # fmt: skip
    registry.promote(MODEL, version, actor="bench", reason="serving benchmark")
    torch_path = work / "torch_model.pt"
    torch.save(model, torch_path)
    raw = rows.drop(columns=[contract.target.name]).head(MAX_RECORDS)
    records = json.loads(raw.to_json(orient="records", date_format="iso"))
    return Setup(work, version, torch_path, records)


def simulated_rows(target: str, days: int = 8, rows_per_day: int = 1000, seed: int = 11) -> Any:
    """Return labelled simulator rows (features, id, timestamp and target), as the tests do."""
    import pandas as pd

    from mlops.data.simulate import SimulationConfig, generate_day

    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=seed)
    frames = []
    for day in range(days):
        features, labels = generate_day(config, day)
        frames.append(features.merge(labels[["transaction_id", target]], on="transaction_id"))
    return pd.concat(frames, ignore_index=True)
