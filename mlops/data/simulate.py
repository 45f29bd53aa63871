"""Simulate card-transaction fraud with a ground-truth drift scenario, into date partitions."""

from __future__ import annotations

import datetime as dt
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd
from rich.progress import track

from mlops.data import scenario as world
from mlops.data.scenario import ScenarioEvent, SimulationConfig, scenario_events

SIMULATOR_CONTRACT = Path(__file__).resolve().parents[2] / "contracts" / "card_fraud.yaml"
ID_COLUMN = "transaction_id"
TIMESTAMP_COLUMN = "timestamp"
TARGET_COLUMN = "is_fraud"
LABEL_TIME_COLUMN = "label_time"
AMOUNT_RANGE = (0.5, 25_000.0)
N_MERCHANTS = 3000
N_RISKY_MERCHANTS = 25
DISTANCE_NULL_SHARE = 0.03  # geolocation unavailable
KEYED_SHARE = 0.02  # pos payments with the card number typed in: card not present

Columns = dict[str, np.ndarray]


@dataclass(frozen=True)
class Merchants:
    """The merchant population, sorted by category so each category is a contiguous range."""

    ids: np.ndarray
    category: np.ndarray
    popularity: np.ndarray
    category_start: np.ndarray
    category_count: np.ndarray
    risky: np.ndarray


@dataclass(frozen=True)
class SimulationResult:
    """Where a simulation wrote its files, how many rows, and its ground-truth events."""

    out: str
    raw_paths: tuple[str, ...]
    label_paths: tuple[str, ...]
    scenario_path: str
    rows: int
    fraud_rows: int
    events: tuple[ScenarioEvent, ...]


