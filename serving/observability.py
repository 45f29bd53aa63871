"""Prometheus metrics of the prediction service, kept bounded, and logs of refused requests."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles

from serving.guard import route_path

# BentoML logs an exception of an API call, with its traceback, through this logger.
BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
UNMATCHED_PATH = "/{unmatched}"  # the one path label of requests that no route serves
MAX_SERVED_PATHS = 4096

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
    shadow_dropped: Any
    shadow_failures: Any
    canary_fallbacks: Any

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
        shadow_dropped=prom.Counter("mlops_shadow_dropped_rows",
                                    "Rows the shadow did not score: its queue was full"),
        shadow_failures=prom.Counter("mlops_shadow_failed_rows",
                                     "Rows the shadow failed to score (it raised)"),
        canary_fallbacks=prom.Counter("mlops_canary_fallback_rows",
                                      "Rows routed to the canary but answered by the champion "
                                      "because the canary raised"),
    )  # fmt: skip


class RejectionCounter:
    """ASGI middleware: count 4xx answers of /predict by reason."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope.get("type") != "http" or scope.get("path") != "/predict":
            await self.app(scope, receive, send)
            return

        async def watch(message: dict) -> None:
            if message.get("type") == "http.response.start":
                status = int(message.get("status", 200))
                if 400 <= status < 500:
                    reason = REASONS.get(status, f"http_{status}")
                    service_metrics().rejected.labels(reason=reason).inc()
            await send(message)

        await self.app(scope, receive, watch)


class BoundedPathLabels:
    """ASGI wrapper: give every request to a path that no route serves the path UNMATCHED_PATH.

    BentoML's request metrics label their series with the request's path, so requests to random
    paths (no token needed) would add series without end. Wrapped around the whole application,
    before those metrics, this keeps them to the served paths plus one; such requests still get
    404. A path is served when a route matches it (any method), or when it names a static file.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._served: set[str] = set()  # paths found served; a cache, so bounded as well
        self._static: dict[int, frozenset[str]] = {}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket") and not self._serves(scope):
            path = scope["path"]
            unmatched = path[: len(path) - len(route_path(scope))] + UNMATCHED_PATH
            scope = {**scope, "path": unmatched, "raw_path": unmatched.encode()}
        await self.app(scope, receive, send)

    def _serves(self, scope: dict) -> bool:
        path = route_path(scope)
        if path in self._served:
            return True
        for route in getattr(self.app, "routes", ()):
            match, _ = route.matches(scope)
            if match is Match.NONE:
                continue
            if self._missing_static_file(route, path):
                return False
            if len(self._served) < MAX_SERVED_PATHS:
                self._served.add(path)
            return True
        return False

    def _missing_static_file(self, route: Any, path: str) -> bool:
        """Tell whether `route` serves static files and `path` names none of them."""
        if not (isinstance(route, Mount) and isinstance(route.app, StaticFiles)):
            return False
        if id(route) not in self._static:
            self._static[id(route)] = frozenset(
                f.relative_to(directory).as_posix()
                for directory in route.app.all_directories
                for f in Path(directory).rglob("*")
                if f.is_file()
            )
        return path[len(route.path) + 1 :] not in self._static[id(route)]


class ClientErrorLog(logging.Filter):
    """Log a request refused for its content (4xx) as one INFO line, without traceback or data.

    BentoML logs the validation error of every refused request at ERROR with a traceback, and
    the error's text repeats the offending input values: a client could fill the logs with its
    data. The answer still names each field and problem; the log keeps their kinds only.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        status, kinds = _client_error(error)
        if status is None:
            return True
        args = record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ()
        path, method = args or ("?", "?")
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.msg, record.args = "%s %s refused with %d: %s", (method, path, status, kinds)
        record.exc_info = record.exc_text = record.stack_info = None
        return True


def _client_error(error: BaseException | None) -> tuple[int | None, str]:
    """Return the 4xx status BentoML answers `error` with, and the kinds of problem in it."""
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        kinds = sorted({e["type"] for e in error.errors(include_url=False, include_input=False)})
        return 400, f"{error.error_count()} contract violation(s): {', '.join(kinds)}"
    if isinstance(error, BentoMLException) and 400 <= error.error_code.value < 500:
        return error.error_code.value, type(error).__name__
    return None, ""


def quiet_client_errors() -> None:
    """Install ClientErrorLog on BentoML's request logger (once per process)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(f, ClientErrorLog) for f in logger.filters):
        logger.addFilter(ClientErrorLog())
