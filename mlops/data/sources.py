"""Read the data users bring: CSV or Parquet files, or folders of them, local or any fsspec URL.

Rows come back ordered by the contract's timestamp column (by file and row order without one).
Rows whose timestamp cannot be parsed are kept, last and inside every window, so that validation
quarantines them with a reason instead of losing them here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import fsspec
import pandas as pd

from mlops.contract.schema import normalize_timestamps
from mlops.contract.spec import Contract

EXTENSIONS = (".csv", ".csv.gz", ".parquet", ".pq")


class DataSourceError(ValueError):
    """Data that cannot be read as asked, with the URI or column in the message."""


@dataclass(frozen=True)
class Window:
    """Which rows to keep: a time range (start inclusive, end exclusive), the span `last` before
    the newest row kept, and/or the newest N."""

    start: datetime | None = None
    end: datetime | None = None
    last_rows: int | None = None
    last: timedelta | None = None

    def __post_init__(self) -> None:
        if self.last_rows is not None and self.last_rows < 0:
            raise ValueError(f"window last_rows must be >= 0 (got {self.last_rows})")
        if self.last is not None and self.last <= timedelta(0):
            raise ValueError(f"window last must be a positive span (got {self.last})")
        if self.start is not None and self.end is not None and _utc(self.start) >= _utc(self.end):
            raise ValueError(f"window start {self.start} is not before end {self.end}")


@dataclass(frozen=True)
class LoadedData:
    """The contract's columns of a data URI, ordered and windowed, with what was left out."""

    frame: pd.DataFrame
    files: tuple[str, ...]
    rows_read: int
    rows_in_window: int
    dropped_columns: tuple[str, ...]
    unlabeled_rows: int = 0
    label_files: tuple[str, ...] = ()
    label_column: str | None = None  # the target, when labels were joined from label files

    def labeled_frame(self) -> pd.DataFrame:
        """Return the rows that have a label (all rows when labels sit in the data files)."""
        if self.label_column is None:
            return self.frame
        has_label = self.frame[self.label_column].notna()
        return self.frame[has_label].reset_index(drop=True)


def list_data_files(uri: str, *, storage_options: dict | None = None) -> list[str]:
    """Return the data files at `uri` (a file, or a folder searched recursively), sorted."""
    fs, root = fsspec.core.url_to_fs(str(uri), **(storage_options or {}))
    return [_display(fs, p) for p in _find(fs, root, str(uri))]


def read_frame(
    uri: str, *, storage_options: dict | None = None, string_columns: Iterable[str] = ()
) -> tuple[pd.DataFrame, list[str]]:
    """Read and concatenate every data file at `uri`, in sorted path order.

    `string_columns` are read from CSV as text, so that identifiers such as "007" keep their zeros.
    """
    fs, root = fsspec.core.url_to_fs(str(uri), **(storage_options or {}))
    paths = _find(fs, root, str(uri))
    text: dict[str, Any] = {name: str for name in string_columns}
    frames = [_read_file(fs, path, text, _display(fs, path)) for path in paths]
    non_empty = [f for f in frames if len(f.columns)] or frames[:1]
    frame = pd.concat(non_empty, ignore_index=True) if len(non_empty) > 1 else non_empty[0]
    return frame.reset_index(drop=True), [_display(fs, p) for p in paths]


def load_dataset(
    uri: str,
    contract: Contract,
    *,
    labels_uri: str | None = None,
    window: Window | None = None,
    storage_options: dict | None = None,
) -> LoadedData:
    """Read the contract's columns from `uri`, join labels, order by time and apply the window.

    With `labels_uri`, the target comes from those files (joined on the id column, the last label
    of an id wins) and replaces any target column of the data files.
    """
    text = [c.name for c in contract.columns if c.dtype == "string"]
    raw, files = read_frame(uri, storage_options=storage_options, string_columns=text)
    label_files: list[str] = []
    if labels_uri is not None:
        raw, label_files = _join_labels(raw, contract, labels_uri, storage_options, text)
    names = [c.name for c in contract.columns]
    frame = raw[[n for n in names if n in raw.columns]].copy()
    frame = _order_and_window(frame, contract, window or Window())
    label_column = contract.target.name if labels_uri is not None else None
    unlabeled = int(frame[label_column].isna().sum()) if label_column is not None else 0
    return LoadedData(
        frame=frame,
        files=tuple(files),
        rows_read=len(raw),
        rows_in_window=len(frame),
        dropped_columns=tuple(str(c) for c in raw.columns if c not in names),
        unlabeled_rows=unlabeled,
        label_files=tuple(label_files),
        label_column=label_column,
    )


