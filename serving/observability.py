"""Prometheus metrics of the prediction service, and a middleware counting rejected requests."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

REASONS = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found",
           405: "method_not_allowed", 413: "too_large", 415: "unsupported_media_type",
           422: "invalid_input", 429: "rate_limited"}  # fmt: skip


@dataclass(frozen=True)
class ServiceMetrics:
    """The service's own series, next to BentoML's request metrics."""

    predictions: Any
    rejected: Any
    oov: Any
    log_failures: Any
    log_write_failures: Any
    log_dropped: Any
    log_buffered: Any
    reloads: Any
    model_info: Any

    def observe_logger(self, stats: Any) -> None:
        """Copy the prediction logger's counters into gauges."""
        self.log_write_failures.set(stats.write_failures)
        self.log_dropped.set(stats.dropped_rows)
        self.log_buffered.set(stats.buffered_rows)


@functools.lru_cache(maxsize=1)
def service_metrics() -> ServiceMetrics:
    """Create the metrics once per process (after BentoML set up multiprocess collection)."""
    import prometheus_client as prom

    return ServiceMetrics(
        predictions=prom.Counter("mlops_predictions", "Records predicted", ["version"]),
        rejected=prom.Counter("mlops_rejected_requests", "Requests refused", ["reason"]),
        oov=prom.Counter("mlops_oov_values", "Unseen categories served via the OOV slot",
                         ["feature"]),
        log_failures=prom.Counter("mlops_log_record_failures", "Rows that could not be logged"),
        log_write_failures=prom.Gauge("mlops_prediction_log_write_failures",
                                      "Failed writes of the prediction log and profiles",
                                      multiprocess_mode="max"),
        log_dropped=prom.Gauge("mlops_prediction_log_dropped_rows",
                               "Logged rows dropped because the buffer was full",
                               multiprocess_mode="max"),
        log_buffered=prom.Gauge("mlops_prediction_log_buffered_rows",
                                "Rows waiting to be written", multiprocess_mode="max"),
        reloads=prom.Counter("mlops_model_reloads", "Model reload attempts", ["outcome"]),
        model_info=prom.Gauge("mlops_model_info", "Model being served (1)",
                              ["version", "device"], multiprocess_mode="max"),
    )  # fmt: skip


class RejectionCounter:
    """ASGI middleware: count 4xx answers of POST /predict by reason."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/predict":
            await self.app(scope, receive, send)
            return

        async def watch(message: dict) -> None:
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 200))
                if 400 <= status < 500 and status != 401:  # 401 is counted by the service
                    reason = REASONS.get(status, f"http_{status}")
                    service_metrics().rejected.labels(reason=reason).inc()
            await send(message)

        await self.app(scope, receive, watch)
