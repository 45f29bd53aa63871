"""Write and read the prediction store: a Parquet prediction log and whylogs window profiles.

Layout::

    <predictions_url>/<model>/date=YYYY-MM-DD/part-<YYYYMMDDTHHMMSSffffffZ>-<uuid8>.parquet
    <profiles_url>/<model>/<version>/<window start YYYYMMDDTHHMMSSZ>-<writer_id>.bin

A profile file holds the rows served in [window start, window start + window length); the
length is the writer's `window_seconds` (settings.profile_window_s), which readers pass too.

Every file is written whole through an atomic replace, so readers never see half a part. A
writer keeps its newest part of a date open for a while and rewrites it with the rows of each
flush (the same path, more rows), so that frequent flushes do not make many small parts.
"""

from __future__ import annotations

import io
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs

from mlops.monitoring.profile import (
    ProfileView,
    merge_profiles,
    profile_from_bytes,
    profile_to_bytes,
)
from mlops.registry.locking import write_atomic

__all__ = [
    "META_COLUMNS",
    "WINDOW_FORMAT",
    "as_utc",
    "log_part_path",
    "read_overlapping_profiles",
    "read_prediction_log",
    "read_window_profiles",
    "replace_log_part",
    "window_start",
    "write_log_part",
    "write_window_profile",
]

META_COLUMNS = ("request_id", "received_at", "model_version", "served_ms")
WINDOW_FORMAT = "%Y%m%dT%H%M%SZ"


def write_log_part(
    fs: AbstractFileSystem, folder: str, frame: pd.DataFrame, day: date, written_at: datetime
) -> str:
    """Write rows of one date as a new Parquet part under folder, atomically; return its path."""
    path = log_part_path(folder, day, written_at)
    replace_log_part(fs, path, frame)
    return path


def log_part_path(folder: str, day: date, written_at: datetime) -> str:
    """Return the path of a new, unique log part of one date under folder."""
    stamp = as_utc(written_at).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{folder}/date={day.isoformat()}/part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"


def replace_log_part(fs: AbstractFileSystem, path: str, rows: pd.DataFrame | pa.Table) -> None:
    """Write (or rewrite with more rows) a log part atomically: readers see it whole."""
    buffer = io.BytesIO()
    if isinstance(rows, pa.Table):
        pq.write_table(rows, buffer)
    else:
        rows.to_parquet(buffer, index=False)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    write_atomic(fs, path, buffer.getvalue())


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
    path = f"{folder}/{start:{WINDOW_FORMAT}}-{writer_id}.bin"
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
    folder = f"{base.rstrip('/')}/{model_name}"
    fs.invalidate_cache(folder)  # other processes write the parts; a cached listing misses them
    paths = fs.glob(f"{folder}/date=*/part-*.parquet")
    first = None if start is None else as_utc(start).date()
    last = None if end is None else as_utc(end).date()
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
        keep &= log["received_at"] >= as_utc(start)
    if end is not None:
        keep &= log["received_at"] < as_utc(end)
    return log[keep].sort_values("received_at", kind="stable").reset_index(drop=True)


def read_window_profiles(
    profiles_url: str,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
    window_seconds: int,
    storage_options: dict[str, Any] | None = None,
) -> ProfileView | None:
    """Merge every writer's profile of the windows overlapping [start, end); None if none.

    A profile window [s, s + window_seconds) overlaps when s < end and s + window_seconds > start,
    so a monitoring window that starts or ends inside a profile window takes all of it.
    """
    view, _ = read_overlapping_profiles(
        profiles_url, model_name, model_version, start, end, window_seconds, storage_options
    )
    return view


def read_overlapping_profiles(
    profiles_url: str,
    model_name: str,
    model_version: str,
    start: datetime,
    end: datetime,
    window_seconds: int,
    storage_options: dict[str, Any] | None = None,
) -> tuple[ProfileView | None, list[datetime]]:
    """Merge the profiles of the windows overlapping [start, end); return it and their starts.

    The starts are the distinct profile windows merged, oldest first (none: no view).
    """
    fs, base = url_to_fs(profiles_url, **(storage_options or {}))
    folder = f"{base.rstrip('/')}/{model_name}/{model_version}"
    fs.invalidate_cache(folder)  # other processes write the windows; a cached listing misses them
    try:
        paths = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return None, []
    low, high = as_utc(start), as_utc(end)
    length = pd.Timedelta(seconds=window_seconds)
    views, starts = [], set()
    for path in sorted(paths):
        window = _file_window(str(path).rsplit("/", 1)[-1])
        if window is not None and window < high and window + length > low:
            views.append(profile_from_bytes(fs.cat_file(path)))
            starts.add(window.to_pydatetime())
    return (merge_profiles(views) if views else None), sorted(starts)


def as_utc(moment: datetime) -> pd.Timestamp:
    """Return a datetime as a UTC timestamp, reading naive ones as UTC."""
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)


def window_start(moment: datetime, window_seconds: int) -> datetime:
    """Floor a moment to the start of its window, counting windows from the epoch."""
    seconds = int(as_utc(moment).timestamp() // 1)
    return datetime.fromtimestamp(seconds - seconds % window_seconds, UTC)


def _file_window(name: str) -> pd.Timestamp | None:
    """Return the window start in a profile file name `<window>-<writer>.bin`; None otherwise."""
    if not name.endswith(".bin") or "-" not in name:
        return None
    try:
        return as_utc(datetime.strptime(name.split("-", 1)[0], WINDOW_FORMAT))
    except ValueError:
        return None


def _in_dates(path: str, first: date | None, last: date | None) -> bool:
    """Tell whether the `date=YYYY-MM-DD` folder of a part lies between two dates (inclusive)."""
    try:
        day = date.fromisoformat(path.rsplit("/", 2)[-2].removeprefix("date="))
    except ValueError:
        return False
    return (first is None or day >= first) and (last is None or day <= last)
