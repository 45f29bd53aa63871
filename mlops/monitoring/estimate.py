"""Estimate a binary model's performance on unlabelled traffic from its own probabilities.

Confidence-based performance estimation (CBPE, as NannyML does it): if the model's probability p
of the positive class is calibrated, a row scored p is a positive with probability p. The expected
confusion matrix at every cut then follows from the probabilities alone, and with it the expected
ROC AUC and accuracy. The estimate sees what covariate shift does to the model (rows moving into
regions where it is unsure); it cannot see a change of concept (same inputs, other labels), which
only labels show.

Works on whylogs profiles (no rows): the distribution of `probability_<positive class>` of the
window and of the champion's reference profile. Both sides are estimated the same way, so a
calibration error common to both cancels out of the comparison the retrain policy makes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mlops.monitoring.profile import ProfileView, column_distribution

QUANTILES = [float(q) for q in np.linspace(0.0025, 0.9975, 400)]  # a pseudo-sample of the sketch
ESTIMABLE = ("roc_auc", "accuracy")


@dataclass(frozen=True)
class Estimate:
    """The metric estimated on the window and on the reference, by the same method."""

    metric: str
    window: float
    reference: float
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "window": round(self.window, 4),
            "reference": round(self.reference, 4),
            "rows": self.rows,
        }


def expected_roc_auc(p: np.ndarray) -> float:
    """Return the ROC AUC expected when each row is a positive with probability `p`."""
    p = np.sort(np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0))[::-1]
    positives, negatives = p.sum(), (1.0 - p).sum()
    if positives <= 0 or negatives <= 0:
        return float("nan")
    tpr = np.concatenate([[0.0], np.cumsum(p) / positives])
    fpr = np.concatenate([[0.0], np.cumsum(1.0 - p) / negatives])
    return float(np.trapezoid(tpr, fpr))


def expected_accuracy(p: np.ndarray, threshold: float = 0.5) -> float:
    """Return the accuracy expected at `threshold` when each row is positive with probability p."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if len(p) == 0:
        return float("nan")
    return float(np.where(p >= threshold, p, 1.0 - p).mean())


def estimate_window(
    reference: ProfileView, served: ProfileView, manifest: dict[str, Any], metric: str
) -> Estimate | None:
    """Estimate `metric` on the window and on the reference; None when it cannot be estimated.

    Only binary models with a profiled positive-class probability, and only ROC AUC and accuracy.
    """
    if manifest.get("task") != "binary" or metric not in ESTIMABLE:
        return None
    classes = list(manifest.get("classes") or [0, 1])
    column = f"probability_{classes[1]}"
    window, ref = column_distribution(served, column), column_distribution(reference, column)
    if window is None or ref is None or window.n == 0 or ref.n == 0:
        return None
    threshold = float(manifest.get("decision_threshold", 0.5))
    values = []
    for dist in (window, ref):
        sample = np.array(dist.quantiles(QUANTILES), dtype=np.float64)
        if metric == "roc_auc":
            values.append(expected_roc_auc(sample))
        else:
            values.append(expected_accuracy(sample, threshold))
    if not all(np.isfinite(values)):
        return None
    return Estimate(metric, values[0], values[1], window.n)
