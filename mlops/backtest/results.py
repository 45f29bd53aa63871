"""Summaries of a replayed policy: the metrics reported and the figures per policy."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from mlops.backtest.policies import PolicySpec
from mlops.monitoring.thresholds import RetrainPolicy
from mlops.training.evaluate import PRIMARY_METRIC

THRESHOLDED = {
    "binary": ("accuracy", "balanced_accuracy", "f1"),
    "multiclass": ("accuracy",),
    "regression": ("rmse", "mae"),
}


def report_metrics(task: str) -> list[str]:
    """The primary metric first, then the thresholded ones."""
    primary = PRIMARY_METRIC[task]
    return [primary, *(m for m in THRESHOLDED[task] if m != primary)]


def policy_dict(policy: RetrainPolicy | None) -> dict[str, Any]:
    """The retrain policy's thresholds, JSON-ready (the cooldown in hours)."""
    if policy is None:
        return {}
    fields = ("drift_share", "consecutive_windows", "max_metric_drop", "min_labelled_rows",
              "min_new_rows", "use_estimate", "metric")  # fmt: skip
    return {
        **{f: getattr(policy, f) for f in fields},
        "cooldown_hours": policy.cooldown / dt.timedelta(hours=1),
    }


def summarize(
    spec: PolicySpec, batches: list[dict[str, Any]], compute_s: float, metrics: list[str]
) -> dict[str, Any]:
    """One policy's figures: means (overall, second half, per metric), counts, compute, batches.

    `retrain_gain` is the mean gain of the promotions, each measured on the batch after it, where
    the new champion and the one it replaced both predicted the same rows (positive: it paid).
    """
    half = batches[len(batches) // 2 :]
    return {
        "description": spec.description,
        "mean": _mean(b["metric"] for b in batches),
        "mean_second_half": _mean(b["metric"] for b in half),
        "means": {m: _mean(b.get(m) for b in batches) for m in metrics},
        "retrains": sum(b["retrained"] for b in batches),
        "promotions": sum(b["promoted"] for b in batches),
        "refused": sum(b["refused"] for b in batches),
        "failed": sum(b["failed"] for b in batches),
        "data_quality_incidents": sum(bool(b.get("data_quality")) for b in batches),
        "retrain_gain": _mean((b.get("outcome") or {}).get("gain") for b in batches),
        "compute_s": round(compute_s, 2),
        "batches": batches,
    }


def _mean(values: Any) -> float | None:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return round(sum(finite) / len(finite), 6) if finite else None
