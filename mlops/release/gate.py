"""Decide whether a challenger may replace the champion, and explain the decision."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.training.evaluate import HIGHER_IS_BETTER, PRIMARY_METRIC, decision_metric, metric_delta

DEFAULT_FLOORS = {"roc_auc": 0.70, "macro_f1": 0.50, "r2": 0.0}


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class GatePolicy:
    """Thresholds a challenger must clear.

    `floor` is an absolute bound on the metric (a minimum when higher is better, a maximum when
    lower is better); `max_regression` is how much worse than the champion it may be, in metric
    units, on the same holdout. Binary models pass a second check: their thresholded metric (the
    one their threshold objective tunes) may not be more than `max_decision_regression` below
    the champion's, each model predicting with its own threshold. A thresholded metric is noisy
    on a small holdout (F1 on 90 positives moves by 0.05 from one sample to the next), so the
    allowed loss is the larger of that margin and two standard errors of the metric on the
    holdout: the gate refuses only a loss the holdout can tell from noise.
    """

    metric: str | None = Field(
        None, description="Gate metric (default: roc_auc, macro_f1 or r2 by task)."
    )
    floor: float | None = Field(
        None, description="Absolute bound on the metric (default: 0.70 AUC, 0.50 F1, 0.0 R2)."
    )
    max_regression: float = Field(
        0.005, ge=0, description="How much worse than the champion it may be, in metric units."
    )
    max_decision_regression: float = Field(
        0.02,
        ge=0,
        description="Binary models: how much lower than the champion's its thresholded metric "
        "(accuracy, F1 or balanced accuracy, as its threshold objective says) may be, each model "
        "at its own decision threshold.",
    )

    def resolved(self, task: str) -> GatePolicy:
        """Fill the metric and floor defaults for a task."""
        metric = self.metric or PRIMARY_METRIC[task]
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown gate metric {metric!r}; known: {sorted(HIGHER_IS_BETTER)}")
        floor = self.floor if self.floor is not None else DEFAULT_FLOORS.get(metric)
        return GatePolicy(metric, floor, self.max_regression, self.max_decision_regression)


@dataclass(frozen=True)
class ThresholdedScores:
    """The second check's inputs: one thresholded metric, each model at its own threshold."""

    metric: str
    challenger: float
    champion: float | None  # None: no champion to compare with
    rows: int = 0  # rows the metric rests on (positives for F1); 0: no noise band

    def noise(self) -> float:
        """Two standard errors of the metric on `rows` rows (0 without rows)."""
        if self.rows <= 0:
            return 0.0
        value = min(max(self.champion if self.champion is not None else self.challenger, 0.0), 1.0)
        return 2.0 * math.sqrt(value * (1.0 - value) / self.rows)


@dataclass(frozen=True)
class GateDecision:
    """The verdict and every number behind it (`decision_*`: the thresholded check, binary only)."""

    promote: bool
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None
    delta: float | None
    floor: float | None
    max_regression: float
    floor_passed: bool
    regression_passed: bool
    verdict: str
    decision_metric: str | None = None  # None: no thresholded check (multiclass, regression)
    decision_challenger: float | None = None
    decision_champion: float | None = None
    decision_delta: float | None = None
    max_decision_regression: float | None = None  # the loss allowed: margin or noise, the larger
    decision_passed: bool = True

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def thresholded_scores(
    manifest: dict[str, Any],
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    *,
    rows: int = 0,
    positives: int = 0,
) -> ThresholdedScores | None:
    """Return the second check's inputs for a binary challenger (None for other tasks).

    The metric is the one the challenger's threshold objective tunes (accuracy for a manifest
    without one); `challenger` and `champion` are each model's metrics at its own threshold.
    `rows` and `positives` count the holdout, for the noise band (F1 rests on the positives,
    balanced accuracy on the smaller class, accuracy on every row).
    """
    if manifest.get("task") != "binary":
        return None
    metric = decision_metric(manifest.get("threshold_objective"))
    if metric not in challenger:
        return None
    support = {"f1": positives, "balanced_accuracy": min(positives, rows - positives)}
    return ThresholdedScores(
        metric, challenger[metric], (champion or {}).get(metric), support.get(metric, rows)
    )


def decide(
    challenger: float,
    champion: float | None,
    policy: GatePolicy,
    *,
    challenger_version: str,
    champion_version: str | None = None,
    thresholded: ThresholdedScores | None = None,
) -> GateDecision:
    """Compare challenger and champion scores (same holdout) against the policy.

    `thresholded` adds the binary check on the thresholded metric; None leaves it out.
    """
    assert policy.metric is not None
    metric, higher = policy.metric, HIGHER_IS_BETTER[policy.metric]
    floor_passed = policy.floor is None or (
        challenger >= policy.floor if higher else challenger <= policy.floor
    )
    delta = None if champion is None else metric_delta(metric, challenger, champion)
    regression_passed = delta is None or delta >= -policy.max_regression
    second = _thresholded_fields(thresholded, policy)
    decision = GateDecision(
        promote=floor_passed and regression_passed and second["decision_passed"],
        metric=metric,
        challenger=challenger,
        champion=champion,
        champion_version=champion_version,
        delta=delta,
        floor=policy.floor,
        max_regression=policy.max_regression,
        floor_passed=floor_passed,
        regression_passed=regression_passed,
        verdict="",
        **second,
    )
    return replace(decision, verdict=_verdict(decision, challenger_version, higher))


