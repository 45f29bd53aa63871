"""Record what the prediction service serves: a Parquet prediction log and whylogs window profiles.

``PredictionLogger.record`` only appends to memory, so it never blocks or fails a response; a
background thread (or an explicit ``flush``) does the I/O. Layout::

    <predictions_url>/<model>/date=YYYY-MM-DD/part-<YYYYMMDDTHHMMSSffffffZ>-<uuid8>.parquet
    <profiles_url>/<model>/<version>/<window start YYYYMMDDTHHMMSSZ>-<writer_id>.bin
"""

from __future__ import annotations

import io
import itertools
import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from mlops.monitoring.profile import (
    ProfileView,
    merge_profiles,
    profile_frame,
    profile_from_bytes,
    profile_to_bytes,
)
from mlops.registry.locking import write_atomic

__all__ = [
    "FlushReport",
    "LogSettings",
    "LogStats",
    "PredictionLogger",
    "read_prediction_log",
    "read_window_profiles",
    "write_log_part",
    "write_window_profile",
]

META_COLUMNS = ("request_id", "received_at", "model_version")
_WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class LogSettings:
    """Where and how often the prediction logger writes."""

    profiles_url: str
    predictions_url: str
    window_seconds: int = 300
    flush_interval_s: float = 10.0
    max_buffered_rows: int = 200_000
    storage_options: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("window_seconds", "flush_interval_s", "max_buffered_rows"):
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


@dataclass
class _Chunk:
    """Rows of one version and one date and window: one record() call, or several requests.

    Rows of several requests (record_requests) carry their own request ids and times in
    `row_ids` and `row_times`; `request_id` and `received_at` are then those of the first.
    """

    request_id: str
    version: str
    received_at: datetime
    features: pd.DataFrame
    outputs: pd.DataFrame
    profiled: bool = False
    row_ids: np.ndarray | None = None
    row_times: pd.DatetimeIndex | None = None

    def __len__(self) -> int:
        return len(self.features)

    def request_ids(self) -> np.ndarray:
        """Return the request id of every row."""
        return np.repeat(self.request_id, len(self)) if self.row_ids is None else self.row_ids

    def times(self) -> pd.DatetimeIndex:
        """Return the received_at of every row (UTC)."""
        if self.row_times is None:
            return pd.DatetimeIndex([self.received_at]).repeat(len(self))
        return self.row_times


