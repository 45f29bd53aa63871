"""Time-ordered splits of a window: train, validation and the newest rows as holdout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Splits:
    """Train, validation and holdout frames, in time order."""

    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame

    def describe(self, timestamp: str | None) -> list[dict[str, Any]]:
        """Return one row per split: rows and time range (or row range)."""
        rows = []
        for name, frame in (("train", self.train), ("val", self.val), ("holdout", self.holdout)):
            first = frame[timestamp].min() if timestamp and len(frame) else None
            last = frame[timestamp].max() if timestamp and len(frame) else None
            rows.append({"split": name, "rows": len(frame), "from": str(first), "to": str(last)})
        return rows


def split_by_time(
    frame: pd.DataFrame, *, val_fraction: float = 0.15, holdout_fraction: float = 0.15
) -> Splits:
    """Cut an already time-ordered frame into train, validation and holdout, newest last."""
    n = len(frame)
    n_hold = round(n * holdout_fraction)
    n_val = round(n * val_fraction)
    if n - n_hold - n_val < 10 or n_val < 1 or n_hold < 1:
        raise ValueError(f"{n} rows are too few to split into train/validation/holdout")
    a, b = n - n_hold - n_val, n - n_hold
    return Splits(frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:])