def _find(fs: Any, root: str, uri: str) -> list[str]:
    # Other processes land new files: an object store's cached listing of the folder misses them
    fs.invalidate_cache(root)
    if not fs.exists(root):
        raise DataSourceError(f"no file or folder at {uri}")
    if fs.isfile(root):
        if not _is_data_file(root):
            raise DataSourceError(f"{uri} is not a data file (read: {', '.join(EXTENSIONS)})")
        return [root]
    paths = sorted(p for p in fs.find(root) if _is_data_file(p))
    if not paths:
        raise DataSourceError(
            f"no data files under {uri} (searched recursively for {', '.join(EXTENSIONS)})"
        )
    return paths


def _is_data_file(path: str) -> bool:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    # hidden and underscore files are side files of other tools (.crc, _SUCCESS, ...)
    return not name.startswith((".", "_")) and name.lower().endswith(EXTENSIONS)


def _display(fs: Any, path: str) -> str:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return path if "file" in protocols else fs.unstrip_protocol(path)


def _read_file(fs: Any, path: str, text: dict[str, Any], shown: str) -> pd.DataFrame:
    """Read one file; an unreadable one raises a DataSourceError that names it (`shown`)."""
    lower = path.lower()
    parquet = lower.endswith((".parquet", ".pq"))
    try:
        with fs.open(path, "rb") as fh:
            if parquet:
                return pd.read_parquet(fh)
            compression = "gzip" if lower.endswith(".gz") else None
            return pd.read_csv(fh, dtype=text, compression=compression)
    except pd.errors.EmptyDataError as exc:
        raise DataSourceError(f"{shown} is empty: a CSV file needs a header row") from exc
    except (ValueError, OSError, EOFError) as exc:  # ParserError, UnicodeDecodeError, ArrowInvalid
        kind = "Parquet" if parquet else "CSV"
        reason = " ".join(str(exc).split())[:200]
        raise DataSourceError(f"{shown} cannot be read as {kind}: {reason}") from exc


def _join_labels(
    raw: pd.DataFrame,
    contract: Contract,
    labels_uri: str,
    storage_options: dict | None,
    text: list[str],
) -> tuple[pd.DataFrame, list[str]]:
    key, target = contract.id_column, contract.target.name
    if key is None:
        raise DataSourceError(
            f"labels at {labels_uri} are joined on the id column, but contract "
            f"{contract.name!r} has no column with 'role: id'"
        )
    labels, files = read_frame(labels_uri, storage_options=storage_options, string_columns=text)
    for name in (key, target):
        _require_column(labels, name, f"labels at {labels_uri}")
    _require_column(raw, key, "data files")
    latest = labels.drop_duplicates(subset=key, keep="last")
    by_id = pd.Series(latest[target].to_numpy(), index=_join_key(latest[key]))
    joined = raw.assign(**{target: _join_key(raw[key]).map(by_id).to_numpy()})
    return joined, files


def _require_column(frame: pd.DataFrame, name: str, where: str) -> None:
    if name not in frame.columns:
        found = ", ".join(map(str, frame.columns[:10]))
        raise DataSourceError(f"{where} have no column {name!r} (found: {found})")


def _join_key(ids: pd.Series) -> pd.Series:
    return ids.astype("string")


def _order_and_window(frame: pd.DataFrame, contract: Contract, window: Window) -> pd.DataFrame:
    ts = contract.timestamp_column
    if ts is None or ts not in frame.columns:
        if window.start is not None or window.end is not None or window.last is not None:
            why = "has no timestamp column" if ts is None else f"column {ts!r} is not in the data"
            raise DataSourceError(
                f"a time window needs timestamps, but contract {contract.name!r} {why}; "
                "use last_rows to keep the newest rows by row order"
            )
        return _last(frame.reset_index(drop=True), window.last_rows)
    frame[ts], parsed = normalize_timestamps(frame[ts])
    order = parsed.sort_values(kind="stable", na_position="last").index
    frame, parsed = frame.loc[order], parsed.loc[order]
    keep = pd.Series(True, index=parsed.index)
    if window.start is not None:
        keep &= (parsed >= _utc(window.start)) | parsed.isna()
    if window.end is not None:
        keep &= (parsed < _utc(window.end)) | parsed.isna()
    if window.last is not None and keep.any():
        newest = parsed[keep].max()
        if pd.notna(newest):  # rows without a time stay, as they do for start and end
            keep &= (parsed > newest - window.last) | parsed.isna()
    return _last(frame[keep].reset_index(drop=True), window.last_rows)


def _last(frame: pd.DataFrame, n: int | None) -> pd.DataFrame:
    if n is None or n >= len(frame):
        return frame
    return frame.iloc[len(frame) - n :].reset_index(drop=True)


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp if stamp.tzinfo is None else stamp.tz_convert("UTC").tz_localize(None)
