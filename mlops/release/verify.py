"""Open ONNX Runtime sessions on the device really available, and verify an exported model."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd

from mlops.contract.spec import Contract
from mlops.inference.feed import onnx_feed
from mlops.inference.sessions import create_session, run_session
from mlops.training.train import TrainedModel, predict_torch

log = logging.getLogger(__name__)
UNSEEN = "__unseen_category__"


class ExportVerificationError(RuntimeError):
    """An exported model failed a check and must not be registered."""


@dataclass(frozen=True)
class VerificationReport:
    """What the export checks measured."""

    checker: str
    parity_rows: int
    max_abs_diff: float  # probabilities, or target standard deviations for regression
    tolerance: float
    oov_max_abs_diff: float
    p50_ms_batch1: float
    p50_ms_batch256: float
    providers: tuple[str, ...]
    device: str

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def verify_export(
    path: str | Path,
    model: TrainedModel,
    contract: Contract,
    rows: pd.DataFrame,
    *,
    min_rows: int = 1000,
    tolerance: float = 1e-4,
    prefer_gpu: bool = True,
) -> VerificationReport:
    """Check the file, its parity with PyTorch on up to 5,000 of `rows`, OOV handling and latency.

    Parity is about the export, not the model's quality: any rows of the window serve (callers
    pass the holdout first, then the other splits, so that small windows can be verified too).
    """
    onnx.checker.check_model(str(path), full_check=True)
    rows = rows.head(max(min_rows, 5000))
    if len(rows) < min_rows:
        raise ExportVerificationError(
            f"parity needs at least {min_rows} rows, the window has {len(rows)}"
        )
    session, device = create_session(path, prefer_gpu=prefer_gpu)
    # Regression values are compared in target standard deviations: float32 carries ~7 digits.
    scale = model.preprocessor.target.std if contract.task == "regression" else 1.0
    onnx_out = run_session(session, onnx_feed(rows, contract))
    diff = _max_diff(onnx_out, predict_torch(model, rows)) / scale
    unseen = rows.head(64).copy()
    for col in contract.categorical_features:
        unseen[col.name] = UNSEEN
    oov_diff = (
        _max_diff(run_session(session, onnx_feed(unseen, contract)), predict_torch(model, unseen))
        / scale
    )
    report = VerificationReport(
        checker="onnx.checker full_check passed",
        parity_rows=len(rows),
        max_abs_diff=diff,
        tolerance=tolerance,
        oov_max_abs_diff=oov_diff,
        p50_ms_batch1=_p50_ms(session, onnx_feed(rows.head(1), contract), repeats=200),
        p50_ms_batch256=_p50_ms(session, onnx_feed(repeat_rows(rows, 256), contract), repeats=30),
        providers=tuple(session.get_providers()),
        device=device,
    )
    if not diff <= tolerance or not oov_diff <= tolerance:
        raise ExportVerificationError(
            f"ONNX and PyTorch disagree: max |diff| {diff:.2e} on {len(rows)} rows, "
            f"{oov_diff:.2e} on unseen categories; tolerance is {tolerance:.0e}"
        )
    return report


def repeat_rows(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The first `n` rows of `frame` repeated as often as needed."""
    reps = -(-n // max(len(frame), 1))
    return pd.concat([frame] * reps, ignore_index=True).head(n)


def _max_diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        raise ExportVerificationError(f"ONNX output shape {a.shape} != PyTorch shape {b.shape}")
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)), initial=0.0))


def _p50_ms(session: Any, feed: dict[str, np.ndarray], *, repeats: int) -> float:
    run_session(session, feed)
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_session(session, feed)
        timings.append((time.perf_counter() - started) * 1000)
    return float(np.median(timings))
