"""Serve a challenger on trial beside the champion: a shadow scored off the response path, or a
canary that answers a share of the records (see `mlops.release.rollout`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.api_model import RecordColumns
from mlops.inference.model import LoadedModel
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import PredictionLogger
from mlops.registry.rollouts import Rollout, canary_mask
from serving.served_log import Served

log = logging.getLogger("mlops.serving")
SHADOW_QUEUE_GROUPS = 64  # drained groups waiting for the shadow (one group: up to ~4k rows)

WARN_EVERY_S = 60.0
_warned_at: dict[str, float] = {}


def _warn_due(what: str) -> bool:
    """Return whether a failure of `what` may be logged now: a failing trial fails on every
    request, and its count is in the metrics, so the log gets one line a minute."""
    now = time.monotonic()
    if now - _warned_at.get(what, -WARN_EVERY_S) < WARN_EVERY_S:
        return False
    _warned_at[what] = now
    return True


ChampionAnswer = Callable[[RecordColumns], Awaitable[tuple[Any, LoadedModel]]]


@dataclass(frozen=True)
class Answered:
    """The records of a request (by position) that one model answered, with its output."""

    positions: list[int]
    rows: RecordColumns
    output: Any
    model: LoadedModel
    served_ms: float = float("nan")  # how long the model took to answer them


def routing_keys(ids: Sequence[Any] | None, request_id: str, rows: int) -> list[Any]:
    """Return the key that routes each record: its id, else the request id.

    Records without an id follow their request id, which is new for every request: such routing
    is not sticky (the same record sent again may meet the other version).
    """
    if ids is None:
        return [request_id] * rows
    return [request_id if i is None else i for i in ids]


async def answer_with_canary(
    rows: RecordColumns,
    keys: Sequence[Any],
    rollout: Rollout,
    canary: LoadedModel,
    champion: ChampionAnswer,
    metrics: Any,
) -> list[Answered]:
    """Answer the records routed to the canary with it, the rest with `champion`.

    Records whose key routes to the canary (`canary_mask`) run inline (a small share); if the
    canary raises, the champion answers them as well and they are counted as fallbacks. Each
    part carries how long its model took: the canary's call, or the champion's answer with its
    wait in the micro-batcher (a canary is thus never charged for a queue it did not join).
    """
    mask = canary_mask(keys, rollout.share)
    to_canary = np.flatnonzero(mask).tolist()
    parts: list[Answered] = []
    if to_canary:
        canary_rows = rows.take(to_canary)
        try:
            began = time.perf_counter()
            output, _ = canary.predict_values(canary_rows.values)
            took = (time.perf_counter() - began) * 1000
            parts.append(Answered(to_canary, canary_rows, output, canary, took))
            metrics.predictions.labels(version=canary.version).inc(len(to_canary))
        except Exception as exc:  # the champion answers instead: no request fails for a canary
            metrics.canary_fallbacks.inc(len(to_canary))
            if _warn_due(f"canary {canary.version}"):
                log.warning("canary %s failed on %d record(s): %r (counted in "
                            "mlops_canary_fallback_rows; logged at most once a minute)",
                            canary.version, len(to_canary), exc)  # fmt: skip
    to_champion = np.flatnonzero(~mask).tolist() if parts else list(range(len(rows)))
    if to_champion:
        champion_rows = rows if len(to_champion) == len(rows) else rows.take(to_champion)
        began = time.perf_counter()
        output, model = await champion(champion_rows)
        took = (time.perf_counter() - began) * 1000
        parts.insert(0, Answered(to_champion, champion_rows, output, model, took))
    return parts


@dataclass(frozen=True)
class Shadowed:
    """Served requests of one model, waiting for the shadow (features: their logged frame)."""

    shadow: LoadedModel
    group: list[Served]
    features: pd.DataFrame | None


class ShadowScorer:
    """Score served records with the shadow on trial in a background thread, and log them.

    Fed the prediction log's drained groups (`ServedLog(on_drained=...)`), each with the shadow
    noted when it was answered: the shadow's rows get the same request ids and times as the
    champion's. A full queue drops the group (counted);
    a shadow that raises is counted. Neither touches a response.
    """

    def __init__(
        self, logger: PredictionLogger, metrics: Any, *, max_groups: int = SHADOW_QUEUE_GROUPS
    ) -> None:
        self.logger = logger
        self.metrics = metrics
        self._queue: queue.Queue[Shadowed | None] = queue.Queue(max_groups)
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Score what is queued, then stop (waiting at most `timeout_s`)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)

    def offer(self, group: list[Served], features: pd.DataFrame | None = None) -> None:
        """Queue one model's served requests (and their features frame) for the shadow that was
        on trial when they were answered, if any and if it did not answer them; never block.

        The shadow is the one noted with each request (`Served.shadow`), so requests answered
        just before a rollout ended are still scored by its shadow.
        """
        shadow = group[0].shadow if group else None
        if shadow is None or group[0].model.version == shadow.version:
            return
        try:
            self._queue.put_nowait(Shadowed(shadow, group, features))
        except queue.Full:
            self.metrics.shadow_dropped.inc(sum(len(s.rows) for s in group))

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            self.score(item.shadow, item.group, item.features)

    def score(
        self, shadow: LoadedModel, group: list[Served], features: pd.DataFrame | None = None
    ) -> None:
        """Predict `group`'s records with the shadow and log them under its version."""
        rows = RecordColumns.concat([s.rows for s in group])
        try:
            output, _ = shadow.predict_values(rows.values)
            self.logger.record_requests(
                requests=[(s.request_id, s.received_at, len(s.rows)) for s in group],
                model_version=shadow.version,
                features=pd.DataFrame(rows.values) if features is None else features,
                outputs=output_frame(output, shadow.manifest),
            )
        except Exception as exc:  # a failing shadow is counted, never felt by clients
            self.metrics.shadow_failures.inc(len(rows))
            if _warn_due(f"shadow {shadow.version}"):
                log.warning("shadow %s failed on %d record(s): %r (counted in "
                            "mlops_shadow_failed_rows; logged at most once a minute)",
                            shadow.version, len(rows), exc)  # fmt: skip
