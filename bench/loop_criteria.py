"""Judge a backtest against the acceptance criteria of a retraining loop that pays for itself.

Each criterion reads only the backtest.json document (policies `static`, `every` and `triggered`)
and the ground truth of the history it replayed (which batches are stable, which arrive broken,
whether the labels are balanced), never the policy's own view of the batches.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

Result = Mapping[str, Any]

CLOSE_ABSOLUTE = 0.01  # classification: triggered's primary metric within 1 point of every's
CLOSE_RELATIVE = 0.05  # regression: triggered's RMSE within 5% of every's
RETRAIN_SHARE = 0.5  # ... with at most half of every's retrains
STABLE_WINDOWS_PER_RETRAIN = 20
THRESHOLD_SLACK = 0.02  # served accuracy may trail the 0.5 cut's by at most this
CRITERIA = {
    "never-worse": "1. triggered never worse than static",
    "close-to-every": "2. triggered close to every, half the retrains",
    "quiet-when-stable": "3. quiet on stable data",
    "no-retrain-on-broken": "4. no retrain on a broken batch",
    "threshold-holds": "5. threshold no worse than 0.5",
}


@dataclass(frozen=True)
class GroundTruth:
    """What the history's generator knows about its batches (indices of the backtest's batches)."""

    stable: tuple[int, ...] | None = None  # windows without any drift; None: not judged
    broken: tuple[int, ...] | None = None  # batches from a broken feed; None: not judged
    balanced: bool = False  # binary labels with about as many positives as negatives


@dataclass(frozen=True)
class Verdict:
    """One criterion on one backtest: PASS, FAIL, n/a or not measured, and the figures behind it."""

    key: str
    status: str
    figure: str
    short: str = ""  # the figure in a few characters, for the summary table

    @property
    def title(self) -> str:
        return CRITERIA[self.key]

    def to_dict(self) -> dict[str, str]:
        return {**asdict(self), "title": self.title}


def judge(result: Result, truth: GroundTruth) -> list[Verdict]:
    """Return the five verdicts of one backtest, in the order of CRITERIA."""
    return [
        never_worse_than_static(result, truth.broken),
        close_to_every(result, truth.broken),
        quiet_when_stable(result, truth.stable),
        no_retrain_on_broken(result, truth.broken),
        threshold_holds(result, truth.balanced),
    ]


def never_worse_than_static(result: Result, broken: Sequence[int] | None = None) -> Verdict:
    """1: triggered's mean primary metric (and mean accuracy, for binary) >= static's.

    Means leave out the `broken` batches (see `close_to_every`).
    """
    policies = _policies(result, "static", "triggered")
    if policies is None:
        return Verdict("never-worse", "not measured", "needs the static and triggered policies")
    static, triggered = policies
    checks = [(result["metric"], bool(result.get("higher_is_better", True)))]
    if result.get("task") == "binary":
        checks.append(("accuracy", True))
    ok, figures, gains = True, [], []
    for metric, higher in checks:
        old, new = _mean(static, metric, result, broken), _mean(triggered, metric, result, broken)
        if old is None or new is None:
            return Verdict("never-worse", "not measured", f"no mean {metric}")
        gain = (new - old) if higher else (old - new)
        ok &= gain >= 0
        figures.append(f"{metric} {new:.4f} vs {old:.4f} ({gain:+.4f})")
        gains.append(f"{gain:+.3f}")
    return Verdict(
        "never-worse", _status(ok), "; ".join(figures) + _left_out(broken), " / ".join(gains)
    )


def close_to_every(result: Result, broken: Sequence[int] | None = None) -> Verdict:
    """2: triggered's mean close to every's (0.01, or 5% of RMSE) with at most half its retrains.

    Means leave out the `broken` batches: a policy that retrains on a broken feed learns the
    breakage and then scores well on the next broken batch, which criterion 4 forbids; the
    metric on a broken feed says how well a model learned the fault, not the concept.
    """
    policies = _policies(result, "every", "triggered")
    if policies is None:
        return Verdict("close-to-every", "not measured", "needs the every and triggered policies")
    every, triggered = policies
    regression = result.get("task") == "regression"
    metric = "rmse" if regression else result["metric"]
    target, new = _mean(every, metric, result, broken), _mean(triggered, metric, result, broken)
    if target is None or new is None:
        return Verdict("close-to-every", "not measured", f"no mean {metric}")
    if regression:
        close = new <= target * (1 + CLOSE_RELATIVE)
        change = f"{new / target - 1:+.1%}" if target else "n/a"
        gap = f"{metric} {new:.4g} vs {target:.4g} ({change})"
    else:
        higher = bool(result.get("higher_is_better", True))
        ahead = (new - target) if higher else (target - new)
        close = ahead >= -CLOSE_ABSOLUTE - 1e-9
        change = f"{ahead:+.3f}"
        gap = f"{metric} {new:.4f} vs {target:.4f} ({ahead:+.4f})"
    retrains, every_retrains = triggered.get("retrains", 0), every.get("retrains", 0)
    budget = every_retrains * RETRAIN_SHARE
    return Verdict(
        "close-to-every",
        _status(close and retrains <= budget),
        f"{gap}; retrains {retrains} vs {every_retrains} (at most {budget:g}){_left_out(broken)}",
        f"{change}, {retrains}/{every_retrains} retrains",
    )


def quiet_when_stable(result: Result, stable: Sequence[int] | None) -> Verdict:
    """3: at most 1 triggered retrain per 20 stable windows (and at most 1 below 20 windows)."""
    if not stable:
        return Verdict("quiet-when-stable", "n/a", "no stable windows in this history")
    decided = _retrain_decisions(result, stable)
    if decided is None:
        return Verdict("quiet-when-stable", "not measured", "needs the triggered policy")
    allowed = max(1, len(stable) // STABLE_WINDOWS_PER_RETRAIN)
    where = f" (batches {', '.join(map(str, decided))})" if decided else ""
    return Verdict(
        "quiet-when-stable",
        _status(len(decided) <= allowed),
        f"{len(decided)} retrains in {len(stable)} stable windows{where}; at most {allowed}",
        f"{len(decided)} in {len(stable)}",
    )


def no_retrain_on_broken(result: Result, broken: Sequence[int] | None) -> Verdict:
    """4: triggered decides no retrain on a batch that arrived from a broken feed."""
    if not broken:
        return Verdict("no-retrain-on-broken", "n/a", "no broken batches in this history")
    decided = _retrain_decisions(result, broken)
    if decided is None:
        return Verdict("no-retrain-on-broken", "not measured", "needs the triggered policy")
    batches = ", ".join(map(str, broken))
    where = f", after batches {', '.join(map(str, decided))}" if decided else ""
    figure = f"{len(decided)} retrains decided on the broken batches ({batches}){where}"
    short = f"{len(decided)} on {len(broken)}"
    return Verdict("no-retrain-on-broken", _status(not decided), figure, short)


def threshold_holds(result: Result, balanced: bool) -> Verdict:
    """5: on balanced binary data, triggered's accuracy never trails the 0.5 cut's by > 0.02."""
    if result.get("task") != "binary":
        return Verdict("threshold-holds", "n/a", "not a binary task")
    if not balanced:
        return Verdict("threshold-holds", "n/a", "labels not balanced")
    policy = (result.get("policies") or {}).get("triggered")
    if policy is None:
        return Verdict("threshold-holds", "not measured", "needs the triggered policy")
    worst = threshold_gap(policy.get("batches") or [])
    if worst is None:
        return Verdict("threshold-holds", "not measured", "the batches carry no accuracy_at_0_5")
    gap, index = worst
    ok = gap >= -THRESHOLD_SLACK - 1e-9
    figure = f"worst accuracy - accuracy@0.5: {gap:+.4f} (batch {index})"
    return Verdict("threshold-holds", _status(ok), figure, f"{gap:+.3f}")


def threshold_gap(batches: Sequence[Mapping[str, Any]]) -> tuple[float, int] | None:
    """Return the lowest accuracy - accuracy_at_0_5 over the batches, and its batch index."""
    gaps = [
        (float(b["accuracy"]) - float(b["accuracy_at_0_5"]), int(b["index"]))
        for b in batches
        if _finite(b.get("accuracy")) and _finite(b.get("accuracy_at_0_5"))
    ]
    return min(gaps) if gaps else None


def _policies(result: Result, *names: str) -> list[Mapping[str, Any]] | None:
    found = result.get("policies") or {}
    return [found[name] for name in names] if all(name in found for name in names) else None


def _mean(
    policy: Mapping[str, Any], metric: str, result: Result, skip: Sequence[int] | None = None
) -> float | None:
    if skip:
        values = [
            float(b[metric])
            for b in policy.get("batches") or []
            if int(b["index"]) not in set(skip) and _finite(b.get(metric))
        ]
        return sum(values) / len(values) if values else None
    value = policy.get("mean") if metric == result.get("metric") else None
    if value is None:
        value = (policy.get("means") or {}).get(metric)
    return float(value) if value is not None and _finite(value) else None


def _left_out(broken: Sequence[int] | None) -> str:
    if not broken:
        return ""
    return f"; means without the broken batches ({', '.join(map(str, broken))})"


def _retrain_decisions(result: Result, indices: Sequence[int]) -> list[int] | None:
    """The batches among `indices` after which triggered decided to retrain."""
    policy = (result.get("policies") or {}).get("triggered")
    if policy is None:
        return None
    wanted = set(indices)
    return [
        int(b["index"])
        for b in policy.get("batches") or []
        if b.get("index") in wanted and (b.get("action") == "retrain" or b.get("retrained"))
    ]


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _status(ok: bool) -> str:
    return "PASS" if ok else "FAIL"
