"""Real registry versions for flow tests, trained once per session and copied into each test."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from mlops.contract.spec import load_contract
from mlops.data.simulate import SimulationConfig, generate_day
from mlops.monitoring.profile import profile_frame, profile_to_bytes
from mlops.registry.store import Registry
from mlops.release.card import build_manifest, render_model_card
from mlops.release.export import export_onnx
from mlops.release.verify import verify_export
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams, split_by_time, train_model

MODEL = "flows-test"


def labelled_rows(days: int, rows_per_day: int, seed: int) -> pd.DataFrame:
    """Return simulator rows with their label joined."""
    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=seed)
    frames = []
    for day in range(days):
        features, labels = generate_day(config, day)
        frames.append(features.merge(labels[["transaction_id", "is_fraud"]], on="transaction_id"))
    return pd.concat(frames, ignore_index=True)


@functools.cache
def registry_template(versions: int = 2) -> str:
    """Return a registry folder holding small trained versions v1, v2, ... of MODEL, no aliases."""
    root = Path(tempfile.mkdtemp(prefix="mlops-flow-registry-"))
    contract = load_contract(DEFAULT_CONTRACT)
    splits = split_by_time(labelled_rows(days=7, rows_per_day=1000, seed=5))
    registry = Registry(str(root / "registry"))
    for seed in range(1, versions + 1):
        params = TrainParams(max_epochs=1, seed=seed, accelerator="cpu")
        trained = train_model(splits, contract, params)
        path = export_onnx(trained, contract, root / f"model-{seed}.onnx")
        report = verify_export(path, trained, contract, splits.holdout, prefer_gpu=False)
        manifest = build_manifest(
            model=trained, contract=contract, data={"uri": "test"}, metrics={}, slice_metrics=[],
            verification=report.to_dict(), flow_run_id=None,
        )  # fmt: skip
        reference = profile_to_bytes(profile_frame(splits.train[list(contract.feature_names)]))
        registry.register(
            MODEL, onnx_path=path, manifest=manifest, reference_profile=reference,
            model_card=render_model_card(manifest), actor="tests",
        )  # fmt: skip
    return str(root / "registry")


def copy_registry(dest: str) -> Registry:
    """Copy the session's trained registry (MODEL v1 and v2) to `dest` and return it."""
    shutil.copytree(registry_template(), dest)
    return Registry(dest)
