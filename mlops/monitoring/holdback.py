"""What holds back a retrain the evidence calls for: the cooldown, too few new rows, the back-off.

After a challenger was refused, the policy backs off: each refusal since the champion's promotion
adds one more cooldown and one more `min_new_rows` to wait for (up to 8 of each), so the same
evidence does not buy the same training again. The back-off is linear, not exponential: a
challenger refused right after a change of concept usually lacked rows of the new concept, and
those arrive linearly with time. It is waived while the metric has fallen by at least twice the
allowed drop: that is no borderline window that noise could explain, the champion is failing, and
each window it keeps serving costs more than the whole tolerance, far more than one more training.
"""

from __future__ import annotations

import datetime as dt
import math

from mlops.monitoring.thresholds import RetrainPolicy
from mlops.training.evaluate import metric_delta

MAX_BACKOFF = 8  # at most 8x the cooldown and the new rows, after 7 refused challengers
SEVERE_DROP = 2.0  # a drop of this many times `max_metric_drop` waives the back-off


def severe_drop(
    metric: str, now: float | None, before: float | None, max_metric_drop: float
) -> bool:
    """Tell whether `metric` fell from `before` to `now` by `SEVERE_DROP` allowed drops.

    Never with no drop allowed (`max_metric_drop` 0): every fall would then count as severe.
    """
    if max_metric_drop <= 0 or now is None or before is None or not math.isfinite(now + before):
        return False
    drop = -metric_delta(metric, now, before)
    return drop >= SEVERE_DROP * max_metric_drop and drop > 0


def held_back(
    *,
    now: dt.datetime,
    last_retrain: dt.datetime | None,
    new_rows: int,
    refused_challengers: int,
    policy: RetrainPolicy,
    severe: bool = False,
) -> str:
    """Say what holds a retrain back (cooldown, too little new data), or return an empty string.

    Each challenger refused since the champion's promotion adds one more of each (at most 8x),
    unless the drop is `severe`: then the new rows needed are at most `min_labelled_rows`, the
    rows that measured the failure, which the retrain will learn. Waiting for more costs a window
    of a failing champion each time (with batches smaller than `min_new_rows`, a retrain refused
    just after a change of concept could not be retried on the next batch).
    """
    factor = 1 if severe else min(1 + refused_challengers, MAX_BACKOFF)
    backoff = ""
    if severe and refused_challengers:
        backoff = f", no back-off: the drop is at least {SEVERE_DROP:g}x the allowed one"
    if factor > 1:
        plural = "s" if refused_challengers > 1 else ""
        backoff = f", x{factor} after {refused_challengers} refused challenger{plural}"
    cooldown = policy.cooldown * factor
    if last_retrain is not None:
        # A window that ends before the last registration (replayed or late traffic) counts as
        # "just retrained", not as a negative age that no cooldown could clear.
        since = max(now - last_retrain, dt.timedelta(0))
        if cooldown > dt.timedelta(0) and since < cooldown:
            return (
                f"the last retrain was {_duration(since)} ago, "
                f"within the {_duration(cooldown)} cooldown{backoff}"
            )
    needed = policy.min_new_rows * factor
    if severe:
        needed = min(needed, policy.min_labelled_rows)
    if new_rows < needed:
        return f"only {new_rows} new rows since the last training (< {needed}{backoff})"
    return ""


def _duration(span: dt.timedelta) -> str:
    """Write a duration the way people say it: 45 min, 3 h, 2 d."""
    minutes = max(span.total_seconds(), 0) / 60
    if minutes < 60:
        return f"{minutes:.0f} min"
    hours = minutes / 60
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} d"
