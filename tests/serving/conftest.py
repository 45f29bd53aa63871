"""Fixtures for serving tests: a registry with trained champion versions, and the service app."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from mlops.card import build_manifest, render_model_card
from mlops.contract import Contract, load_contract
from mlops.export import export_onnx
from mlops.profile import profile_frame, profile_to_bytes
from mlops.registry import ModelVersion, Registry
from mlops.settings import DEFAULT_CONTRACT
from mlops.simulate import SimulationConfig, generate_day
from mlops.train import TrainParams, split_by_time, train_model
from mlops.verify import verify_export

MODEL = "card-fraud"


def simulated_rows(days: int = 8, rows_per_day: int = 1000, seed: int = 11) -> pd.DataFrame:
    """Return labelled simulator rows (features, id, timestamp and target)."""
    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=seed)
    frames = []
    for day in range(days):
        features, labels = generate_day(config, day)
        frames.append(features.merge(labels[["transaction_id", "is_fraud"]], on="transaction_id"))
    return pd.concat(frames, ignore_index=True)


def register_trained(
    registry: Registry, contract: Contract, rows: pd.DataFrame, workdir: Path, *, seed: int
) -> ModelVersion:
    """Train a small model, export, verify and register it (no promotion)."""
    splits = split_by_time(rows)
    model = train_model(splits, contract, TrainParams(max_epochs=2, seed=seed))
    path = export_onnx(model, contract, workdir / f"model-{seed}.onnx")
    report = verify_export(path, model, contract, splits.holdout)
    manifest = build_manifest(
        model=model, contract=contract, data={"uri": "test"}, metrics={}, slice_metrics=[],
        verification=report.to_dict(), flow_run_id=None,
    )  # fmt: skip
    reference = profile_to_bytes(profile_frame(splits.train[list(contract.feature_names)]))
    return registry.register(
        MODEL, onnx_path=path, manifest=manifest, reference_profile=reference,
        model_card=render_model_card(manifest),
    )  # fmt: skip


@pytest.fixture(scope="session")
def serving_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLOPS_HOME whose registry holds v1 (champion) and v2 (registered, not promoted)."""
    home = tmp_path_factory.mktemp("serving-home")
    registry = Registry(str(home / "registry"))
    contract = load_contract(DEFAULT_CONTRACT)
    rows = simulated_rows()
    workdir = tmp_path_factory.mktemp("export")
    first = register_trained(registry, contract, rows, workdir, seed=1)
    register_trained(registry, contract, rows, workdir, seed=2)
    registry.promote(MODEL, first.version, actor="test", reason="fixture")
    return home


@pytest.fixture
def service_env(serving_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the service at the fixture registry, with its own log stores and fast reloads."""
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(serving_home / "registry"))
    monkeypatch.setenv("MLOPS_RELOAD_INTERVAL_S", "0.2")
    monkeypatch.setenv("MLOPS_LOG_FLUSH_S", "0.2")
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "admin-secret")
    return tmp_path / "home"


@pytest.fixture
def client(service_env: Path) -> Iterator[object]:
    """An in-process client of the service (lifespan run: model loaded, logger started)."""
    from starlette.testclient import TestClient

    from serving.service import PredictionService

    with TestClient(PredictionService.to_asgi()) as test_client:
        yield test_client
    assert os.environ["MLOPS_HOME"] == str(service_env)
