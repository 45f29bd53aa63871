"""Decide whether to retrain the model, on the best evidence the window has, and say why.

The evidence, best first: live performance on labelled rows; when labels are missing or too few,
the performance the model's own probabilities let us estimate (binary models); only when neither
exists, feature drift. Drift alone is not evidence of harm: on real data most features drift a
little in most windows while the model keeps its quality, so with labels (or an estimate) at hand
drift only explains. A window that fails its data checks never triggers a retrain (the model
would learn the broken feed): it raises a data-quality incident instead. After a challenger was
refused, the policy backs off (`mlops.monitoring.holdback`).

One retrain needs no alarm: the catch-up. A champion trained right after a change of concept
learned few rows of the new concept (those between the change and its training), and it keeps
a metric below what the concept allows without falling any further, so no drop ever calls for
more. Once as many rows again have been served, one retrain learns twice the rows of the new
concept: on a learning curve the first doubling is the largest step there is, and later ones are
left to the performance rule. It fires once per change found (the model it trains carries the
change over, it does not find it: `Change.inherited`), and the gate keeps it only if it is better;
once a challenger was refused since the champion's promotion, it does not fire again.

Pure: the caller passes the current window's figures, the drift shares of the windows before it,
the live or estimated metric and the training history, and stores what it needs for the next call.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from mlops.monitoring.holdback import held_back, severe_drop
from mlops.monitoring.thresholds import RetrainPolicy
from mlops.training.evaluate import HIGHER_IS_BETTER, metric_delta

Reason = Literal["performance", "estimated-performance", "drift", "data-quality", "catch-up"]
Evidence = Literal["labels", "estimate", "drift", "data-quality"]
EVENTS: dict[str, str] = {
    "drift": "mlops.model.drift-detected",
    "performance": "mlops.model.performance-degraded",
    "estimated-performance": "mlops.model.performance-degraded",
    "catch-up": "mlops.model.catch-up-due",
}  # the retrain events (the retrain trigger expects these)
EVIDENCE_REASON: dict[Evidence, Reason] = {
    "labels": "performance",
    "estimate": "estimated-performance",
    "drift": "drift",
    "data-quality": "data-quality",
}
DATA_QUALITY_EVENT = "mlops.model.data-quality-failed"  # an incident to fix, never a retrain


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
    refused since the champion's promotion. `catch_up_rows`: the rows since a change of concept
    the champion learned, when it was trained on a change it found itself (None otherwise).
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
    catch_up_rows: int | None = None

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
    reason: Reason = EVIDENCE_REASON[evidence]
    triggers: list[Reason] = [reason] if fired else []
    if drift_fired and evidence != "drift":
        triggers.append("drift")
    if evidence == "drift":
        because = text
    else:
        harmless = ", which alone is not evidence of harm" if drift_fired and not fired else ""
        because = f"{text}; drift: {drift_text}{harmless}"
    catch_up = None if fired else _catch_up_clause(inputs)
    if catch_up is not None:
        fired, reason, because = True, "catch-up", f"{catch_up} ({because})"
        triggers.insert(0, "catch-up")
    blocker = ""
    if fired:
        blocker = held_back(
            now=inputs.now, last_retrain=inputs.last_retrain, new_rows=inputs.new_rows,
            refused_challengers=inputs.refused_challengers, policy=policy,
            severe=_severe(inputs, policy, evidence),
        )  # fmt: skip
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


def _catch_up_clause(inputs: PolicyInputs) -> str | None:
    """Say why a catch-up retrain is due, or None (see the module's docstring)."""
    learned = inputs.catch_up_rows
    if learned is None or learned <= 0 or inputs.new_rows < learned:
        return None
    if inputs.refused_challengers:  # more rows of the concept did not beat it: done catching up
        return None
    return (
        f"the champion learned only {learned:,} rows of the concept that changed before its "
        f"training, and {inputs.new_rows:,} rows have been served since: a catch-up retrain "
        "learns them"
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
    """Tell whether the measured (or estimated) metric the decision rests on fell severely."""
    if evidence == "labels":
        now, before = inputs.metric_value, _baseline(inputs, policy.metric)[0]
    elif evidence == "estimate":
        now, before = inputs.estimated_metric, inputs.estimated_reference
    else:
        return False
    return severe_drop(policy.metric, now, before, policy.max_metric_drop)


def _num(value: float) -> str:
    """Write a metric value with three significant digits (thousands separated when large)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
