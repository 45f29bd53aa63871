"""Write buffered served rows: Parquet log parts per date and whylogs profiles per window.

The prediction logger hands its buffered chunks to a `PredictionWriter` at each flush; the writer
keeps the profiles of recent windows in memory so that late rows merge into them. It also keeps
the newest log part of each date open, rewriting it with each flush's rows until it holds
`max_part_rows` rows or is `part_seconds` old: flushing every second then makes one part a minute,
not sixty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from mlops.monitoring.prediction_store import (
    META_COLUMNS,
    WINDOW_FORMAT,
    as_utc,
    log_part_path,
    replace_log_part,
    window_start,
    write_window_profile,
)
from mlops.monitoring.profile import ProfileView, merge_profiles, profile_frame


@dataclass
class Chunk:
    """Rows of one version and one date and window: one record() call, or several requests.

    Rows of several requests (record_requests) carry their own request ids and times in
    `row_ids` and `row_times`; `request_id` and `received_at` are then those of the first.
    `row_served_ms`: how long the service took to answer each row's request (its model's part
    of it); unknown (NaN) when not given.
    """

    request_id: str
    version: str
    received_at: datetime
    features: pd.DataFrame
    outputs: pd.DataFrame
    profiled: bool = False
    row_ids: np.ndarray | None = None
    row_times: pd.DatetimeIndex | None = None
    row_served_ms: np.ndarray | None = None

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

    def served_ms(self) -> np.ndarray:
        """Return the milliseconds the service took to answer each row (NaN where unknown)."""
        if self.row_served_ms is None:
            return np.full(len(self), np.nan)
        return self.row_served_ms


@dataclass
class _Window:
    """Profile of one (version, window); merge_stored: fold in this writer's stored file first."""

    view: ProfileView
    dirty: bool = True
    merge_stored: bool = True


@dataclass
class _OpenPart:
    """The log part of one date this writer rewrites with new rows until it is full or old."""

    path: str
    table: pa.Table  # the rows written so far, kept as Arrow: new rows are converted once only
    opened_at: datetime


