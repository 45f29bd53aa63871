"""Cut an ordered labelled history into the initial training rows and the batches that follow.

Sizes are rows ("5000") or, when the contract has a timestamp, durations ("90d", "28d", "12h",
"2w"): a duration batch holds the rows whose timestamps fall in [start, start + duration).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Span:
    """A size: a number of rows, or a duration of event time."""

    rows: int | None = None
    duration: timedelta | None = None

    @classmethod
    def parse(cls, text: str | int) -> Span:
        """Read "5000" (rows) or "28d" / "12h" / "2w" / "90m" / "30s" (a duration)."""
        if isinstance(text, int) or str(text).strip().isdigit():
            rows = int(text)
            if rows < 1:
                raise ValueError(f"a row count must be >= 1, got {rows}")
            return cls(rows=rows)
        match = _DURATION.match(str(text))
        if not match:
            raise ValueError(
                f"{text!r} is neither a row count (e.g. 5000) nor a duration (e.g. 28d, 12h, 2w)"
            )
        duration = timedelta(**{_UNITS[match[2]]: float(match[1])})
        if duration <= timedelta(0):
            raise ValueError(f"a duration must be positive, got {text!r}")
        return cls(duration=duration)

    def __str__(self) -> str:
        if self.rows is not None:
            return f"{self.rows} rows"
        assert self.duration is not None
        days = self.duration / timedelta(days=1)
        return f"{days:g}d" if days >= 1 else f"{self.duration / timedelta(hours=1):g}h"


@dataclass(frozen=True)
class Batch:
    """Rows [first, stop) of the history, and where they start and end (time or row number)."""

    index: int
    first: int
    stop: int
    start: Any
    end: Any

    @property
    def rows(self) -> int:
        return self.stop - self.first


@dataclass(frozen=True)
class Plan:
    """The initial training rows [0, initial_rows) and the batches replayed after them."""

    initial_rows: int
    initial_start: Any
    initial_end: Any
    batches: tuple[Batch, ...]
    batch_spec: str


def plan_batches(
    frame: pd.DataFrame,
    timestamp: str | None,
    initial: Span,
    batch: Span,
    *,
    max_batches: int | None = None,
) -> Plan:
    """Cut the ordered `frame`: the first `initial` rows train, then batches of `batch` each.

    The last batch may be shorter than the others; empty duration batches (gaps in the data) are
    skipped. Raises ValueError when the sizes need a timestamp that the data lacks, or when no
    batch is left after the initial rows.
    """
    times = _times(frame, timestamp, initial, batch)
    n = len(frame)
    if initial.rows is not None:
        first_stop = min(initial.rows, n)
    else:  # whole days from midnight, whole hours from the hour, ...
        assert times is not None and initial.duration is not None
        initial_end = _floor(times.iloc[0], initial.duration) + initial.duration
        first_stop = int(times.searchsorted(initial_end, side="left"))
    if first_stop >= n:
        raise ValueError(f"the initial {initial} take all {n} rows: no batch is left to replay")
    batches: list[Batch] = []
    cursor = first_stop
    origin = None
    if batch.duration is not None:  # batches follow the initial span, or start on a boundary
        assert times is not None
        origin = (
            initial_end if initial.duration is not None
            else _floor(times.iloc[first_stop], batch.duration)
        )  # fmt: skip
    while cursor < n and (max_batches is None or len(batches) < max_batches):
        if batch.rows is not None:
            stop = min(cursor + batch.rows, n)
        else:  # batches are aligned to the first batch's start, so gaps do not shift them
            assert times is not None and batch.duration is not None and origin is not None
            steps = (times.iloc[cursor] - origin) // batch.duration
            end_time = origin + (steps + 1) * batch.duration
            stop = int(times.searchsorted(end_time, side="left"))
        batches.append(_batch(len(batches), cursor, stop, times))
        cursor = stop
    return Plan(
        initial_rows=first_stop,
        initial_start=_label(times, 0),
        initial_end=_label(times, first_stop - 1),
        batches=tuple(batches),
        batch_spec=str(batch),
    )


def _times(frame: pd.DataFrame, timestamp: str | None, *spans: Span) -> pd.Series | None:
    if timestamp is None or timestamp not in frame.columns:
        if any(s.duration is not None for s in spans):
            raise ValueError(
                "durations need a timestamp column, and the data has none: "
                "give the sizes in rows (e.g. --initial-rows 5000 --batch-rows 1000)"
            )
        return None
    times = pd.to_datetime(frame[timestamp]).reset_index(drop=True)
    if times.isna().any():
        raise ValueError(f"{int(times.isna().sum())} rows have no {timestamp!r}: cannot replay")
    return times


def _floor(moment: pd.Timestamp, duration: timedelta) -> pd.Timestamp:
    """Round down to the largest unit the duration is a whole number of (day, hour, minute)."""
    for unit, size in (
        ("D", timedelta(days=1)),
        ("h", timedelta(hours=1)),
        ("min", timedelta(minutes=1)),
    ):
        if duration % size == timedelta(0):
            return moment.floor(unit)
    return moment.floor("s")


def _batch(index: int, first: int, stop: int, times: pd.Series | None) -> Batch:
    return Batch(index, first, stop, _label(times, first), _label(times, stop - 1))


def _label(times: pd.Series | None, position: int) -> Any:
    """A row's place in event time: its timestamp (ISO), or its row number without one."""
    return position if times is None else times.iloc[position].isoformat()
