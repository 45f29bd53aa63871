"""Decide whether a challenger may replace the champion, and explain the decision."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.training.evaluate import HIGHER_IS_BETTER, PRIMARY_METRIC, metric_delta

DEFAULT_FLOORS = {"roc_auc": 0.70, "macro_f1": 0.50, "r2": 0.0}


@pydantic_dataclass(frozen=True)
class GatePolicy:
    """Thresholds a challenger must clear.

    `floor` is an absolute bound on the metric (a minimum when higher is better, a maximum when
    lower is better); `max_regression` is how much worse than the champion it may be, in metric
    units, on the same holdout.
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

    def resolved(self, task: str) -> GatePolicy:
        """Fill the metric and floor defaults for a task."""
        metric = self.metric or PRIMARY_METRIC[task]
        if metric not in HIGHER_IS_BETTER:
            raise ValueError(f"unknown gate metric {metric!r}; known: {sorted(HIGHER_IS_BETTER)}")
        floor = self.floor if self.floor is not None else DEFAULT_FLOORS.get(metric)
        return GatePolicy(metric, floor, self.max_regression)


@dataclass(frozen=True)
class GateDecision:
    """The verdict and every number behind it."""

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

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return asdict(self)


def decide(
    challenger: float,
    champion: float | None,
    policy: GatePolicy,
    *,
    challenger_version: str,
    champion_version: str | None = None,
) -> GateDecision:
    """Compare challenger and champion scores (same holdout) against the policy."""
    assert policy.metric is not None
    metric, higher = policy.metric, HIGHER_IS_BETTER[policy.metric]
    floor_passed = policy.floor is None or (
        challenger >= policy.floor if higher else challenger <= policy.floor
    )
    delta = None if champion is None else metric_delta(metric, challenger, champion)
    regression_passed = delta is None or delta >= -policy.max_regression
    promote = floor_passed and regression_passed
    return GateDecision(
        promote=promote,
        metric=metric,
        challenger=challenger,
        champion=champion,
        champion_version=champion_version,
        delta=delta,
        floor=policy.floor,
        max_regression=policy.max_regression,
        floor_passed=floor_passed,
        regression_passed=regression_passed,
        verdict=_verdict(
            challenger_version,
            champion_version,
            metric,
            higher,
            challenger,
            champion,
            delta,
            policy,
            floor_passed,
            regression_passed,
        ),
    )


def _verdict(
    version: str,
    champion_version: str | None,
    metric: str,
    higher: bool,
    challenger: float,
    champion: float | None,
    delta: float | None,
    policy: GatePolicy,
    floor_passed: bool,
    regression_passed: bool,
) -> str:
    bound = "at least" if higher else "at most"
    if not floor_passed:
        miss = abs(challenger - (policy.floor or 0.0))
        return (
            f"{version} is not promoted: its {metric} {challenger:.4f} misses the floor "
            f"({bound} {policy.floor:.4f}) by {miss:.4f}."
        )
    if not regression_passed:
        assert delta is not None and champion is not None
        return (
            f"{version} is not promoted: its {metric} {challenger:.4f} is {abs(delta):.4f} worse "
            f"than champion {champion_version} ({champion:.4f}) on the same holdout, more than the "
            f"allowed {policy.max_regression:.4f}."
        )
    if champion is None:
        floor = f"clears the floor ({bound} {policy.floor})" if policy.floor is not None else ""
        return (
            f"{version} is promoted as the first champion: its {metric} {challenger:.4f} "
            f"{floor or 'has no floor to clear'}."
        )
    assert delta is not None
    return (
        f"{version} is promoted: its {metric} {challenger:.4f} vs champion {champion_version} "
        f"{champion:.4f} on the same holdout ({delta:+.4f}, allowed regression "
        f"{policy.max_regression:.4f})."
    )


def decision_markdown(decision: GateDecision) -> str:
    """Render the decision as a markdown table plus the one-sentence verdict."""

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f}"

    floor_rule = "n/a" if decision.floor is None else f"floor {decision.floor:.4f}"
    rows = [
        "| metric | champion | challenger | delta | threshold | result |",
        "|---|---|---|---|---|---|",
        f"| {decision.metric} | {fmt(decision.champion)} | {fmt(decision.challenger)} | "
        f"{fmt(decision.delta)} | {floor_rule} | {'pass' if decision.floor_passed else 'FAIL'} |",
        f"| {decision.metric} vs champion | {fmt(decision.champion)} | "
        f"{fmt(decision.challenger)} | {fmt(decision.delta)} | "
        f"regression <= {decision.max_regression:.4f} | "
        f"{'pass' if decision.regression_passed else 'FAIL'} |",
    ]
    verdict = "PROMOTE" if decision.promote else "KEEP CHAMPION"
    return f"## Gate decision: {verdict}\n\n" + "\n".join(rows) + f"\n\n**{decision.verdict}**\n"
