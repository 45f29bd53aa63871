"""Score raw rows with a registered ONNX model, as the gate and backtests do (no torch import)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.inference.feed import onnx_feed
from mlops.inference.sessions import create_session, run_session
from mlops.training.evaluate import compute_metrics


class IncompatibleModelError(ValueError):
    """A model whose inputs the current contract's rows cannot feed."""


def predict_onnx(
    model_bytes: bytes, frame: pd.DataFrame, contract: Contract, *, prefer_gpu: bool = True
) -> np.ndarray:
    """Run an ONNX model on raw rows and return its output."""
    session, _ = create_session(model_bytes, prefer_gpu=prefer_gpu)
    wanted = {i.name for i in session.get_inputs()}
    feed = onnx_feed(frame, contract)
    missing = sorted(wanted - set(feed))
    if missing:
        raise IncompatibleModelError(f"the model needs inputs the contract lacks: {missing}")
    return run_session(session, {k: v for k, v in feed.items() if k in wanted})


def score_onnx(
    model_bytes: bytes, manifest: dict[str, Any], frame: pd.DataFrame, contract: Contract
) -> dict[str, float]:
    """Return the metrics of a registered model on labelled raw rows."""
    output = predict_onnx(model_bytes, frame, contract)
    classes = manifest.get("classes") or None
    return compute_metrics(
        manifest["task"],
        frame[contract.target.name],
        output,
        classes,
        manifest.get("decision_threshold", 0.5),
    )
