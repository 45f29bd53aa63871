"""Metrics overall and per slice, from raw model outputs (probabilities or values)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from mlops.contract.spec import Contract, parse_threshold_objective

PRIMARY_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "r2"}
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "f1": True,
    "macro_f1": True,
    "r2": True,
    "log_loss": False,
    "rmse": False,
    "mae": False,
}
RARE_POSITIVE_SHARE = 0.2  # below this training share of positives, `auto` means F1


def best_threshold(y01: np.ndarray, p: np.ndarray) -> float:
    """Return the probability cut that maximises F1 (0.5 when there are no positives).

    A plain argmax: it follows the validation split's noise. Training uses `choose_threshold`.
    """
    if y01.sum() == 0 or y01.sum() == len(y01):
        return 0.5
    precision, recall, cuts = skm.precision_recall_curve(y01, p)
    f1 = 2 * precision * recall / np.clip(precision + recall, 1e-12, None)
    return float(cuts[int(np.argmax(f1[:-1]))])


def resolve_objective(objective: str, train_positive_rate: float) -> str:
    """Return the threshold objective `auto` stands for; any other objective as given.

    `auto` is F1 when positives are rare in the training rows (share < 0.2), else accuracy. A
    network trained on log loss outputs probabilities, and for probabilities 0.5 is the cut that
    maximises accuracy: on classes of comparable size accuracy needs no tuning, and tuning only
    adds the validation split's noise. With rare positives, accuracy rewards predicting the
    majority class everywhere, and F1 (precision and recall on the positives) is what users want.
    """
    objective = parse_threshold_objective(objective)
    if objective != "auto":
        return objective
    return "f1" if train_positive_rate < RARE_POSITIVE_SHARE else "accuracy"


def decision_metric(objective: str | None) -> str:
    """Return the thresholded metric a resolved objective optimises: the gate and monitors watch it.

    A manifest without an objective (`None`) is watched on accuracy, as is a fixed cut.
    """
    if objective is None:
        return "accuracy"
    objective = parse_threshold_objective(objective)
    if objective == "auto":
        raise ValueError("the objective 'auto' has no metric until resolve_objective resolves it")
    return "accuracy" if objective.startswith("fixed:") else objective


def threshold_anchor(objective: str, train_positive_rate: float) -> float:
    """Return the cut that maximises a resolved objective for calibrated probabilities.

    0.5 for accuracy, the training positive rate for balanced accuracy (kept within
    [0.01, 0.99]). F1 has no such cut apart from the data (its best cut is half the best F1), so
    it anchors at 0.5 here and `choose_threshold` moves it to the middle of its near-optimal cuts.
    """
    if objective == "balanced_accuracy":
        return min(max(train_positive_rate, 0.01), 0.99)
    return 0.5


def choose_threshold(
    y01: np.ndarray, p: np.ndarray, objective: str, *, train_positive_rate: float
) -> float:
    """Return the decision threshold for `objective` from validation labels and probabilities.

    The objective is computed at every distinct cut; with b its best value, every cut scoring at
    least b - sqrt(b(1-b)/n) (one binomial standard error on n rows) is near-optimal, and the one
    closest to an anchor wins: 0.5 for accuracy, the training positive rate for balanced accuracy
    (the cut where calibrated probabilities maximise it), the middle of the near-optimal range for
    F1. A cut leaves its anchor only when the gain beats the noise of the validation split, so it
    stays put across retrains on data of the same kind. `fixed:<p>` returns p.
    """
    objective = resolve_objective(objective, train_positive_rate)
    if objective.startswith("fixed:"):
        return float(objective.removeprefix("fixed:"))
    y01, p = np.asarray(y01).astype(bool), np.asarray(p, dtype=np.float64)
    anchor = threshold_anchor(objective, train_positive_rate)
    if y01.all() or not y01.any():
        return anchor
    cuts, values = _objective_curve(y01, p, objective)
    best = float(values.max())
    enough = best - math.sqrt(best * (1.0 - best) / len(y01)) - 1e-12
    near = cuts[values >= enough]
    if objective == "f1":
        anchor = float(near.min() + near.max()) / 2
    chosen = p >= anchor
    at_anchor = _objective(
        np.array([(chosen & y01).sum()]), np.array([(chosen & ~y01).sum()]), y01, objective
    )
    if at_anchor[0] >= enough:
        return anchor
    return float(near[np.argmin(np.abs(near - anchor))])


def _objective_curve(
    y01: np.ndarray, p: np.ndarray, objective: str
) -> tuple[np.ndarray, np.ndarray]:
    """Return every distinct cut (midway between neighbouring scores) and the objective there."""
    order = np.argsort(-p, kind="stable")
    ranked, hits = p[order], y01[order]
    ends = np.r_[ranked[:-1] != ranked[1:], True]  # last row of each run of equal scores
    predicted = np.r_[0, np.flatnonzero(ends) + 1]  # rows predicted positive at each cut
    above, below = np.r_[1.0, ranked][predicted], np.r_[ranked, 0.0][predicted]
    cuts = (above + below) / 2
    valid = cuts > below  # e.g. no cut above a score of exactly 1 exists in [0, 1]
    tp = np.r_[0, np.cumsum(hits)][predicted]
    values = _objective(tp, predicted - tp, y01, objective)
    return cuts[valid], values[valid]


def _objective(tp: np.ndarray, fp: np.ndarray, y01: np.ndarray, objective: str) -> np.ndarray:
    positives = int(y01.sum())
    negatives = len(y01) - positives
    tn, fn = negatives - fp, positives - tp
    if objective == "accuracy":
        return (tp + tn) / len(y01)
    if objective == "balanced_accuracy":
        return (tp / positives + tn / negatives) / 2
    return 2 * tp / np.maximum(2 * tp + fp + fn, 1)


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
            "balanced_accuracy": _balanced_accuracy(codes, pred),
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


def _balanced_accuracy(codes: np.ndarray, pred: np.ndarray) -> float:
    """Mean recall over the classes present in `codes` (sklearn's, without its warning)."""
    return float(np.mean([(pred[codes == c] == c).mean() for c in np.unique(codes)]))


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
