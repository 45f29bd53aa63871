"""Training and inference on a GPU, when one is present (skipped otherwise)."""

from __future__ import annotations

import pytest
import torch

from mlops.contract.spec import load_contract
from mlops.data.simulate import SimulationConfig, generate_day
from mlops.release.export import export_onnx
from mlops.release.verify import create_session, verify_export
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams, split_by_time, train_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]


def test_training_runs_on_the_gpu_and_the_export_keeps_parity_under_cuda(tmp_path) -> None:
    config = SimulationConfig(days=10, rows_per_day=1000, scenario="stable")
    frames = []
    for day in range(config.days):
        features, labels = generate_day(config, day)
        frames.append(features.merge(labels[["transaction_id", "is_fraud"]]))
    import pandas as pd

    frame = pd.concat(frames, ignore_index=True)
    contract = load_contract(DEFAULT_CONTRACT)
    splits = split_by_time(frame)
    model = train_model(splits, contract, TrainParams(max_epochs=3, accelerator="gpu"))
    assert model.device.startswith("cuda")
    path = export_onnx(model, contract, tmp_path / "model.onnx")
    report = verify_export(path, model, contract, splits.holdout)
    _, device = create_session(path)
    assert report.max_abs_diff <= 1e-4
    assert device == report.device
