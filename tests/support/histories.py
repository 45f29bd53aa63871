"""Small labelled histories with known drift (or none), for replays under retraining policies.

Each history is `initial_rows` rows to train the first model on, then `batches` batches of
`batch_rows` rows, time-ordered, with an id, a timestamp and the target last. Deterministic by seed.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import yaml

from mlops.contract.loader import parse_contract
from mlops.contract.spec import Contract

START = "2026-01-01"
SEGMENTS = ("retail", "smb", "corporate", "public")
SEGMENT_EFFECT = (-0.6, -0.2, 0.2, 0.6)  # concept A only; centred, so classes stay balanced
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANNELS = ("web", "app", "branch")
CHANNEL_EFFECT = (0.4, 0.0, -0.4)
GROWTH_PER_BATCH = 1.03
STABLE_WEIGHTS = (1.0, 1.0, -0.5, 0.0)  # x4 carries no signal
FEED_UNIT_FACTOR = 100.0  # the broken feed sends x1 in other units
FEED_FAULT_SHARE = 0.2  # and, on this share of rows each, x2 as null and an unseen segment
UNSEEN_SEGMENT = "wholesale"


@dataclass(frozen=True, eq=False)
class History:
    """A labelled history: the first `initial_rows` rows, then batches of `batch_rows` rows."""

    name: str
    contract: Contract
    contract_dict: dict
    frame: pd.DataFrame
    batch_rows: int
    initial_rows: int
    description: str

    @property
    def n_batches(self) -> int:
        return (len(self.frame) - self.initial_rows) // self.batch_rows

    @property
    def initial(self) -> pd.DataFrame:
        return self.frame.iloc[: self.initial_rows]

    def batch(self, index: int) -> pd.DataFrame:
        """Return batch `index` (0-based, after the initial rows)."""
        start = self.initial_rows + index * self.batch_rows
        return self.frame.iloc[start : start + self.batch_rows]


def recurring_phases(batches: int) -> list[str]:
    """Return the concept of each batch of `recurring_binary`: thirds of A, then B, then A."""
    return ["B" if b * 3 // batches == 1 else "A" for b in range(batches)]


def recurring_binary(
    *, batches: int = 24, batch_rows: int = 1000, initial_rows: int = 6000, seed: int = 0
) -> History:
    """Balanced binary labels whose concept flips from A to B and back, features unchanged."""
    rng = np.random.default_rng(seed)
    n = initial_rows + batches * batch_rows
    x = rng.normal(0.0, 1.0, (n, 4))
    seg = rng.integers(0, len(SEGMENTS), n)
    concept_a = x[:, 0] + x[:, 1] + np.asarray(SEGMENT_EFFECT)[seg]
    concept_b = -x[:, 0] + x[:, 2]
    phase = np.r_[np.full(initial_rows, "A"), np.repeat(recurring_phases(batches), batch_rows)]
    latent = np.where(phase == "B", concept_b, concept_a) + rng.normal(0.0, 0.5, n)
    data = {f"x{i + 1}": x[:, i] for i in range(4)}
    data["segment"] = np.asarray(SEGMENTS, dtype=object)[seg]
    data["label"] = _above_chunk_median(latent, initial_rows, batch_rows)
    features = {f"x{i + 1}": _numeric(f"Standard normal feature {i + 1}.") for i in range(4)}
    features["segment"] = _categorical("Customer segment.", SEGMENTS, slice_=True)
    target = {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]}
    description = (
        "Balanced binary labels; concept A (x1 + x2 + segment) in the initial rows and the first "
        "third of the batches, concept B (-x1 + x3) in the middle third, A again in the last third."
    )
    columns = {**features, "label": target}
    sizes = (batch_rows, initial_rows)
    return _history("recurring-binary", description, _daily(n, batch_rows), data, columns, sizes)


def growing_regression(
    *, batches: int = 24, batch_rows: int = 700, initial_rows: int = 6000, seed: int = 0
) -> History:
    """Hourly demand that grows by 3% per batch after the initial rows while features stay put."""
    rng = np.random.default_rng(seed)
    n = initial_rows + batches * batch_rows
    stamps = pd.date_range(START, periods=n, freq="h")
    hour = stamps.hour.to_numpy().astype(np.int64)
    weekday = stamps.dayofweek.to_numpy()
    temperature = 14.0 + 6.0 * np.sin(2 * np.pi * (hour - 9) / 24) + rng.normal(0.0, 2.0, n)
    humidity = np.clip(70.0 - 1.5 * (temperature - 14.0) + rng.normal(0.0, 5.0, n), 0.0, 100.0)
    peaks = np.exp(-((hour - 8) ** 2) / 4.0) + np.exp(-((hour - 18) ** 2) / 6.0)
    base = (
        100.0
        + 50.0 * peaks
        - 15.0 * (weekday >= 5)
        + 2.0 * (temperature - 14.0)
        - 0.1 * (humidity - 70.0)
    )
    after = np.clip(np.arange(n) - initial_rows, 0, None) / batch_rows
    growth = GROWTH_PER_BATCH**after
    data = {
        "hour": hour,
        "weekday": np.asarray(WEEKDAYS, dtype=object)[weekday],
        "temperature": temperature,
        "humidity": humidity,
        "demand": np.clip((base + rng.normal(0.0, 6.0, n)) * growth, 0.0, None),
    }
    features = {
        "hour": {
            **_numeric("Hour of the day (0-23)."),
            "dtype": "int",
            "checks": {"min": 0, "max": 23},
        },
        "weekday": _categorical("Day of the week.", WEEKDAYS, slice_=True),
        "temperature": _numeric("Air temperature in degrees Celsius."),
        "humidity": {**_numeric("Relative humidity in %."), "checks": {"min": 0, "max": 100}},
    }
    target = {"role": "target", "dtype": "float", "task": "regression", "checks": {"min": 0}}
    description = (
        "Hourly demand; flat during the initial rows, then growing by 3% per batch "
        "(continuously, row by row) while hour, weekday, temperature and humidity stay put."
    )
    columns = {**features, "demand": target}
    sizes = (batch_rows, initial_rows)
    return _history("growing-regression", description, stamps, data, columns, sizes)


def low_volume_binary(
    *, batches: int = 30, batch_rows: int = 500, initial_rows: int = 3000, seed: int = 0
) -> History:
    """Few rows per batch; from halfway x1's mean moves up and the boundary rotates to x2."""
    rng = np.random.default_rng(seed)
    n = initial_rows + batches * batch_rows
    position = (np.arange(n) - initial_rows) / batch_rows  # in batches, negative before batch 0
    half = batches // 2
    progress = np.clip((position - half) / max(batches - half, 1), 0.0, 1.0)
    x = rng.normal(0.0, 1.0, (n, 3))
    x[:, 0] += 1.5 * progress
    channel = rng.integers(0, len(CHANNELS), n)
    angle = 0.3 + 1.3 * progress  # from mostly x1 to mostly x2
    latent = (
        2.0 * (np.cos(angle) * x[:, 0] + np.sin(angle) * x[:, 1])
        + 0.3 * x[:, 2]
        + np.asarray(CHANNEL_EFFECT)[channel]
        + rng.normal(0.0, 0.7, n)
    )
    data = {f"x{i + 1}": x[:, i] for i in range(3)}
    data["channel"] = np.asarray(CHANNELS, dtype=object)[channel]
    data["label"] = (latent > 0).astype(np.int64)
    features = {f"x{i + 1}": _numeric(f"Numeric feature {i + 1}.") for i in range(3)}
    features["channel"] = _categorical("Application channel.", CHANNELS, slice_=True)
    target = {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]}
    description = (
        "Low-volume binary stream; from the middle batch on, x1's mean rises by up to 1.5 and the "
        "decision boundary rotates gradually from x1 towards x2."
    )
    columns = {**features, "label": target}
    sizes = (batch_rows, initial_rows)
    return _history("low-volume-binary", description, _daily(n, batch_rows), data, columns, sizes)


