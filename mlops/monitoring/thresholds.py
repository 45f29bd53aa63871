"""The retrain policy's thresholds: when drift or a performance drop warrants retraining, and
what holds it back (the decision itself is in `mlops.monitoring.policy`)."""

from __future__ import annotations

import datetime as dt

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.training.evaluate import HIGHER_IS_BETTER

DEFAULT_COOLDOWN = dt.timedelta(hours=24)


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
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
    use_estimate: bool = Field(
        True,
        description="Without enough labels, judge binary models by the performance their "
        "probabilities predict before falling back on drift.",
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


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
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
