"""Hand served requests to the prediction logger in groups, after their answers are sent.

Building pandas frames for one request costs more than serving it, so the service only notes what
it served (a list append) and the event loop turns the notes of many requests into one frame
shortly after, handed over with `PredictionLogger.record_requests`. Each request keeps its own
request id and the time it was served.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.api_model import RecordColumns
from mlops.inference.model import LoadedModel
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import PredictionLogger, utc_now


@dataclass(frozen=True)
class Served:
    """One served request (or the part of it one model answered)."""

    request_id: str
    model: LoadedModel
    received_at: datetime
    rows: RecordColumns
    output: np.ndarray
    shadow: LoadedModel | None = None  # the shadow on trial when it was answered, if any
    served_ms: float = float("nan")  # how long its model took to answer it, queueing included


class ServedLog:
    """Queue served requests on the event loop; record them `delay_s` later, or at `max_rows`.

    `on_drained`, if given, receives every recorded group of one model (and one shadow) with its
    features frame (None if it could not be built), e.g. for a shadow's scorer; it must not block
    or raise.
    """

    def __init__(
        self,
        logger: PredictionLogger,
        metrics: Any,
        *,
        delay_s: float = 0.1,
        max_rows: int = 4096,
        on_drained: Callable[[list[Served], pd.DataFrame | None], None] | None = None,
    ) -> None:
        self.logger = logger
        self.on_drained = on_drained
        self.metrics = metrics
        self.delay_s = delay_s
        self.max_rows = max_rows
        self._pending: list[Served] = []
        self._rows = 0
        self._lock = threading.Lock()  # drain() may also run from the shutdown hook
        self._timer: asyncio.TimerHandle | None = None

    def add(
        self,
        request_id: str,
        model: LoadedModel,
        rows: RecordColumns,
        output: Any,
        shadow: LoadedModel | None = None,
        *,
        served_ms: float = float("nan"),
    ) -> None:
        """Note one served request, how long `model` took to answer it and the shadow that
        should score it (call on the event loop; no pandas, no I/O)."""
        with self._lock:
            served = Served(request_id, model, utc_now(), rows, output, shadow, served_ms)
            self._pending.append(served)
            self._rows += len(rows)
            full = self._rows >= self.max_rows
        loop = asyncio.get_running_loop()
        if full:
            loop.call_soon(self.drain)
        elif self._timer is None:
            self._timer = loop.call_later(self.delay_s, self.drain)

    def drain(self) -> None:
        """Record every noted request now; never raise."""
        with self._lock:
            pending, self._pending, self._rows = self._pending, [], 0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        start = 0
        while start < len(pending):  # runs of one model (and shadow) share their frames
            end = start + 1
            while (
                end < len(pending)
                and pending[end].model is pending[start].model
                and pending[end].shadow is pending[start].shadow
            ):
                end += 1
            features = self._record(pending[start:end])
            if self.on_drained is not None:
                self.on_drained(pending[start:end], features)
            start = end
        if pending:
            self.metrics.observe_logger(self.logger.stats)

    def _record(self, group: list[Served]) -> pd.DataFrame | None:
        """Hand one model's group to the logger; return its features frame (None on failure)."""
        features = None
        try:
            model = group[0].model
            features = pd.DataFrame(RecordColumns.concat([s.rows for s in group]).values)
            outputs = output_frame(np.concatenate([s.output for s in group]), model.manifest)
            self.logger.record_requests(
                requests=[(s.request_id, s.received_at, len(s.rows)) for s in group],
                model_version=model.version,
                features=features,
                outputs=outputs,
                served_ms=[s.served_ms for s in group],
            )
        except Exception:  # logging never fails a response
            self.metrics.log_failures.inc(len(group))
        return features