def stable_binary(
    *, batches: int = 24, batch_rows: int = 1000, initial_rows: int = 6000, seed: int = 0
) -> History:
    """Balanced binary labels of one fixed concept on features that never move: no drift."""
    data = _stable_data(np.random.default_rng(seed), initial_rows + batches * batch_rows)
    description = (
        "Balanced binary labels of one concept (x1 + x2 - 0.5 x3 + segment) on i.i.d. features: "
        "the same distribution and the same concept in the initial rows and in every batch."
    )
    n, sizes = len(data["label"]), (batch_rows, initial_rows)
    return _history(
        "stable-binary", description, _daily(n, batch_rows), data, _stable_columns(), sizes
    )


def broken_feed_batches(batches: int) -> list[int]:
    """Return the batches of `broken_feed_binary` that arrive broken: 3 from the middle on."""
    return list(range(batches // 2, min(batches // 2 + 3, batches)))


def broken_feed_binary(
    *, batches: int = 24, batch_rows: int = 1000, initial_rows: int = 6000, seed: int = 0
) -> History:
    """`stable_binary`'s world, but a few consecutive batches arrive from a broken feed.

    In the batches of `broken_feed_batches`: x1 is in other units (x100), x2 is null on 20% of
    the rows and segment holds an unseen value on 20% of them. Labels come from the true
    values: the world does not change, only what the feed reports of it.
    """
    rng = np.random.default_rng(seed)
    n = initial_rows + batches * batch_rows
    data = _stable_data(rng, n)  # the same draws as stable_binary's: rows equal outside the break
    broken = np.zeros(n, dtype=bool)
    for b in broken_feed_batches(batches):
        broken[initial_rows + b * batch_rows : initial_rows + (b + 1) * batch_rows] = True
    data["x1"] = np.where(broken, data["x1"] * FEED_UNIT_FACTOR, data["x1"])
    data["x2"] = np.where(broken & (rng.random(n) < FEED_FAULT_SHARE), np.nan, data["x2"])
    unseen = broken & (rng.random(n) < FEED_FAULT_SHARE)
    data["segment"] = np.where(unseen, UNSEEN_SEGMENT, data["segment"]).astype(object)
    description = (
        "stable-binary's world; batches "
        + ", ".join(str(b) for b in broken_feed_batches(batches))
        + " come from a broken feed: x1 x100 (other units), x2 null on 20% of rows, "
        f"segment {UNSEEN_SEGMENT!r} (unseen) on 20% of rows. Labels follow the true values."
    )
    sizes = (batch_rows, initial_rows)
    return _history(
        "broken-feed-binary", description, _daily(n, batch_rows), data, _stable_columns(), sizes
    )


def write_history(
    history: History,
    folder: str | Path,
    *,
    fmt: Literal["csv", "parquet"] = "csv",
    with_timestamp: bool = True,
) -> tuple[Path, Path]:
    """Write the data and its contract YAML to `folder`; return (data path, contract path).

    Without the timestamp, the column leaves both the data and the contract, so that rows are
    ordered by row order only.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet' (got {fmt!r})")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    frame, doc = history.frame, copy.deepcopy(history.contract_dict)
    ts = history.contract.timestamp_column
    if not with_timestamp and ts is not None:
        frame = frame.drop(columns=[ts])
        del doc["columns"][ts]
    data_path = folder / f"{history.name}.{fmt}"
    if fmt == "csv":
        frame.to_csv(data_path, index=False)
    else:
        frame.to_parquet(data_path, index=False)
    contract_path = folder / f"{history.name}.yaml"
    # column order is the models' input order: keep it
    contract_path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return data_path, contract_path


def _history(
    name: str,
    description: str,
    stamps: pd.DatetimeIndex,
    data: dict[str, Any],
    columns: dict[str, Any],
    sizes: tuple[int, int],
) -> History:
    """Put an id and a timestamp before `data` (declared by `columns`) and build the contract."""
    n, prefix = len(stamps), "".join(word[0] for word in name.split("-"))
    declared: dict[str, Any] = {
        "row_id": {
            "role": "id",
            "dtype": "string",
            "description": "Unique row id.",
            "checks": {"regex": f"^{prefix}-[0-9]{{6,}}$", "unique": True},
        },
        "timestamp": {"role": "timestamp", "dtype": "datetime", "description": "Event time."},
        **columns,
    }
    doc = {"name": name, "description": description, "version": 1, "columns": declared}
    frame = pd.DataFrame(
        {
            "row_id": [f"{prefix}-{i:06d}" for i in range(n)],
            "timestamp": stamps,
            **data,
        }
    )
    batch_rows, initial_rows = sizes
    contract = parse_contract(doc, source=name)
    return History(name, contract, doc, frame, batch_rows, initial_rows, description)


def _stable_data(rng: np.random.Generator, n: int) -> dict[str, Any]:
    """Draw `n` i.i.d. rows of the stable world: four normal features, a segment, the label."""
    x = rng.normal(0.0, 1.0, (n, 4))
    seg = rng.integers(0, len(SEGMENTS), n)
    latent = x @ np.asarray(STABLE_WEIGHTS) + np.asarray(SEGMENT_EFFECT)[seg]
    latent += rng.normal(0.0, 0.7, n)
    data: dict[str, Any] = {f"x{i + 1}": x[:, i] for i in range(4)}
    data["segment"] = np.asarray(SEGMENTS, dtype=object)[seg]
    data["label"] = (latent > 0).astype(np.int64)  # symmetric latent: about 50% positives
    return data


def _stable_columns() -> dict[str, Any]:
    """Declare the stable world's columns: x1..x4, segment, then the binary label."""
    features = {f"x{i + 1}": _numeric(f"Standard normal feature {i + 1}.") for i in range(4)}
    features["segment"] = _categorical("Customer segment.", SEGMENTS, slice_=True)
    target = {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]}
    return {**features, "label": target}


def _daily(n: int, batch_rows: int) -> pd.DatetimeIndex:
    """Return `n` evenly spaced timestamps, `batch_rows` of them per day."""
    return pd.date_range(START, periods=n, freq=pd.Timedelta(days=1) / batch_rows)


def _above_chunk_median(latent: np.ndarray, initial_rows: int, batch_rows: int) -> np.ndarray:
    """Label 1 above the median of the initial rows and of each batch: 50% positives in each."""
    labels = np.empty(len(latent), dtype=np.int64)
    bounds = sorted({0, *range(initial_rows, len(latent) + 1, batch_rows)})
    for lo, hi in itertools.pairwise(bounds):
        labels[lo:hi] = latent[lo:hi] > np.median(latent[lo:hi])
    return labels


def _numeric(description: str) -> dict[str, Any]:
    return {"role": "feature", "dtype": "float", "kind": "numeric", "description": description}


def _categorical(description: str, values: tuple[str, ...], *, slice_: bool) -> dict[str, Any]:
    return {
        "role": "feature",
        "dtype": "string",
        "kind": "categorical",
        "slice": slice_,
        "description": description,
        "checks": {"allowed": list(values)},
    }
