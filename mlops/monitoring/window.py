"""What monitor-model measures on one window of served traffic; the backtest uses the same code.

A window is the whylogs profile of the served rows (features and model outputs, as serving logs
them) and the live performance on the rows whose labels arrived. From them and the champion's
reference profile come the drift and constraint reports, and the inputs of the retrain policy.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

from mlops.contract.spec import Contract
from mlops.monitoring.constraints import ConstraintReport, check_constraints
from mlops.monitoring.drift import DriftReport, feature_drift
from mlops.monitoring.estimate import Estimate
from mlops.monitoring.policy import PolicyInputs
from mlops.monitoring.profile import ProfileView, profile_summary
from mlops.training.change import recorded_change

BASELINE_WINDOWS = 3  # a champion's live baseline: the mean of its first 3 labelled windows


def assess_window(
    reference: ProfileView, served: ProfileView, contract: Contract
) -> tuple[DriftReport, ConstraintReport]:
    """Compare the window with the champion's reference profile; check the constraints."""
    drift = feature_drift(reference, served, contract)
    return drift, check_constraints(served, contract, reference=reference)


def served_rows(served: ProfileView) -> int:
    """Return the number of rows the window's profile counted."""
    counts = profile_summary(served)["count"]
    return int(counts.max()) if len(counts) else 0


def window_policy_inputs(
    *,
    now: dt.datetime,
    served: ProfileView,
    drift: DriftReport,
    performance: Sequence[dict[str, Any]],
    champion: str,
    metric: str,
    previous_drift_shares: Sequence[float],
    last_retrain: dt.datetime | None,
    new_rows: int | None = None,
    constraints: ConstraintReport | None = None,
    estimate: Estimate | None = None,
    refused_challengers: int = 0,
    live_baseline: float | None = None,
    manifest: dict[str, Any] | None = None,
) -> PolicyInputs:
    """Gather what the retrain policy needs about the champion's window.

    `performance` holds `performance_by_version` rows; only the champion's counts.
    `previous_drift_shares` are the champion's earlier windows, oldest first. `new_rows` counts the
    rows since the last training, which may span many windows (default: this window's rows).
    `constraints` (failed checks stop retraining), `estimate` (the metric the champion's
    probabilities predict), `refused_challengers` (since its promotion) and `live_baseline` (the
    champion's metric on its first windows with enough labels: `early_live_metric`) are
    optional. The champion's `manifest` tells whether a catch-up retrain applies to it
    (`catch_up_rows`).
    """
    live = next((p for p in performance if p["version"] == champion), None)
    return PolicyInputs(
        now=now,
        new_rows=served_rows(served) if new_rows is None else new_rows,
        n_features=drift.n_features,
        n_drifted=len(drift.drifted_features),
        previous_drift_shares=tuple(float(s) for s in previous_drift_shares),
        metric_value=live["live"] if live and live["metric"] == metric else None,
        labelled_rows=live["labelled_rows"] if live else 0,
        champion_metric=live["holdout"] if live else None,
        live_baseline=live_baseline,
        last_retrain=last_retrain,
        estimated_metric=estimate.window if estimate and estimate.metric == metric else None,
        estimated_reference=estimate.reference if estimate and estimate.metric == metric else None,
        failed_checks=failed_checks(constraints),
        refused_challengers=refused_challengers,
        catch_up_rows=catch_up_rows(manifest or {}),
    )


def catch_up_rows(manifest: dict[str, Any]) -> int | None:
    """Return the rows since a change of concept that a model learned, when it was trained on
    a change it found itself; None otherwise (no change, or one carried over from its
    predecessor: it was the catch-up)."""
    change = recorded_change(manifest)
    return None if change is None or change.inherited else change.rows_after


def early_live_metric(
    windows: Sequence[Sequence[dict[str, Any]]], champion: str, metric: str, min_rows: int
) -> float | None:
    """Return the champion's mean live `metric` over its first windows with `min_rows` labels.

    `windows` holds each earlier window's `performance_by_version` rows, oldest first. Up to
    `BASELINE_WINDOWS` of them are averaged: one window's figure has its sampling noise, and a
    lucky first window would make an ordinary one look like a fall.
    """
    found: list[float] = []
    for performance in windows:
        for row in performance:
            if (
                row.get("version") == champion
                and row.get("metric") == metric
                and int(row.get("labelled_rows") or 0) >= min_rows
                and row.get("live") is not None
                and math.isfinite(float(row["live"]))
            ):
                found.append(float(row["live"]))
        if len(found) >= BASELINE_WINDOWS:
            break
    return sum(found[:BASELINE_WINDOWS]) / len(found[:BASELINE_WINDOWS]) if found else None


def failed_checks(constraints: ConstraintReport | None) -> tuple[str, ...]:
    """Name each failed data check in a few words: column, check, what the window showed."""
    if constraints is None:
        return ()
    return tuple(f"{row.column} {row.constraint}: {row.observed}" for row in constraints.failures)