@functools.lru_cache(maxsize=8)
def merchant_population(seed: int) -> Merchants:
    """Draw the merchant population shared by every day of a seed."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))
    shares = world.CATEGORY_MIX
    category = np.sort(rng.choice(len(shares), N_MERCHANTS, p=shares))
    count = np.bincount(category, minlength=len(shares))
    popularity = 1.0 / (1.0 + rng.permutation(N_MERCHANTS)) ** 0.8
    numbers = rng.choice(90_000, N_MERCHANTS, replace=False) + 10_000
    merchants = Merchants(
        ids=np.char.add("mer-", numbers.astype(str)),
        category=category,
        popularity=popularity / popularity.sum(),
        category_start=np.concatenate([[0], np.cumsum(count)[:-1]]),
        category_count=count,
        risky=rng.choice(N_MERCHANTS, N_RISKY_MERCHANTS, replace=False),
    )
    for array in vars(merchants).values():
        array.setflags(write=False)  # cached and shared between calls
    return merchants


def _merchant_in(rng: np.random.Generator, m: Merchants, categories: np.ndarray) -> np.ndarray:
    """Pick a uniformly random merchant within each given category."""
    offset = (rng.random(categories.size) * m.category_count[categories]).astype(np.int64)
    return m.category_start[categories] + offset


def _foreign_distance(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.clip(rng.lognormal(np.log(3000.0), 0.6, n), 300.0, 20_000.0)


def _sample_genuine(rng: np.random.Generator, n: int, m: Merchants, shift: float) -> Columns:
    """Draw one day of genuine transactions, categoricals as integer codes."""
    mix = (1 - shift) * np.array(world.CHANNEL_MIX) + shift * np.array(world.CHANNEL_MIX_SHIFTED)
    channel = rng.choice(len(world.CHANNELS), n, p=mix)
    merchant = rng.choice(N_MERCHANTS, n, p=m.popularity)
    atm = channel == world.CHANNELS.index("atm")
    merchant[atm] = _merchant_in(
        rng, m, np.full(atm.sum(), world.CATEGORY_NAMES.index("money_transfer"))
    )
    country = rng.choice(len(world.COUNTRIES), n, p=world.COUNTRY_MIX)
    medians = np.array(world.CATEGORY_MEDIAN_USD, dtype=float)[m.category[merchant]]
    new_account = rng.random(n) < 0.06
    return {
        "hour": rng.choice(24, n, p=np.array(world.HOUR_WEIGHTS) / np.sum(world.HOUR_WEIGHTS)),
        "channel": channel,
        "merchant": merchant,
        "country": country,
        "amount": rng.lognormal(np.log(medians * (1 + (world.AMOUNT_SHIFT - 1) * shift)), 0.9),
        "customer_age": np.clip(np.round(rng.normal(44, 15, n)), 18, 95).astype(np.int64),
        "account_age_days": np.where(
            new_account, rng.integers(0, 60, n), np.minimum(rng.gamma(2.0, 900.0, n), 15_000)
        ).astype(np.int64),
        "distance": np.where(
            country == 0,
            np.minimum(rng.lognormal(np.log(8.0), 1.1, n), 4500.0),
            _foreign_distance(rng, n),
        ),
        "txn_count_24h": rng.poisson(1.8, n),
    }


def _draw(
    rng: np.random.Generator, names: tuple[str, ...], mix: dict[str, float], k: int
) -> np.ndarray:
    """Draw k codes of names with the given probabilities."""
    return rng.choice([names.index(name) for name in mix], k, p=np.array(list(mix.values())))


def _apply_pattern(
    rng: np.random.Generator, cols: Columns, idx: np.ndarray, look: world.FraudPattern, m: Merchants
) -> None:
    """Overwrite the rows at idx with what one fraud pattern looks like."""
    k = idx.size
    if look.channels:
        cols["channel"][idx] = _draw(rng, world.CHANNELS, look.channels, k)
    if look.categories:
        categories = _draw(rng, world.CATEGORY_NAMES, look.categories, k)
        cols["merchant"][idx] = _merchant_in(rng, m, categories)
    if look.risky_merchant:
        cols["merchant"][idx] = rng.choice(m.risky, k)
    if look.countries:
        cols["country"][idx] = _draw(rng, world.COUNTRIES, look.countries, k)
    if look.far_from_home:
        cols["distance"][idx] = _foreign_distance(rng, k)
    if look.amount_usd:
        cols["amount"][idx] = rng.lognormal(np.log(look.amount_usd[0]), look.amount_usd[1], k)
    night = idx[rng.random(k) < look.night_share]
    cols["hour"][night] = rng.integers(0, 6, night.size)
    if look.new_account:
        cols["account_age_days"][idx] = rng.integers(0, 21, k)
    if look.txn_burst:
        cols["txn_count_24h"][idx] = rng.integers(8, 41, k)


def _inject_fraud(rng: np.random.Generator, cols: Columns, m: Merchants, drift: bool) -> np.ndarray:
    """Turn a random share of the rows into fraud of some pattern; return the fraud mask."""
    fraud = rng.random(cols["hour"].size) < world.FRAUD_RATE
    idx = np.flatnonzero(fraud)
    mix = world.PATTERN_MIX_DRIFTED if drift else world.PATTERN_MIX
    pattern = rng.choice(len(world.FRAUD_PATTERNS), idx.size, p=mix)
    for code, look in enumerate(world.FRAUD_PATTERNS.values()):
        _apply_pattern(rng, cols, idx[pattern == code], look, m)
    return fraud


def _feature_frame(
    rng: np.random.Generator, cols: Columns, m: Merchants, day: dt.date
) -> pd.DataFrame:
    """Turn codes into values; derive timestamps, amounts, card presence, missing distances."""
    n = cols["hour"].size
    micros = (cols["hour"] * 3600 + rng.integers(0, 3600, n)) * 1_000_000
    micros += rng.integers(0, 1_000_000, n)
    channel = np.array(world.CHANNELS)[cols["channel"]]
    amount = np.clip(cols["amount"], *AMOUNT_RANGE)
    amount[channel == "atm"] = np.maximum(20.0, np.round(amount[channel == "atm"] / 20.0) * 20.0)
    keyed = (channel == "pos") & (rng.random(n) < KEYED_SHARE)
    distance = np.round(cols["distance"], 2)
    distance[rng.random(n) < DISTANCE_NULL_SHARE] = np.nan
    return pd.DataFrame(
        {
            ID_COLUMN: "",  # assigned once rows are in time order
            TIMESTAMP_COLUMN: np.datetime64(day, "ns") + (micros * 1000).astype("timedelta64[ns]"),
            "amount": np.round(amount, 2),
            "merchant_category": np.array(world.CATEGORY_NAMES)[m.category[cols["merchant"]]],
            "merchant_id": m.ids[cols["merchant"]],
            "channel": channel,
            "country": np.array(world.COUNTRIES)[cols["country"]],
            "card_present": (channel != "online") & ~keyed,
            "hour": cols["hour"].astype(np.int64),
            "customer_age": cols["customer_age"],
            "account_age_days": cols["account_age_days"],
            "distance_from_home_km": distance,
            "txn_count_24h": cols["txn_count_24h"].astype(np.int64),
        }
    )


def generate_day(config: SimulationConfig, day_index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate one day's features (with id and timestamp) and labels (id, is_fraud, label_time)."""
    if not 0 <= day_index < config.days:
        raise ValueError(f"day_index must be in 0..{config.days - 1}, got {day_index}")
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0, day_index)))
    merchants, conditions = (
        merchant_population(config.seed),
        world.day_conditions(config, day_index),
    )
    day = config.date_of(day_index)
    cols = _sample_genuine(rng, config.rows_per_day, merchants, conditions.shift)
    fraud = _inject_fraud(rng, cols, merchants, conditions.concept_drift)
    features = _feature_frame(rng, cols, merchants, day)
    order = np.argsort(features[TIMESTAMP_COLUMN].to_numpy(), kind="stable")
    features = features.iloc[order].reset_index(drop=True)
    rows = np.arange(len(features)).astype(str)
    features[ID_COLUMN] = np.char.add(f"tx-{day:%Y%m%d}-", np.char.zfill(rows, 6))
    labels = pd.DataFrame(
        {
            ID_COLUMN: features[ID_COLUMN],
            TARGET_COLUMN: fraud[order].astype(np.int64),
            LABEL_TIME_COLUMN: features[TIMESTAMP_COLUMN]
            + pd.Timedelta(days=config.label_delay_days),
        }
    )
    if conditions.incident:
        features = world.corrupt_for_incident(features, rng)
    return features, labels


