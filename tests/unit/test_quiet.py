"""Training and export print only what a user can act on (the device), not libraries' noise."""

from __future__ import annotations

import logging
import warnings

import pytest

from mlops.release.export import export_onnx
from mlops.training.evaluate import compute_metrics
from mlops.training.train import split_by_time, train_model
from tests.support.synthetic import FAST, make_contract, make_frame

NOISE = ("torchvision", "LeafSpec", "Tip:", "litlogger", "will not be used", "many workers")


def test_training_and_export_emit_no_known_library_noise(tmp_path, caplog) -> None:
    contract = make_contract("binary")
    splits = split_by_time(make_frame("binary", 1200, seed=3))

    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO):
        warnings.simplefilter("always")
        model = train_model(splits, contract, FAST)
        export_onnx(model, contract, tmp_path / "model.onnx")

    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert [line for line in said if any(n in line for n in NOISE)] == []
    assert any("GPU available" in r.getMessage() for r in caplog.records)  # the device stays


def test_metrics_on_clipped_probabilities_raise_no_warning() -> None:
    import numpy as np
    import pandas as pd

    output = np.array([[1.0, 0.0], [0.0, 1.0], [0.3, 0.7]])  # exact 0/1 as a model may give
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = compute_metrics("binary", pd.Series([0, 1, 1]), output, [0, 1])
    assert metrics["log_loss"] == pytest.approx((0 + 0 - np.log(0.7)) / 3, abs=1e-6)
