"""Keep rows served during a data-quality incident out of training, quarantined with the reason.

monitor-model records each window it checked; a window that failed its data checks (a unit
change, nulls, unseen values: `reason` "data-quality") is an incident. A row the contract lets
through can still belong to such a window (its amount in cents is a valid amount), so training
would learn the breakage. The prediction log says which ids were served in which window: rows with
those ids are set aside like any other quarantined row, never silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from mlops.contract.spec import Contract
from mlops.monitoring.prediction_store import as_utc, read_prediction_log

REASON_COLUMN = "quarantine_reason"


@dataclass(frozen=True)
class Incident:
    """A monitoring window that failed its data checks."""

    start: datetime
    end: datetime
    checks: tuple[str, ...]

    def describe(self) -> str:
        checks = "; ".join(self.checks[:3]) or "data checks failed"
        span = f"{self.start:%Y-%m-%d %H:%M}-{self.end:%H:%M} UTC"
        return f"served {span}, a window that failed: {checks}"


def incidents(history: Iterable[dict[str, Any]]) -> list[Incident]:
    """Return the windows of a monitoring history that failed their data checks."""
    found = []
    for entry in history:
        if entry.get("reason") != "data-quality":
            continue
        start, end = entry.get("window_start"), entry.get("window_end")
        if start is None or end is None:
            continue
        found.append(
            Incident(
                pd.Timestamp(start).to_pydatetime(),
                pd.Timestamp(end).to_pydatetime(),
                tuple(entry.get("failed_checks") or ()),
            )
        )
    return found


def served_in(
    predictions_url: str, model_name: str, found: list[Incident], id_column: str
) -> dict[str, str]:
    """Return {id: why} for every id the prediction log shows served during an incident."""
    reasons: dict[str, str] = {}
    for incident in found:
        log = read_prediction_log(predictions_url, model_name, incident.start, incident.end)
        if id_column not in log.columns:
            continue
        why = incident.describe()
        for value in log[id_column].dropna().astype(str):
            reasons.setdefault(value, why)
    return reasons


def set_aside(
    frame: pd.DataFrame, contract: Contract, reasons: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows into (kept, set aside with a `quarantine_reason` column) by id."""
    key = contract.id_column
    if key is None or not reasons or key not in frame.columns:
        return frame, frame.iloc[0:0].assign(**{REASON_COLUMN: pd.Series(dtype=object)})
    ids = frame[key].astype(str)
    hit = ids.isin(reasons.keys()).to_numpy()
    aside = frame[hit].copy()
    aside[REASON_COLUMN] = ids[hit].map(reasons).to_numpy()
    return frame[~hit], aside


def outside(log: pd.DataFrame, found: list[Incident]) -> pd.DataFrame:
    """Drop prediction-log rows received during an incident: they say nothing about the model."""
    if not found or log.empty or "received_at" not in log.columns:
        return log
    received = pd.to_datetime(log["received_at"], utc=True)
    hit = pd.Series(False, index=log.index)
    for incident in found:
        hit |= (received >= as_utc(incident.start)) & (received < as_utc(incident.end))
    return log[~hit]
