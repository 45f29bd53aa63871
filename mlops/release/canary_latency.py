"""Hold a canary's answer times to the champion's, on the same traffic in the same window.

Every logged row carries `served_ms`: how long the service took to answer its request's part
with the model that answered it. The champion's time includes its wait in the micro-batcher; the
canary runs inline, so under load an equally fast canary looks faster, never slower. Both answer
interleaved records of the same traffic over the same window (routing is by id hash), so load,
machine and time of day weigh on both alike: what is left between them is the models.

A canary breaches its budget when the 95th percentile of its answer times is more than
`max_ratio` times the champion's and more than `floor_ms` above it, each over at least
`min_requests` requests (a request counts once: its records share one answer time).

- The 95th percentile, because a slow model hurts first in the tail, where users feel it.
- The ratio 2: the same model measured twice on interleaved traffic gives 95th percentiles well
  within that of each other once each rests on 100 requests (5 in the tail); a model that costs
  twice as much per call shifts the whole distribution.
- The floor of 5 ms: differences below a few milliseconds are timer and scheduler noise, smaller
  than any network round trip; no client can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

__all__ = ["LatencyBudget", "LatencyCheck", "answer_times", "canary_latency"]

MAX_RATIO = 2.0
FLOOR_MS = 5.0
MIN_REQUESTS = 100


@dataclass(frozen=True)
class LatencyBudget:
    """How much slower than the champion a canary may answer before it is rolled back."""

    max_ratio: float = MAX_RATIO
    floor_ms: float = FLOOR_MS
    min_requests: int = MIN_REQUESTS


@dataclass(frozen=True)
class LatencyCheck:
    """The two versions' answer times in one window, and whether the canary breached."""

    canary_p95_ms: float | None
    champion_p95_ms: float | None
    canary_requests: int
    champion_requests: int
    breach: bool
    text: str


def answer_times(served: pd.DataFrame, version: str) -> np.ndarray:
    """Return the answer time (ms) of each request `version` answered; one per request."""
    if "served_ms" not in served.columns or not len(served):
        return np.empty(0)
    rows = served.loc[served["model_version"] == version, ["request_id", "served_ms"]]
    times = pd.to_numeric(rows.drop_duplicates("request_id")["served_ms"], errors="coerce")
    return times.dropna().to_numpy(dtype=float)


def canary_latency(
    served: pd.DataFrame, canary: str, champion: str, budget: LatencyBudget
) -> LatencyCheck:
    """Compare the canary's answer times with the champion's on the rows both served."""
    mine, theirs = answer_times(served, canary), answer_times(served, champion)
    n, m = len(mine), len(theirs)
    if n < budget.min_requests or m < budget.min_requests:
        text = (f"latency not judged ({n} requests answered by {canary} and {m} by {champion}, "
                f"{budget.min_requests} of each needed)")  # fmt: skip
        return LatencyCheck(None, None, n, m, False, text)
    p_k, p_c = float(np.percentile(mine, 95)), float(np.percentile(theirs, 95))
    slower = p_k > budget.max_ratio * p_c and p_k - p_c > budget.floor_ms
    text = f"95th percentile answer time {p_k:.1f} ms vs {champion}'s {p_c:.1f} ms"
    if slower:
        text += (f": slower than {budget.max_ratio:g}x the champion's and by more than "
                 f"{budget.floor_ms:g} ms, over {n} and {m} requests")  # fmt: skip
    return LatencyCheck(p_k, p_c, n, m, slower, text)
