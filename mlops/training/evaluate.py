"""Metrics overall and per slice, from raw model outputs (probabilities or values)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlops.contract.spec import Contract

PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "r2"}
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "f1": True,
    "macro_f1": True,
    "r2": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
}


def best_threshold(y01: np.ndarray, p: np.ndarray) -> float:
    """Return the probability cut that maximises F1 (0.5 when there are no positives)."""
    if y01.sum() == 0 or y01.sum() == len(y01):
        return 0.5
    precision, recall, cuts = skm.precision_recall_curve(y01, p)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(cuts[int(np.argmax(f1[:-1]))])


def class_indices(y: pd.Series, classes: Sequence[Any]) -> np.ndarray:
    """Map original labels to positions in `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[v.item() if hasattr(v, "item") else v] for v in y], dtype=np.int64)


def compute_metrics(
    task: str,
    y: pd.Series,
    output: np.ndarray,
    classes: Sequence[Any] | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Return the task's metrics for true labels `y` and model `output`."""
    if task == "regression":
        truth = y.astype("float64").to_numpy()
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(truth, output))),
            "mae": float(skm.mean_absolute_error(truth, output)),
            "r2": float(skm.r2_score(truth, output)) if len(truth) > 1 else float("nan"),
        }
    assert classes is not None
    codes = class_indices(y, classes)
    probs = np.clip(output, 1e-7, 1 - 1e-7)
    probs = probs / probs.sum(axis=1, keepdims=True)  # clipping must not unbalance the rows
    labels = list(range(len(classes)))
    result = {"log_loss": float(skm.log_loss(codes, probs, labels=labels))}
    if task == "binary":
        pred = (output[:, 1] >= threshold).astype(np.int64)
        both = len(np.unique(codes)) == 2
        result |= {
            "roc_auc": float(skm.roc_auc_score(codes, output[:, 1])) if both else float("nan"),
            "pr_auc": float(skm.average_precision_score(codes, output[:, 1])) if both else 0.0,
            "accuracy": float(skm.accuracy_score(codes, pred)),
            "f1": float(skm.f1_score(codes, pred, zero_division=0)),
        }
    else:
        pred = output.argmax(axis=1)
        result |= {
            "accuracy": float(skm.accuracy_score(codes, pred)),
            "macro_f1": float(
                skm.f1_score(codes, pred, average="macro", labels=labels, zero_division=0)
            ),
        }
    return result


def slice_metrics(
    frame: pd.DataFrame,
    contract: Contract,
    output: np.ndarray,
    classes: Sequence[Any] | None = None,
    threshold: float = 0.5,
    *,
    min_rows: int = 30,
) -> list[dict[str, Any]]:
    """Return metrics per value of each `slice: true` column (slices under `min_rows` skipped)."""
    rows = []
    target = contract.target.name
    for column in contract.slice_columns:
        values = frame[column].astype(object).where(frame[column].notna(), "<null>")
        for value, positions in values.groupby(values, sort=True).indices.items():
            if len(positions) < min_rows:
                continue
            part = frame.iloc[positions]
            found = compute_metrics(
                contract.task, part[target], output[positions], classes, threshold
            )
            rows.append({"slice": column, "value": str(value), "rows": len(positions), **found})
    return rows


def metric_delta(metric: str, challenger: float, champion: float) -> float:
    """Return the improvement of challenger over champion (positive is better)."""
    sign = 1.0 if HIGHER_IS_BETTER.get(metric, True) else -1.0
    return sign * (challenger - champion)
