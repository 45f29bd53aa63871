"""Training and inference on a GPU, when one is present (skipped otherwise)."""

from __future__ import annotations

import pytest
import torch

from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, labelled_rows
from mlops.inference.sessions import create_session
from mlops.registry.store import Registry
from mlops.release.build import train_and_register
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU with CUDA"),
]


def test_training_runs_on_the_gpu_and_the_export_keeps_parity_under_cuda(tmp_path) -> None:
    rows = labelled_rows(SimulationConfig(days=10, rows_per_day=1000, scenario="stable"))
    registry = Registry(str(tmp_path / "registry"))

    built = train_and_register(
        registry, "gpu-test", load_contract(DEFAULT_CONTRACT), rows,
        TrainParams(max_epochs=3, accelerator="gpu"), actor="tests", reason="gpu test",
    )  # fmt: skip

    assert built.model.device.startswith("cuda")
    _, device = create_session(registry.read_onnx("gpu-test", built.version.version))
    assert built.verification.max_abs_diff <= 1e-4
    assert device == built.verification.device