@dataclass
class _Window:
    """Profile of one (version, window); merge_stored: fold in this writer's stored file first."""

    view: ProfileView
    dirty: bool = True
    merge_stored: bool = True


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
        self._buffer: deque[_Chunk] = deque()
        self._windows: dict[tuple[str, datetime], _Window] = {}
        self._filesystems: dict[str, tuple[AbstractFileSystem, str]] = {}
        self._counters = LogStats()
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def stats(self) -> LogStats:
        """Return a snapshot of the counters."""
        with self._lock:
            return self._counters

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
            at = _as_utc(received_at or self._clock()).to_pydatetime()
            # Shallow copies: with pandas copy-on-write, later edits by the caller do not leak in.
            chunk = _Chunk(
                request_id, model_version, at, features.copy(deep=False), outputs.copy(deep=False)
            )
            _check_chunk(chunk)
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
    ) -> None:
        """Buffer the rows of several requests at once, as one `record` per request would.

        `requests` holds (request_id, received_at, number of rows) of each request, in row order.
        The log and profiles get the same rows; the cost per request is a small fraction of
        `record`'s, here and at the next flush. No I/O, never raises.
        """
        try:
            sizes = [size for _, _, size in requests]
            if sum(sizes) != len(features):
                raise ValueError(f"the requests hold {sum(sizes)} rows, features {len(features)}")
            ids = np.repeat([rid for rid, _, _ in requests], sizes)
            times = pd.to_datetime([at for _, at, _ in requests], utc=True).repeat(sizes)
            chunks = []
            for start, end in self._runs(times):
                chunk = _Chunk(
                    str(ids[start]), model_version, times[start].to_pydatetime(),
                    features.iloc[start:end], outputs.iloc[start:end],
                    row_ids=ids[start:end], row_times=times[start:end],
                )  # fmt: skip
                _check_chunk(chunk)
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
        """Write what is buffered; keep what could not be written for the next try; never raise."""
        return self._flush(timeout_s=-1)

    def start(self) -> None:
        """Start the background thread that flushes every flush_interval_s."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop_event.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"prediction-log-{self.model_name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> FlushReport:
        """Stop the background thread and flush one last time."""
        deadline = time.monotonic() + timeout_s
        self._stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self._thread = None
        return self._flush(timeout_s=max(0.0, deadline - time.monotonic()))

    def _run(self) -> None:
        """Flush until stopped."""
        while not self._stop_event.wait(self.settings.flush_interval_s):
            self.flush()

    def _flush(self, timeout_s: float) -> FlushReport:
        """Flush under the flush lock, waiting at most timeout_s for it (forever when < 0)."""
        if not self._flush_lock.acquire(timeout=timeout_s):
            error = f"a flush was still running after {timeout_s:.1f}s; rows stay buffered"
            self._count(error=error)
            return FlushReport(buffered_rows=self.stats.buffered_rows, errors=(error,))
        try:
            return self._flush_buffer()
        finally:
            self._flush_lock.release()

    def _flush_buffer(self) -> FlushReport:
        """Swap the buffer out, profile new rows, write log parts and dirty windows."""
        with self._lock:
            chunks = list(self._buffer)
            self._buffer.clear()
            self._bump(buffered_rows=-sum(len(c) for c in chunks))
        errors: list[str] = []
        try:
            self._profile_chunks([c for c in chunks if not c.profiled], errors)
            unwritten = self._write_log(chunks, errors)
            profiles = self._write_windows(errors)
            self._evict_windows()
        except Exception as exc:  # a bug here must neither lose rows nor kill the flusher
            errors.append(f"flush failed: {exc!r}")
            unwritten, profiles = chunks, 0
        rows = sum(len(c) for c in chunks) - sum(len(c) for c in unwritten)
        with self._lock:
            self._buffer.extendleft(reversed(unwritten))  # older than anything recorded since
            self._bump(
                rows_written=rows,
                profiles_written=profiles,
                write_failures=int(bool(errors)),
                buffered_rows=sum(len(c) for c in unwritten),
            )
            self._trim_buffer()
            if errors:
                self._counters = replace(self._counters, last_error=errors[-1])
            else:
                self._counters = replace(self._counters, last_flush_at=self._clock())
            buffered = self._counters.buffered_rows
        return FlushReport(rows, profiles, buffered, tuple(errors))

    def _profile_chunks(self, chunks: list[_Chunk], errors: list[str]) -> None:
        """Profile new rows per (version, window) and merge them into the in-memory windows."""
        groups: dict[tuple[str, datetime], list[_Chunk]] = {}
        for chunk in chunks:
            key = (chunk.version, _window_start(chunk.received_at, self.settings.window_seconds))
            groups.setdefault(key, []).append(chunk)
            chunk.profiled = True  # even if profiling fails: never profile a row twice
        for key, group in groups.items():
            try:
                view = profile_frame(_join_rows(group, with_meta=False))
                window = self._windows.get(key)
                if window is None:
                    self._windows[key] = _Window(view)
                else:
                    window.view, window.dirty = merge_profiles([window.view, view]), True
            except Exception as exc:
                errors.append(f"could not profile {key[0]} window {key[1]:{_WINDOW_FORMAT}}: {exc}")

    def _write_log(self, chunks: list[_Chunk], errors: list[str]) -> list[_Chunk]:
        """Write one Parquet part per date; return the chunks that could not be written."""
        by_date: dict[date, list[_Chunk]] = {}
        for chunk in chunks:
            by_date.setdefault(chunk.received_at.date(), []).append(chunk)
        failed: set[int] = set()
        for day, group in by_date.items():
            try:
                fs, base = self._fs(self.settings.predictions_url)
                folder = f"{base}/{self.model_name}"
                write_log_part(fs, folder, _join_rows(group, with_meta=True), day, self._clock())
            except Exception as exc:
                failed.update(id(c) for c in group)
                url = self.settings.predictions_url
                errors.append(f"could not write the prediction log for {day} to {url}: {exc}")
        return [c for c in chunks if id(c) in failed]

    def _write_windows(self, errors: list[str]) -> int:
        """Write every window profile changed since its last write; return how many were."""
        written = 0
        for (version, start), window in self._windows.items():
            if not window.dirty:
                continue
            try:
                self._write_window(version, start, window)
                written += 1
            except Exception as exc:
                url = self.settings.profiles_url
                errors.append(
                    f"could not write profile {version}/{start:{_WINDOW_FORMAT}} to {url}: {exc}"
                )
        return written

    def _write_window(self, version: str, start: datetime, window: _Window) -> None:
        """Write one window profile, first folding in this writer's stored file if needed."""
        fs, base = self._fs(self.settings.profiles_url)
        folder = f"{base}/{self.model_name}/{version}"
        # A window evicted from memory and hit again by late rows must not lose its stored rows.
        view = write_window_profile(
            fs, folder, window.view, start, self.writer_id, merge_stored=window.merge_stored
        )
        window.view, window.dirty, window.merge_stored = view, False, False

    def _evict_windows(self) -> None:
        """Forget written windows that ended more than two window lengths ago."""
        horizon = timedelta(seconds=3 * self.settings.window_seconds)
        now = _as_utc(self._clock()).to_pydatetime()
        for key in [k for k, w in self._windows.items() if not w.dirty and k[1] + horizon <= now]:
            del self._windows[key]

    def _fs(self, url: str) -> tuple[AbstractFileSystem, str]:
        """Return the file system and base path of a store URL, resolved on first use."""
        if url not in self._filesystems:
            fs, base = url_to_fs(url, **(self.settings.storage_options or {}))
            self._filesystems[url] = (fs, base.rstrip("/"))
        return self._filesystems[url]

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


