"""Record what the prediction service serves into the prediction store (log and window profiles).

``PredictionLogger.record`` only appends to memory, so it never blocks or fails a response; a
background thread (or an explicit ``flush``) hands the buffered rows to a `PredictionWriter`, which
writes them as ``mlops.monitoring.prediction_store`` lays them out.

Rows reach the log every `flush_interval_s` (1 s by default), so a process killed outright loses
about that much of its traffic. Profiling costs a fixed ~50 ms a call, so under steady traffic the
rows join the window profiles every `profile_interval_s` only, and at the first flush without new
rows when traffic pauses; an explicit ``flush`` or ``stop`` does both. With `profile_process`,
the profiling runs in a child process (`ProfilerProcess`), so it does not hold this one's GIL.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from mlops.monitoring.prediction_store import as_utc
from mlops.monitoring.prediction_writer import Chunk, PredictionWriter, check_chunk
from mlops.monitoring.profiler_process import ProfilerProcess

__all__ = ["FlushReport", "LogSettings", "LogStats", "PredictionLogger", "utc_now"]


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class LogSettings:
    """Where and how often the prediction logger writes."""

    profiles_url: str
    predictions_url: str
    window_seconds: int = 300
    flush_interval_s: float = 1.0
    profile_interval_s: float = 10.0
    part_seconds: float = 60.0
    max_part_rows: int = 50_000
    max_buffered_rows: int = 200_000
    storage_options: dict[str, Any] | None = None
    profile_process: bool = False  # profile in a child process, off this process's GIL

    def __post_init__(self) -> None:
        names = ("window_seconds", "flush_interval_s", "profile_interval_s", "part_seconds")
        for name in (*names, "max_part_rows", "max_buffered_rows"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LogSettings.{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class LogStats:
    """Counters since the logger was created; last_flush_at is the last flush without error."""

    rows_recorded: int = 0
    rows_written: int = 0
    profiles_written: int = 0
    write_failures: int = 0
    dropped_rows: int = 0
    rejected_rows: int = 0
    buffered_rows: int = 0
    last_error: str | None = None
    last_flush_at: datetime | None = None


@dataclass(frozen=True)
class FlushReport:
    """What one flush wrote, what is still buffered, and what went wrong."""

    rows_written: int = 0
    profiles_written: int = 0
    buffered_rows: int = 0
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Tell whether the flush wrote everything it tried to."""
        return not self.errors


