"""Replay a simulated world day by day: land its files, send its traffic, score it on its labels.

The demo keeps the whole simulation aside and lands one day at a time where the flows read
data (the raw feed of the day, and the labels that arrive that day), sends the day's
transactions to the prediction API over HTTP, and measures what was served once labels land.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from mlops.contract.spec import Contract
from mlops.data.sources import read_frame
from mlops.monitoring.performance import join_labels, performance_by_version
from mlops.monitoring.prediction_store import read_prediction_log, read_window_profiles
from mlops.monitoring.window import served_rows
from mlops.settings import Settings


def land_partition(world: Path, landed: Path, kind: str, day: dt.date) -> bool:
    """Copy one date partition (`raw` or `labels`) from the world to the landed data."""
    source = world / kind / f"date={day.isoformat()}"
    if not source.exists():
        return False
    shutil.copytree(source, landed / kind / f"date={day.isoformat()}", dirs_exist_ok=True)
    return True


def day_records(world: Path, day: dt.date) -> list[dict[str, Any]]:
    """Return a simulated day's raw rows as JSON-ready request records (no label)."""
    return frame_records(pd.read_parquet(world / "raw" / f"date={day.isoformat()}"))


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Return a frame's rows as JSON-ready records (ISO times, null for missing values)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def request_columns(frame: pd.DataFrame, contract: Contract) -> tuple[pd.DataFrame, list[str]]:
    """Keep the columns a request may carry: the contract's, less its target; name the rest."""
    known = {c.name for c in contract.columns} - {contract.target.name}
    dropped = [str(c) for c in frame.columns if c not in known]
    return frame[[c for c in frame.columns if c in known]], dropped


def post_records(
    url: str,
    records: list[dict[str, Any]],
    *,
    batch: int = 256,
    headers: dict[str, str] | None = None,
) -> dict[int, list[int]]:
    """POST records to /predict in batches; return {status: [answers, records]} (no retries)."""
    counts: dict[int, list[int]] = {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            try:
                answer = client.post("/predict", json={"records": chunk})
            except httpx.TransportError as exc:
                raise ConnectionError(f"cannot reach {url}/predict: {exc}") from exc
            seen = counts.setdefault(answer.status_code, [0, 0])
            seen[0] += 1
            seen[1] += len(chunk)
    return counts


@dataclass
class Served:
    """What one day of traffic did: rows answered, rows refused, versions that answered, when."""

    first_at: dt.datetime
    last_at: dt.datetime | None = None
    rows: int = 0
    rejected: int = 0
    versions: set[str] = field(default_factory=set)

    @property
    def span(self) -> tuple[dt.datetime, dt.datetime]:
        """Return [start, end) in whole seconds around the traffic (profile windows are 1 s)."""
        end = (self.last_at or self.first_at) + dt.timedelta(seconds=2)
        return self.first_at.replace(microsecond=0), end


def send_traffic(
    url: str,
    records: list[dict[str, Any]],
    *,
    batch: int = 250,
    headers: dict[str, str] | None = None,
) -> Served:
    """POST records to /predict in batches; drop the records a 400 names and send the rest again."""
    served = Served(first_at=dt.datetime.now(dt.UTC))
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        for start in range(0, len(records), batch):
            chunk = records[start : start + batch]
            answer = client.post("/predict", json={"records": chunk})
            if answer.status_code == 400:
                bad = refused_indexes(answer.json())
                served.rejected += len(bad)
                chunk = [r for i, r in enumerate(chunk) if i not in bad]
                if not chunk:
                    continue
                answer = client.post("/predict", json={"records": chunk})
            answer.raise_for_status()
            served.rows += len(chunk)
            served.versions.add(answer.json()["model_version"])
    served.last_at = dt.datetime.now(dt.UTC)
    return served


def refused_indexes(body: dict[str, Any]) -> set[int]:
    """Return the record indexes a 400 answer names (`loc`: ["records", i, field])."""
    found = set()
    for problem in body.get("detail", []):
        loc = problem.get("loc", [])
        if len(loc) >= 2 and loc[0] == "records" and isinstance(loc[1], int):
            found.add(loc[1])
    if not found:
        raise ValueError(f"a 400 answer that names no record: {str(body)[:300]}")
    return found


def profiled_rows(
    settings: Settings, versions: set[str], start: dt.datetime, end: dt.datetime
) -> int:
    """Return how many rows the window profiles of `versions` hold for [start, end)."""
    total = 0
    for version in versions:
        view = read_window_profiles(
            settings.store("profiles"), settings.model_name, version, start, end,
            settings.profile_window_s,
        )  # fmt: skip
        total += 0 if view is None else served_rows(view)
    return total


def wait_logged(settings: Settings, served: Served, timeout_s: float = 60) -> None:
    """Wait until the service has logged the rows `served` and added them to the window profiles.

    Monitoring reads the profiles, which the service writes after the log (at the first flush
    once traffic pauses), so waiting for the log alone would race it.
    """
    start, end = served.span
    deadline = time.monotonic() + timeout_s
    predictions = settings.store("predictions")
    while len(read_prediction_log(predictions, settings.model_name, start)) < served.rows:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the service logged fewer than {served.rows} rows in {timeout_s:.0f} s"
            )
        time.sleep(0.5)
    while profiled_rows(settings, served.versions, start, end) < served.rows:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the service profiled fewer than {served.rows} rows in {timeout_s:.0f} s"
            )
        time.sleep(0.5)


def live_performance(
    predictions_url: str,
    model_name: str,
    labels_uri: str,
    contract: Contract,
    manifests: dict[str, dict[str, Any]],
    start: dt.datetime,
    end: dt.datetime,
) -> list[dict[str, Any]]:
    """Measure every version on the rows it served in [start, end) whose labels have landed."""
    served = read_prediction_log(predictions_url, model_name, start=start, end=end)
    if served.empty or not Path(labels_uri).exists():
        return []
    labels, _ = read_frame(labels_uri)
    joined = join_labels(served, labels, contract)
    return performance_by_version(joined, contract, manifests) if len(joined) else []