def _thresholded_fields(scores: ThresholdedScores | None, policy: GatePolicy) -> dict[str, Any]:
    if scores is None:
        return {"decision_passed": True}
    delta = None
    if scores.champion is not None:
        delta = metric_delta(scores.metric, scores.challenger, scores.champion)
    allowed = max(policy.max_decision_regression, scores.noise())
    return {
        "decision_metric": scores.metric,
        "decision_challenger": scores.challenger,
        "decision_champion": scores.champion,
        "decision_delta": delta,
        "max_decision_regression": allowed,
        "decision_passed": delta is None or delta >= -allowed,
    }


def _verdict(d: GateDecision, version: str, higher: bool) -> str:
    bound = "at least" if higher else "at most"
    failures = _failures(d, bound)
    if failures:
        return f"{version} is not promoted: " + "; and ".join(failures) + "."
    if d.champion is None:
        floor = f"clears the floor ({bound} {d.floor})" if d.floor is not None else ""
        return (
            f"{version} is promoted as the first champion: its {d.metric} {d.challenger:.4f} "
            f"{floor or 'has no floor to clear'}."
        )
    assert d.delta is not None
    second = ""
    if d.decision_delta is not None:
        second = (
            f"; its {d.decision_metric} at its own threshold {d.decision_challenger:.4f} vs "
            f"{d.decision_champion:.4f} ({d.decision_delta:+.4f}, allowed regression "
            f"{d.max_decision_regression:.4f})"
        )
    return (
        f"{version} is promoted: its {d.metric} {d.challenger:.4f} vs champion "
        f"{d.champion_version} {d.champion:.4f} on the same holdout ({d.delta:+.4f}, allowed "
        f"regression {d.max_regression:.4f}){second}."
    )


def _failures(d: GateDecision, bound: str) -> list[str]:
    """Return one clause per failed check, naming its metric, value and margin."""
    failures = []
    if not d.floor_passed:
        miss = abs(d.challenger - (d.floor or 0.0))
        failures.append(
            f"its {d.metric} {d.challenger:.4f} misses the floor ({bound} {d.floor:.4f}) "
            f"by {miss:.4f}"
        )
    if not d.regression_passed:
        assert d.delta is not None and d.champion is not None
        failures.append(
            f"its {d.metric} {d.challenger:.4f} is {abs(d.delta):.4f} worse than champion "
            f"{d.champion_version} ({d.champion:.4f}) on the same holdout, more than the allowed "
            f"{d.max_regression:.4f}"
        )
    if not d.decision_passed:
        assert d.decision_delta is not None and d.decision_champion is not None
        failures.append(
            f"its {d.decision_metric} at its own threshold {d.decision_challenger:.4f} is "
            f"{abs(d.decision_delta):.4f} worse than champion {d.champion_version}'s "
            f"({d.decision_champion:.4f}) on the same holdout, more than the allowed "
            f"{d.max_decision_regression:.4f}"
        )
    return failures


def decision_markdown(decision: GateDecision) -> str:
    """Render the decision as a markdown table plus the one-sentence verdict."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    def result(passed: bool) -> str:
        return "pass" if passed else "FAIL"

    d = decision
    floor_rule = "n/a" if d.floor is None else f"floor {d.floor:.4f}"
    rows = [
        "| metric | champion | challenger | delta | threshold | result |",
        "|---|---|---|---|---|---|",
        f"| {d.metric} | {fmt(d.champion)} | {fmt(d.challenger)} | "
        f"{fmt(d.delta)} | {floor_rule} | {result(d.floor_passed)} |",
        f"| {d.metric} vs champion | {fmt(d.champion)} | {fmt(d.challenger)} | {fmt(d.delta)} | "
        f"regression <= {d.max_regression:.4f} | {result(d.regression_passed)} |",
    ]
    if d.decision_metric is None:
        rows.append("| thresholded metric vs champion | n/a | n/a | n/a | n/a | n/a |")
    else:
        rows.append(
            f"| {d.decision_metric} at own threshold vs champion | {fmt(d.decision_champion)} | "
            f"{fmt(d.decision_challenger)} | {fmt(d.decision_delta)} | "
            f"regression <= {fmt(d.max_decision_regression)} | {result(d.decision_passed)} |"
        )
    verdict = "PROMOTE" if d.promote else "KEEP CHAMPION"
    return f"## Gate decision: {verdict}\n\n" + "\n".join(rows) + f"\n\n**{d.verdict}**\n"