class PredictionLogger:
    """Buffer served predictions in memory and flush them to the prediction log and profiles."""

    def __init__(
        self,
        settings: LogSettings,
        *,
        model_name: str,
        clock: Callable[[], datetime] = utc_now,
        writer_id: str | None = None,
    ) -> None:
        self.writer_id = writer_id or f"{socket.gethostname()}-{os.getpid()}"
        for label, value in (("model_name", model_name), ("writer_id", self.writer_id)):
            if not value or "/" in value:
                raise ValueError(f"{label} must be non-empty and contain no '/', got {value!r}")
        self.settings = settings
        self.model_name = model_name
        self._clock = clock
        self._lock = threading.Lock()  # guards the buffer and counters, held only briefly
        self._flush_lock = threading.Lock()  # one flush at a time; never taken by record()
        self._buffer: deque[Chunk] = deque()
        self._writer = PredictionWriter(
            predictions_url=settings.predictions_url,
            profiles_url=settings.profiles_url,
            window_seconds=settings.window_seconds,
            storage_options=settings.storage_options,
            model_name=model_name,
            writer_id=self.writer_id,
            clock=clock,
            part_seconds=settings.part_seconds,
            max_part_rows=settings.max_part_rows,
        )
        self._profiler: ProfilerProcess | None = None
        if settings.profile_process:
            self._profiler = ProfilerProcess(
                profiles_url=settings.profiles_url,
                window_seconds=settings.window_seconds,
                storage_options=settings.storage_options,
                model_name=model_name,
                writer_id=self.writer_id,
            )
        self._unprofiled: list[Chunk] = []  # in the log, not yet in a profile; flush lock held
        self._profiled_at = time.monotonic()
        self._counters = LogStats()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> LogStats:
        """Return a snapshot of the counters."""
        with self._lock:
            return self._counters

    @property
    def profiler_pid(self) -> int | None:
        """Return the pid of the profiling child process; None when none runs."""
        return None if self._profiler is None else self._profiler.pid

    def record(
        self,
        *,
        request_id: str,
        model_version: str,
        features: pd.DataFrame,
        outputs: pd.DataFrame,
        received_at: datetime | None = None,
    ) -> None:
        """Buffer one served batch for the next flush; do no I/O and never raise."""
        try:
            at = as_utc(received_at or self._clock()).to_pydatetime()
            # Shallow copies: with pandas copy-on-write, later edits by the caller do not leak in.
            chunk = Chunk(
                request_id, model_version, at, features.copy(deep=False), outputs.copy(deep=False)
            )
            check_chunk(chunk)
        except Exception as exc:
            rows = len(features) if isinstance(features, pd.DataFrame) else 0
            self._count(rejected_rows=rows, error=f"record rejected: {exc}")
            return
        if not len(chunk):
            return
        with self._lock:
            self._buffer.append(chunk)
            self._bump(rows_recorded=len(chunk), buffered_rows=len(chunk))
            self._trim_buffer()

    def record_requests(
        self,
        *,
        requests: Sequence[tuple[str, datetime, int]],
        model_version: str,
        features: pd.DataFrame,
        outputs: pd.DataFrame,
        served_ms: Sequence[float] | None = None,
    ) -> None:
        """Buffer the rows of several requests at once, as one `record` per request would.

        `requests` holds (request_id, received_at, number of rows) of each request, in row order;
        `served_ms`, if given, how many milliseconds the service took to answer each of them.
        The log and profiles get the same rows; the cost per request is a small fraction of
        `record`'s, here and at the next flush. No I/O, never raises.
        """
        try:
            sizes = [size for _, _, size in requests]
            if sum(sizes) != len(features):
                raise ValueError(f"the requests hold {sum(sizes)} rows, features {len(features)}")
            if served_ms is not None and len(served_ms) != len(requests):
                raise ValueError(f"{len(served_ms)} served times for {len(requests)} requests")
            ids = np.repeat([rid for rid, _, _ in requests], sizes)
            times = pd.to_datetime([at for _, at, _ in requests], utc=True).repeat(sizes)
            took = None if served_ms is None else np.repeat(np.asarray(served_ms, float), sizes)
            chunks = []
            for start, end in self._runs(times):
                chunk = Chunk(
                    str(ids[start]), model_version, times[start].to_pydatetime(),
                    features.iloc[start:end], outputs.iloc[start:end],
                    row_ids=ids[start:end], row_times=times[start:end],
                    row_served_ms=None if took is None else took[start:end],
                )  # fmt: skip
                check_chunk(chunk)
                chunks.append(chunk)
        except Exception as exc:
            rows = len(features) if isinstance(features, pd.DataFrame) else 0
            self._count(rejected_rows=rows, error=f"record rejected: {exc}")
            return
        with self._lock:
            for chunk in chunks:
                self._buffer.append(chunk)
                self._bump(rows_recorded=len(chunk), buffered_rows=len(chunk))
            self._trim_buffer()

    def _runs(self, times: pd.DatetimeIndex) -> list[tuple[int, int]]:
        """Split rows (in time order) into runs of one date and one profile window."""
        seconds = times.as_unit("ns").asi8 // 10**9
        window = seconds - seconds % self.settings.window_seconds
        day = seconds - seconds % 86400
        breaks = np.flatnonzero((np.diff(window) != 0) | (np.diff(day) != 0)) + 1
        bounds = [0, *breaks.tolist(), len(times)]
        return [(a, b) for a, b in itertools.pairwise(bounds) if b > a]

    def flush(self) -> FlushReport:
        """Write the buffer to the log and profiles; keep what failed for next time; never raise."""
        return self._flush(timeout_s=-1, profiles=True)

    def start(self) -> None:
        """Start the background thread that flushes every flush_interval_s (and the profiler)."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._profiler is not None:
            self._profiler.start()  # loads whylogs in the child while this process goes on
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.model_name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> FlushReport:
        """Stop the background thread, flush one last time and close the profiler process."""
        deadline = time.monotonic() + timeout_s
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._thread = None
        report = self._flush(timeout_s=max(0.0, deadline - time.monotonic()), profiles=True)
        if self._profiler is None:
            return report
        errors = self._profiler.close(max(1.0, deadline - time.monotonic()))
        if errors:
            self._count(error=errors[-1])
        return replace(report, errors=(*report.errors, *errors))

    def _run(self) -> None:
        """Flush until stopped; profile when due."""
        while not self._stop_event.wait(self.settings.flush_interval_s):
            self._flush(timeout_s=-1, profiles=False)

    def _flush(self, timeout_s: float, *, profiles: bool) -> FlushReport:
        """Flush under the flush lock, waiting at most timeout_s for it (forever when < 0).

        `profiles`: update the window profiles now; otherwise only when they are due.
        """
        if not self._flush_lock.acquire(timeout=timeout_s):
            error = f"a flush was still running after {timeout_s:.1f}s; rows stay buffered"
            self._count(error=error)
            return FlushReport(buffered_rows=self.stats.buffered_rows, errors=(error,))
        try:
            return self._flush_buffer(profiles)
        finally:
            self._flush_lock.release()

    def _flush_buffer(self, profiles: bool) -> FlushReport:
        """Swap the buffer out, write it to the log, and update the profiles when due."""
        with self._lock:
            chunks = list(self._buffer)
            self._buffer.clear()
            self._bump(buffered_rows=-sum(len(c) for c in chunks))
        errors: list[str] = []
        try:
            unwritten = self._writer.write_log(chunks, errors)
        except Exception as exc:  # a bug here must neither lose rows nor kill the flusher
            errors.append(f"flush failed: {exc!r}")
            unwritten = chunks
        # Unwritten chunks come back at the next flush: queue each for profiling once only.
        queued = {id(c) for c in self._unprofiled}
        self._unprofiled.extend(c for c in chunks if not c.profiled and id(c) not in queued)
        due = time.monotonic() - self._profiled_at >= self.settings.profile_interval_s
        written_profiles = self._write_profiles(errors) if profiles or due or not chunks else 0
        rows = sum(len(c) for c in chunks) - sum(len(c) for c in unwritten)
        with self._lock:
            self._buffer.extendleft(reversed(unwritten))  # older than anything recorded since
            self._bump(
                rows_written=rows,
                profiles_written=written_profiles,
                write_failures=int(bool(errors)),
                buffered_rows=sum(len(c) for c in unwritten),
            )
            self._trim_buffer()
            if errors:
                self._counters = replace(self._counters, last_error=errors[-1])
            else:
                self._counters = replace(self._counters, last_flush_at=self._clock())
            buffered = self._counters.buffered_rows
        return FlushReport(rows, written_profiles, buffered, tuple(errors))

    def _write_profiles(self, errors: list[str]) -> int:
        """Profile the rows not profiled yet and write changed windows; the flush lock is held."""
        chunks, self._unprofiled = self._unprofiled, []
        self._profiled_at = time.monotonic()
        writer = self._writer if self._profiler is None else self._profiler
        try:
            written = writer.write_profiles(chunks, errors)
        except Exception as exc:  # a bug here must not kill the flusher
            errors.append(f"profiling failed: {exc!r}")
            written = 0
        # What a dead profiler process did not acknowledge waits for the next profile write.
        self._unprofiled = [c for c in chunks if not c.profiled]
        waiting, dropped = sum(len(c) for c in self._unprofiled), 0
        while waiting > self.settings.max_buffered_rows:  # a profiler that cannot start
            rows = len(self._unprofiled.pop(0))
            waiting, dropped = waiting - rows, dropped + rows
        if dropped:
            errors.append(f"dropped {dropped} rows from the profiles, over max_buffered_rows")
        return written

    def _trim_buffer(self) -> None:
        """Drop the oldest buffered rows beyond max_buffered_rows; call with the lock held."""
        excess = self._counters.buffered_rows - self.settings.max_buffered_rows
        while excess > 0 and self._buffer:
            head = self._buffer[0]
            drop = min(excess, len(head))
            if drop == len(head):
                self._buffer.popleft()
            else:
                head.features, head.outputs = head.features.iloc[drop:], head.outputs.iloc[drop:]
                if head.row_ids is not None and head.row_times is not None:
                    head.row_ids, head.row_times = head.row_ids[drop:], head.row_times[drop:]
                if head.row_served_ms is not None:
                    head.row_served_ms = head.row_served_ms[drop:]
            self._bump(dropped_rows=drop, buffered_rows=-drop)
            excess -= drop

    def _bump(self, **deltas: int) -> None:
        """Add deltas to integer counters; call with the lock held."""
        values = {name: getattr(self._counters, name) + delta for name, delta in deltas.items()}
        self._counters = replace(self._counters, **values)

    def _count(self, *, rejected_rows: int = 0, error: str) -> None:
        """Count rejected rows and remember the error."""
        with self._lock:
            self._bump(rejected_rows=rejected_rows)
            self._counters = replace(self._counters, last_error=error)