# -- store layout: how parts and window profiles are named, written and read back ----------------


def write_log_part(
    fs: AbstractFileSystem, folder: str, frame: pd.DataFrame, day: date, written_at: datetime
) -> str:
    """Write rows of one date as a new Parquet part under folder, atomically; return its path."""
    stamp = _as_utc(written_at).strftime("%Y%m%dT%H%M%S%fZ")
    path = f"{folder}/date={day.isoformat()}/part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    write_atomic(fs, path, buffer.getvalue())
    return path


def write_window_profile(
    fs: AbstractFileSystem,
    folder: str,
    view: ProfileView,
    start: datetime,
    writer_id: str,
    *,
    merge_stored: bool,
) -> ProfileView:
    """Replace a writer's profile of one window atomically; return the profile written."""
    path = f"{folder}/{start:{_WINDOW_FORMAT}}-{writer_id}.bin"
    if merge_stored and fs.exists(path):
        view = merge_profiles([profile_from_bytes(fs.cat_file(path)), view])
    fs.makedirs(folder, exist_ok=True)
    write_atomic(fs, path, profile_to_bytes(view))
    return view


def read_prediction_log(
    predictions_url: str,
    model_name: str,
    start: datetime | None = None,
    end: datetime | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Read the logged predictions of a model received in [start, end), oldest first."""
    fs, base = url_to_fs(predictions_url, **(storage_options or {}))
    paths = fs.glob(f"{base.rstrip('/')}/{model_name}/date=*/part-*.parquet")
    first = None if start is None else _as_utc(start).date()
    last = None if end is None else _as_utc(end).date()
    frames = [
        pd.read_parquet(io.BytesIO(fs.cat_file(path)))
        for path in sorted(paths)
        if _in_dates(path, first, last)
    ]
    if not frames:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in META_COLUMNS})
    log = pd.concat(frames, ignore_index=True)
    keep = pd.Series(True, index=log.index)
    if start is not None:
        keep &= log["received_at"] >= _as_utc(start)
    if end is not None:
        keep &= log["received_at"] < _as_utc(end)
    return log[keep].sort_values("received_at", kind="stable").reset_index(drop=True)


def read_window_profiles(
    profiles_url: str,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
    storage_options: dict[str, Any] | None = None,
) -> ProfileView | None:
    """Merge every writer's profile of the windows starting in [start, end); None if none."""
    fs, base = url_to_fs(profiles_url, **(storage_options or {}))
    try:
        paths = fs.ls(f"{base.rstrip('/')}/{model_name}/{model_version}", detail=False)
    except FileNotFoundError:
        return None
    low, high = _as_utc(start), _as_utc(end)
    views = []
    for path in sorted(paths):
        window = _file_window(str(path).rsplit("/", 1)[-1])
        if window is not None and low <= window < high:
            views.append(profile_from_bytes(fs.cat_file(path)))
    return merge_profiles(views) if views else None


def _check_chunk(chunk: _Chunk) -> None:
    """Refuse a batch whose outputs do not match its rows or whose column names clash."""
    if len(chunk.features) != len(chunk.outputs):
        raise ValueError(f"{len(chunk.features)} feature rows but {len(chunk.outputs)} output rows")
    columns = [*META_COLUMNS, *chunk.features.columns, *chunk.outputs.columns]
    if len(set(columns)) != len(columns) or not all(isinstance(c, str) for c in columns):
        raise ValueError(f"columns must be unique strings, other than {META_COLUMNS}: {columns}")


def _join_rows(chunks: list[_Chunk], *, with_meta: bool) -> pd.DataFrame:
    """Join the features and outputs of chunks (and their metadata) into one frame."""
    parts = [
        pd.concat([c.features for c in chunks], ignore_index=True),
        pd.concat([c.outputs for c in chunks], ignore_index=True),
    ]
    if with_meta:
        sizes = [len(c) for c in chunks]
        meta = {
            "request_id": np.repeat([c.request_id for c in chunks], sizes),
            "received_at": pd.DatetimeIndex([c.received_at for c in chunks]).repeat(sizes),
            "model_version": np.repeat([c.version for c in chunks], sizes),
        }
        if any(c.row_ids is not None for c in chunks):  # chunks of several requests
            meta["request_id"] = np.concatenate([c.request_ids() for c in chunks])
            times = [c.times() for c in chunks]
            meta["received_at"] = times[0].append(times[1:]) if len(times) > 1 else times[0]
        parts.insert(0, pd.DataFrame(meta, index=parts[0].index))
    return pd.concat(parts, axis=1)


def _as_utc(moment: datetime) -> pd.Timestamp:
    """Return a datetime as a UTC timestamp, reading naive ones as UTC."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def _window_start(moment: datetime, window_seconds: int) -> datetime:
    """Floor a moment to the start of its window, counting windows from the epoch."""
    seconds = int(_as_utc(moment).timestamp() // 1)
    return datetime.fromtimestamp(seconds - seconds % window_seconds, UTC)


def _file_window(name: str) -> pd.Timestamp | None:
    """Return the window start in a profile file name `<window>-<writer>.bin`; None otherwise."""
    if not name.endswith(".bin") or "-" not in name:
        return None
    try:
        return _as_utc(datetime.strptime(name.split("-", 1)[0], _WINDOW_FORMAT))
    except ValueError:
        return None


def _in_dates(path: str, first: date | None, last: date | None) -> bool:
    """Tell whether the `date=YYYY-MM-DD` folder of a part lies between two dates (inclusive)."""
    try:
        day = date.fromisoformat(path.rsplit("/", 2)[-2].removeprefix("date="))
    except ValueError:
        return False
    return (first is None or day >= first) and (last is None or day <= last)
