"""Decide whether to retrain the model, on the best evidence the window has, and say why.

The evidence, best first: live performance on labelled rows; when labels are missing or too few,
the performance the model's own probabilities let us estimate (binary models); only when neither
exists, feature drift. Drift alone is not evidence of harm: on real data most features drift a
little in most windows while the model keeps its quality, so with labels (or an estimate) at hand
drift only explains. A window that fails its data checks never triggers a retrain (the model
would learn the broken feed): it raises a data-quality incident instead. After a challenger was
refused, the policy backs off: each refusal since the champion's promotion adds one more cooldown
and one more `min_new_rows` to wait for (up to 8 of each), so the same evidence does not buy the
same training again. The back-off is linear, not exponential: a challenger refused right after a
change of concept usually lacked rows of the new concept, and those arrive linearly with time.
It is waived while the metric has fallen by at least twice the allowed drop: that is no borderline
window that noise could explain, the champion is failing, and each window it keeps serving costs
more than the whole tolerance, far more than one more training.

Pure: the caller passes the current window's figures, the drift shares of the windows before it,
the live or estimated metric and the training history, and stores what it needs for the next call.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mlops.monitoring.thresholds import RetrainPolicy
from mlops.training.evaluate import HIGHER_IS_BETTER, metric_delta

Reason = Literal["performance", "estimated-performance", "drift", "data-quality"]
Evidence = Literal["labels", "estimate", "drift", "data-quality"]
EVENTS: dict[str, str] = {
    "drift": "mlops.model.drift-detected",
    "performance": "mlops.model.performance-degraded",
    "estimated-performance": "mlops.model.performance-degraded",
}  # the retrain events (the retrain trigger expects these)
EVIDENCE_REASON: dict[Evidence, Reason] = {
    "labels": "performance",
    "estimate": "estimated-performance",
    "drift": "drift",
    "data-quality": "data-quality",
}
DATA_QUALITY_EVENT = "mlops.model.data-quality-failed"  # an incident to fix, never a retrain
MAX_BACKOFF = 8  # at most 8x the cooldown and the new rows, after 7 refused challengers
SEVERE_DROP = 2.0  # a drop of this many times `max_metric_drop` waives the back-off


@dataclass(frozen=True)
class PolicyInputs:
    """What the monitor measured, and when the model was last retrained.

    `previous_drift_shares` are the shares of drifting features of the windows before the current
    one, oldest first. `metric_value` is the live metric on `labelled_rows` labelled served rows,
    `champion_metric` the champion's holdout figure, `live_baseline` its mean live metric on its
    first windows with enough labels (None before it has one). `estimated_metric` is the metric
    the model's probabilities let us expect on the window, `estimated_reference` the same
    estimate on its training rows. `failed_checks` names the data checks the window failed.
    `new_rows` counts rows since the last training; `refused_challengers` the challengers
    refused since the champion's promotion.
    """

    now: dt.datetime
    new_rows: int
    n_features: int = 0
    n_drifted: int = 0
    previous_drift_shares: tuple[float, ...] = ()
    metric_value: float | None = None
    labelled_rows: int = 0
    champion_metric: float | None = None
    live_baseline: float | None = None
    last_retrain: dt.datetime | None = None
    estimated_metric: float | None = None
    estimated_reference: float | None = None
    failed_checks: tuple[str, ...] = ()
    refused_challengers: int = 0

    @property
    def drift_share(self) -> float:
        return self.n_drifted / self.n_features if self.n_features else 0.0


@dataclass(frozen=True)
class RetrainDecision:
    """The verdict: retrain or not, on what evidence, which event to emit, and one sentence why.

    `triggers` lists every clause that fired (drift may fire without deciding); `reason` is the
    one that decided, `event` what to emit: a retrain event, or the data-quality incident.
    """

    retrain: bool
    reason: Reason | None
    event: str | None
    explanation: str
    drift_share: float
    triggers: tuple[Reason, ...] = ()
    evidence: Evidence = "drift"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {**asdict(self), "triggers": list(self.triggers)}


def decide_retrain(inputs: PolicyInputs, policy: RetrainPolicy) -> RetrainDecision:
    """Decide whether to retrain, on labels first, then estimated performance, then drift."""
    if inputs.failed_checks:
        return _data_quality(inputs)
    drift_fired, drift_text = _drift_clause(inputs, policy)
    evidence, fired, text = _evidence(inputs, policy, drift_fired, drift_text)
    reason = EVIDENCE_REASON[evidence]
    triggers: list[Reason] = [reason] if fired else []
    if drift_fired and evidence != "drift":
        triggers.append("drift")
    if evidence == "drift":
        because = text
    else:
        harmless = ", which alone is not evidence of harm" if drift_fired and not fired else ""
        because = f"{text}; drift: {drift_text}{harmless}"
    blocker = _blocker(inputs, policy, severe=_severe(inputs, policy, evidence)) if fired else ""
    if not fired:
        explanation = f"retrain: no, because {because}"
    elif blocker:
        explanation = f"retrain: no: {because}, but {blocker}"
    else:
        explanation = f"retrain: yes, because {because}"
    decided = reason if fired and not blocker else None
    return RetrainDecision(
        retrain=decided is not None,
        reason=decided,
        event=EVENTS[decided] if decided else None,
        explanation=explanation,
        drift_share=inputs.drift_share,
        triggers=tuple(triggers),
        evidence=evidence,
    )


def _data_quality(inputs: PolicyInputs) -> RetrainDecision:
    """A window that failed its data checks: an incident to fix, never a reason to retrain."""
    checks = "; ".join(inputs.failed_checks[:5])
    more = f" and {len(inputs.failed_checks) - 5} more" if len(inputs.failed_checks) > 5 else ""
    return RetrainDecision(
        retrain=False,
        reason="data-quality",
        event=DATA_QUALITY_EVENT,
        explanation=(
            f"retrain: no: the window failed {len(inputs.failed_checks)} data checks "
            f"({checks}{more}); a model retrained on a broken feed would learn the breakage, "
            "so fix the feed first"
        ),
        drift_share=inputs.drift_share,
        triggers=("data-quality",),
        evidence="data-quality",
    )


def _evidence(
    inputs: PolicyInputs, policy: RetrainPolicy, drift_fired: bool, drift_text: str
) -> tuple[Evidence, bool, str]:
    """Return the best evidence the window has, whether it calls for a retrain, and its words."""
    judged, perf_fired, perf_text = _performance_clause(inputs, policy)
    if judged:
        return "labels", perf_fired, perf_text
    estimated = _estimate_clause(inputs, policy) if policy.use_estimate else None
    if estimated is not None:
        return "estimate", estimated[0], f"{perf_text}, and {estimated[1]}"
    return "drift", drift_fired, f"{drift_text} and {perf_text}"


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


def _performance_clause(inputs: PolicyInputs, policy: RetrainPolicy) -> tuple[bool, bool, str]:
    """Tell whether labels judge the window, whether the live metric fell too far, and words."""
    metric, live = policy.metric, inputs.metric_value
    if live is None or inputs.labelled_rows == 0:
        return False, False, f"no labelled rows yet to measure {metric}"
    if not math.isfinite(live):
        return False, False, f"{metric} is undefined on the {inputs.labelled_rows} labelled rows"
    if inputs.labelled_rows < policy.min_labelled_rows:
        return (
            False,
            False,
            (
                f"{metric} is not judged on only {inputs.labelled_rows} labelled rows "
                f"(< {policy.min_labelled_rows})"
            ),
        )
    baseline, named = _baseline(inputs, metric)
    if baseline is None:
        return False, False, f"{metric} {_num(live)} has no champion holdout figure to compare with"
    drop = -metric_delta(metric, live, baseline)
    direction = "below" if HIGHER_IS_BETTER[metric] else "above"
    if drop > policy.max_metric_drop:
        return (
            True,
            True,
            (
                f"{metric} {_num(live)} on {inputs.labelled_rows} labelled rows is {_num(drop)} "
                f"{direction} {named} {_num(baseline)} "
                f"(more than {_num(policy.max_metric_drop)})"
            ),
        )
    if drop <= 0:
        return True, False, f"{metric} {_num(live)} is no worse than {named} {_num(baseline)}"
    return (
        True,
        False,
        (
            f"{metric} {_num(live)} is within {_num(policy.max_metric_drop)} "
            f"of {named} {_num(baseline)}"
        ),
    )


def _baseline(inputs: PolicyInputs, metric: str) -> tuple[float | None, str]:
    """Return what the live metric is held to, and its name: the better of the champion's
    holdout figure and its early live figure (its first labelled windows).

    The holdout figure alone understates a champion that was refitted on its holdout, or whose
    holdout came from another season than the traffic it serves: a fall from its first live
    figures would then have to be larger before it counts. The better of the two never makes the
    rule less sensitive; averaging the first windows keeps one lucky window from raising the bar.
    """
    holdout, early = inputs.champion_metric, inputs.live_baseline
    if early is None or not math.isfinite(early):
        return holdout, "the champion's"
    if holdout is None or not math.isfinite(holdout) or metric_delta(metric, early, holdout) > 0:
        return early, "the champion's first live windows'"
    return holdout, "the champion's"


def _estimate_clause(inputs: PolicyInputs, policy: RetrainPolicy) -> tuple[bool, str] | None:
    """Judge the estimated metric against its estimate on the training rows; None without one."""
    metric, window, reference = policy.metric, inputs.estimated_metric, inputs.estimated_reference
    if window is None or reference is None or not math.isfinite(window + reference):
        return None
    drop = -metric_delta(metric, window, reference)
    said = (
        f"the {metric} its probabilities predict is {_num(window)} "
        f"vs {_num(reference)} on its training rows"
    )
    if drop > policy.max_metric_drop:
        return True, f"{said} (down {_num(drop)}, more than {_num(policy.max_metric_drop)})"
    return False, f"{said} (within {_num(policy.max_metric_drop)})"


def _severe(inputs: PolicyInputs, policy: RetrainPolicy, evidence: Evidence) -> bool:
    """Tell whether the measured (or estimated) metric fell by `SEVERE_DROP` allowed drops.

    Never with no drop allowed (`max_metric_drop` 0): every fall would then count as severe.
    """
    if policy.max_metric_drop <= 0:
        return False
    if evidence == "labels":
        now, before = inputs.metric_value, _baseline(inputs, policy.metric)[0]
    elif evidence == "estimate":
        now, before = inputs.estimated_metric, inputs.estimated_reference
    else:
        return False
    if now is None or before is None or not math.isfinite(now + before):
        return False
    drop = -metric_delta(policy.metric, now, before)
    return drop >= SEVERE_DROP * policy.max_metric_drop and drop > 0


def _blocker(inputs: PolicyInputs, policy: RetrainPolicy, *, severe: bool = False) -> str:
    """Say what holds a retrain back (cooldown, too little new data), or return an empty string.

    Each challenger refused since the champion's promotion adds one more of each (at most 8x),
    unless the drop is `severe`: then the new rows needed are at most `min_labelled_rows`, the
    rows that measured the failure, which the retrain will learn. Waiting for more costs a window
    of a failing champion each time (with batches smaller than `min_new_rows`, a retrain refused
    just after a change of concept could not be retried on the next batch).
    """
    factor = 1 if severe else min(1 + inputs.refused_challengers, MAX_BACKOFF)
    backoff = ""
    if severe and inputs.refused_challengers:
        backoff = f", no back-off: the drop is at least {SEVERE_DROP:g}x the allowed one"
    if factor > 1:
        refused = inputs.refused_challengers
        backoff = f", x{factor} after {refused} refused challenger{'s' if refused > 1 else ''}"
    cooldown = policy.cooldown * factor
    if inputs.last_retrain is not None:
        # A window that ends before the last registration (replayed or late traffic) counts as
        # "just retrained", not as a negative age that no cooldown could clear.
        since = max(inputs.now - inputs.last_retrain, dt.timedelta(0))
        if cooldown > dt.timedelta(0) and since < cooldown:
            return (
                f"the last retrain was {_duration(since)} ago, "
                f"within the {_duration(cooldown)} cooldown{backoff}"
            )
    needed = policy.min_new_rows * factor
    if severe:
        needed = min(needed, policy.min_labelled_rows)
    if inputs.new_rows < needed:
        return f"only {inputs.new_rows} new rows since the last training (< {needed}{backoff})"
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
