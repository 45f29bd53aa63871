"""Decide whether to retrain the model from drift and live performance, and say why in one sentence.

Pure: the caller passes the current window's drift figures, the drift shares of the windows before
it, the live metric and the training history, and stores what it needs for the next call.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.training.evaluate import HIGHER_IS_BETTER, metric_delta

Reason = Literal["drift", "performance"]
EVENTS: dict[str, str] = {
    "drift": "mlops.model.drift-detected",
    "performance": "mlops.model.performance-degraded",
}


DEFAULT_COOLDOWN = dt.timedelta(hours=24)


@pydantic_dataclass(frozen=True)
class RetrainThresholds:
    """When drift or a performance drop warrants retraining, and what holds it back.

    `drift_share` default: the simulator's covariate shift moves 3 of its 11 features; 0.15 asks
    for 2 of them, in `consecutive_windows` windows in a row (calibrated in
    tests/unit/test_detection_quality.py). The bounds are checked in `__post_init__`, to say what
    is wrong in words; `json_schema_extra` shows the same bounds in forms built from the schema.
    """

    drift_share: float = Field(
        0.15,
        description="Share of features that must drift (0.15 = 2 of 11).",
        json_schema_extra={"exclusiveMinimum": 0, "maximum": 1},
    )
    consecutive_windows: int = Field(
        2, description="Windows in a row that must drift.", json_schema_extra={"minimum": 1}
    )
    max_metric_drop: float = Field(
        0.05,
        description="Allowed fall of the live metric below the champion's holdout.",
        json_schema_extra={"minimum": 0},
    )
    min_labelled_rows: int = Field(
        500, description="Labelled rows needed to judge.", json_schema_extra={"minimum": 0}
    )
    min_new_rows: int = Field(
        1000,
        description="New rows needed since the last training.",
        json_schema_extra={"minimum": 0},
    )

    def __post_init__(self) -> None:
        problems = [message for ok, message in self._checks() if not ok]
        if problems:
            raise ValueError("invalid retrain policy: " + "; ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (0 < self.drift_share <= 1, f"drift_share must be in (0, 1], got {self.drift_share}"),
            (self.consecutive_windows >= 1, "consecutive_windows must be >= 1"),
            (self.max_metric_drop >= 0, "max_metric_drop must be >= 0"),
            (self.min_labelled_rows >= 0 and self.min_new_rows >= 0, "row minimums >= 0"),
        ]


@pydantic_dataclass(frozen=True)
class RetrainPolicy(RetrainThresholds):
    """The thresholds, plus the metric the live performance is judged on and the cooldown."""

    metric: str = Field("roc_auc", description="Metric the live performance is judged on.")
    cooldown: dt.timedelta = Field(
        DEFAULT_COOLDOWN, description="No retrain this soon after the last."
    )

    def _checks(self) -> list[tuple[bool, str]]:
        checks = super()._checks()
        checks.insert(2, (self.metric in HIGHER_IS_BETTER, f"unknown metric {self.metric!r}"))
        return checks


@dataclass(frozen=True)
class PolicyInputs:
    """What the monitor measured, and when the model was last retrained.

    `previous_drift_shares` are the shares of drifting features of the windows before the current
    one, oldest first. `metric_value` is the live metric on `labelled_rows` labelled served rows,
    `champion_metric` the champion's holdout figure. `new_rows` counts rows since the last training.
    """

    now: dt.datetime
    new_rows: int
    n_features: int = 0
    n_drifted: int = 0
    previous_drift_shares: tuple[float, ...] = ()
    metric_value: float | None = None
    labelled_rows: int = 0
    champion_metric: float | None = None
    last_retrain: dt.datetime | None = None

    @property
    def drift_share(self) -> float:
        return self.n_drifted / self.n_features if self.n_features else 0.0


@dataclass(frozen=True)
class RetrainDecision:
    """The verdict: retrain or not, which trigger, which event to emit, and one sentence why."""

    retrain: bool
    reason: Reason | None
    event: str | None
    explanation: str
    drift_share: float
    triggers: tuple[Reason, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "triggers": list(self.triggers)}


def decide_retrain(inputs: PolicyInputs, policy: RetrainPolicy) -> RetrainDecision:
    """Decide whether to retrain; performance outranks drift when both fire."""
    drift_fired, drift_text = _drift_clause(inputs, policy)
    perf_fired, perf_text = _performance_clause(inputs, policy)
    fired_clauses: list[tuple[Reason, str]] = []
    if perf_fired:
        fired_clauses.append(("performance", perf_text))
    if drift_fired:
        fired_clauses.append(("drift", drift_text))
    triggers = tuple(reason for reason, _ in fired_clauses)
    fired = " and ".join(text for _, text in fired_clauses)
    blocker = _blocker(inputs, policy)
    if not triggers:
        explanation = f"retrain: no, because {drift_text} and {perf_text}"
    elif blocker:
        explanation = f"retrain: no: {fired}, but {blocker}"
    else:
        explanation = f"retrain: yes, because {fired}"
    reason = triggers[0] if triggers and not blocker else None
    return RetrainDecision(
        retrain=reason is not None,
        reason=reason,
        event=EVENTS[reason] if reason else None,
        explanation=explanation,
        drift_share=inputs.drift_share,
        triggers=triggers,
    )


def _drift_clause(inputs: PolicyInputs, policy: RetrainPolicy) -> tuple[bool, str]:
    """Tell whether drift fired, and describe the drift of the recent windows."""
    if inputs.n_features == 0:
        return False, "no features were tested for drift"
    share, threshold, needed = inputs.drift_share, policy.drift_share, policy.consecutive_windows
    counted = f"{inputs.n_drifted} of {inputs.n_features} features drifted"
    if share < threshold:
        return False, f"only {counted} ({share:.0%} < {threshold:.0%})"
    counted = f"{counted} ({share:.0%} >= {threshold:.0%})"
    if needed == 1:
        return True, f"{counted} in the current window"
    streak = 1
    for previous in reversed(inputs.previous_drift_shares[-(needed - 1) :]):
        if previous < threshold:
            break
        streak += 1
    if streak < needed:
        return False, f"{counted} but in only {streak} of the {needed} consecutive windows required"
    return True, f"{counted} in {needed} consecutive windows"


def _performance_clause(inputs: PolicyInputs, policy: RetrainPolicy) -> tuple[bool, str]:
    """Tell whether the live metric fell too far below the champion's, and describe it."""
    metric, live, champion = policy.metric, inputs.metric_value, inputs.champion_metric
    if live is None or inputs.labelled_rows == 0:
        return False, f"no labelled rows yet to measure {metric}"
    if not math.isfinite(live):
        return False, f"{metric} is undefined on the {inputs.labelled_rows} labelled rows"
    if inputs.labelled_rows < policy.min_labelled_rows:
        return False, (
            f"{metric} is not judged on only {inputs.labelled_rows} labelled rows "
            f"(< {policy.min_labelled_rows})"
        )
    if champion is None:
        return False, f"{metric} {_num(live)} has no champion holdout figure to compare with"
    drop = -metric_delta(metric, live, champion)
    direction = "below" if HIGHER_IS_BETTER[metric] else "above"
    if drop > policy.max_metric_drop:
        return True, (
            f"{metric} {_num(live)} on {inputs.labelled_rows} labelled rows is {_num(drop)} "
            f"{direction} the champion's {_num(champion)} "
            f"(more than {_num(policy.max_metric_drop)})"
        )
    return False, (
        f"{metric} {_num(live)} is within {_num(policy.max_metric_drop)} "
        f"of the champion's {_num(champion)}"
    )


def _blocker(inputs: PolicyInputs, policy: RetrainPolicy) -> str:
    """Say what holds a retrain back (cooldown, too little new data), or return an empty string."""
    if inputs.last_retrain is not None:
        # A window that ends before the last registration (replayed or late traffic) counts as
        # "just retrained", not as a negative age that no cooldown could clear.
        since = max(inputs.now - inputs.last_retrain, dt.timedelta(0))
        if policy.cooldown > dt.timedelta(0) and since < policy.cooldown:
            return (
                f"the last retrain was {_duration(since)} ago, "
                f"within the {_duration(policy.cooldown)} cooldown"
            )
    if inputs.new_rows < policy.min_new_rows:
        return f"only {inputs.new_rows} new rows since the last training (< {policy.min_new_rows})"
    return ""


def _num(value: float) -> str:
    """Write a metric value with three significant digits (thousands separated when large)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _duration(span: dt.timedelta) -> str:
    """Write a duration the way people say it: 45 min, 3 h, 2 d."""
    minutes = max(span.total_seconds(), 0) / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} d"