def labelled_rows(config: SimulationConfig, *, days: int | None = None) -> pd.DataFrame:
    """Return the first `days` simulated days (default: all) with each row's label joined."""
    frames = []
    for day_index in range(config.days if days is None else days):
        features, labels = generate_day(config, day_index)
        frames.append(features.merge(labels[[ID_COLUMN, TARGET_COLUMN]], on=ID_COLUMN))
    return pd.concat(frames, ignore_index=True)


def _write_parquet(fs: Any, path: str, frame: pd.DataFrame) -> None:
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as handle:
        frame.to_parquet(handle, index=False, engine="pyarrow")


def simulate(out: str, config: SimulationConfig, *, progress: bool = False) -> SimulationResult:
    """Write raw partitions, delayed label partitions and scenario.json under out."""
    fs, root = fsspec.core.url_to_fs(out)
    root, out = root.rstrip("/"), out.rstrip("/")
    paths: dict[str, list[str]] = {"raw": [], "labels": []}
    rows = fraud_rows = 0
    for day_index in track(range(config.days), "Simulating days", disable=not progress):
        features, labels = generate_day(config, day_index)
        day = config.date_of(day_index)
        arrival = day + dt.timedelta(days=config.label_delay_days)
        for kind, when, frame in (("raw", day, features), ("labels", arrival, labels)):
            partition = f"{kind}/date={when.isoformat()}/part-000.parquet"
            _write_parquet(fs, f"{root}/{partition}", frame)
            paths[kind].append(f"{out}/{partition}")
        rows += len(features)
        fraud_rows += int(labels[TARGET_COLUMN].sum())
    with fs.open(f"{root}/scenario.json", "w") as handle:
        json.dump(world.scenario_document(config), handle, indent=2)
    return SimulationResult(
        out=out,
        raw_paths=tuple(paths["raw"]),
        label_paths=tuple(paths["labels"]),
        scenario_path=f"{out}/scenario.json",
        rows=rows,
        fraud_rows=fraud_rows,
        events=tuple(scenario_events(config)),
    )