class PredictionWriter:
    """Write chunks of served rows to the prediction log and to per-window profiles."""

    def __init__(
        self,
        *,
        predictions_url: str,
        profiles_url: str,
        window_seconds: int,
        storage_options: dict[str, Any] | None,
        model_name: str,
        writer_id: str,
        clock: Callable[[], datetime],
        part_seconds: float = 60.0,
        max_part_rows: int = 50_000,
    ) -> None:
        self.predictions_url, self.profiles_url = predictions_url, profiles_url
        self.window_seconds = window_seconds
        self.part_seconds, self.max_part_rows = part_seconds, max_part_rows
        self.storage_options = storage_options
        self.model_name, self.writer_id = model_name, writer_id
        self._clock = clock
        self._windows: dict[tuple[str, datetime], _Window] = {}
        self._parts: dict[date, _OpenPart] = {}
        self._filesystems: dict[str, tuple[AbstractFileSystem, str]] = {}

    def write_log(self, chunks: list[Chunk], errors: list[str]) -> list[Chunk]:
        """Add chunks to the prediction log; return the chunks that could not be written."""
        unwritten = self._write_log(chunks, errors)
        self._close_parts()
        return unwritten

    def write_profiles(self, chunks: list[Chunk], errors: list[str]) -> int:
        """Profile the chunks not profiled yet and write changed windows; return how many were."""
        self._profile_chunks([c for c in chunks if not c.profiled], errors)
        profiles = self._write_windows(errors)
        self._evict_windows()
        return profiles

    def _profile_chunks(self, chunks: list[Chunk], errors: list[str]) -> None:
        """Profile new rows per (version, window) and merge them into the in-memory windows."""
        groups: dict[tuple[str, datetime], list[Chunk]] = {}
        for chunk in chunks:
            key = (chunk.version, window_start(chunk.received_at, self.window_seconds))
            groups.setdefault(key, []).append(chunk)
            chunk.profiled = True  # even if profiling fails: never profile a row twice
        for key, group in groups.items():
            try:
                view = profile_frame(join_rows(group, with_meta=False))
                window = self._windows.get(key)
                if window is None:
                    self._windows[key] = _Window(view)
                else:
                    window.view, window.dirty = merge_profiles([window.view, view]), True
            except Exception as exc:
                errors.append(f"could not profile {key[0]} window {key[1]:{WINDOW_FORMAT}}: {exc}")

    def _write_log(self, chunks: list[Chunk], errors: list[str]) -> list[Chunk]:
        """Add each date's rows to its open part; return the chunks that could not be written."""
        by_date: dict[date, list[Chunk]] = {}
        for chunk in chunks:
            by_date.setdefault(chunk.received_at.date(), []).append(chunk)
        failed: set[int] = set()
        for day, group in by_date.items():
            try:
                self._append_to_part(day, join_rows(group, with_meta=True))
            except Exception as exc:
                failed.update(id(c) for c in group)
                url = self.predictions_url
                errors.append(f"could not write the prediction log for {day} to {url}: {exc}")
        return [c for c in chunks if id(c) in failed]

    def _append_to_part(self, day: date, rows: pd.DataFrame) -> None:
        """Rewrite the date's open part with `rows` added (a new part when none is open).

        Rows whose columns differ from the open part's (other columns or types, as after a
        model change) start a part of their own: a part holds one schema.
        """
        fs, base = self._fs(self.predictions_url)
        table = pa.Table.from_pandas(rows, preserve_index=False)
        part = self._parts.pop(day, None)
        if part is not None and part.table.schema.equals(table.schema, check_metadata=True):
            table = pa.concat_tables([part.table, table])
            path, opened_at = part.path, part.opened_at
        else:
            opened_at = self._clock()
            path = log_part_path(f"{base}/{self.model_name}", day, opened_at)
        replace_log_part(fs, path, table)
        self._parts[day] = _OpenPart(path, table, opened_at)

    def _close_parts(self) -> None:
        """Stop rewriting parts that are full or old; they stay on disk as they are."""
        now = as_utc(self._clock())
        for day, part in list(self._parts.items()):
            age = (now - as_utc(part.opened_at)).total_seconds()
            if part.table.num_rows >= self.max_part_rows or age >= self.part_seconds:
                del self._parts[day]

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
                url = self.profiles_url
                errors.append(
                    f"could not write profile {version}/{start:{WINDOW_FORMAT}} to {url}: {exc}"
                )
        return written

    def _write_window(self, version: str, start: datetime, window: _Window) -> None:
        """Write one window profile, first folding in this writer's stored file if needed."""
        fs, base = self._fs(self.profiles_url)
        folder = f"{base}/{self.model_name}/{version}"
        # A window evicted from memory and hit again by late rows must not lose its stored rows.
        view = write_window_profile(
            fs, folder, window.view, start, self.writer_id, merge_stored=window.merge_stored
        )
        window.view, window.dirty, window.merge_stored = view, False, False

    def _evict_windows(self) -> None:
        """Forget written windows that ended more than two window lengths ago."""
        horizon = timedelta(seconds=3 * self.window_seconds)
        now = as_utc(self._clock()).to_pydatetime()
        for key in [k for k, w in self._windows.items() if not w.dirty and k[1] + horizon <= now]:
            del self._windows[key]

    def _fs(self, url: str) -> tuple[AbstractFileSystem, str]:
        """Return the file system and base path of a store URL, resolved on first use."""
        if url not in self._filesystems:
            fs, base = url_to_fs(url, **(self.storage_options or {}))
            self._filesystems[url] = (fs, base.rstrip("/"))
        return self._filesystems[url]


def check_chunk(chunk: Chunk) -> None:
    """Refuse a batch whose outputs do not match its rows or whose column names clash."""
    if len(chunk.features) != len(chunk.outputs):
        raise ValueError(f"{len(chunk.features)} feature rows but {len(chunk.outputs)} output rows")
    columns = [*META_COLUMNS, *chunk.features.columns, *chunk.outputs.columns]
    if len(set(columns)) != len(columns) or not all(isinstance(c, str) for c in columns):
        raise ValueError(f"columns must be unique strings, other than {META_COLUMNS}: {columns}")


def join_rows(chunks: list[Chunk], *, with_meta: bool) -> pd.DataFrame:
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
        meta["served_ms"] = np.concatenate([c.served_ms() for c in chunks]).astype("float64")
        parts.insert(0, pd.DataFrame(meta, index=parts[0].index))
    return pd.concat(parts, axis=1)
