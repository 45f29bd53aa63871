"""Describe the simulated card-fraud world: its vocabulary, its timeline of events, its incident."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

ScenarioName = Literal["drift", "stable"]
EventKind = Literal["covariate_shift", "concept_drift", "data_quality", "recovery"]
SCENARIOS: tuple[str, ...] = ("drift", "stable")
MIN_DRIFT_DAYS = 10
MAX_ROWS = 999_999  # the transaction id holds a six-digit row number

# Merchant categories, their share of transactions and their median amount in USD.
CATEGORY_NAMES = (
    "grocery",
    "restaurant",
    "utilities",
    "fuel",
    "fashion",
    "electronics",
    "entertainment",
    "digital_goods",
    "health",
    "travel",
    "gaming",
    "money_transfer",
    "jewelry",
)
CATEGORY_MIX = (0.18, 0.16, 0.08, 0.08, 0.09, 0.07, 0.07, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02)
CATEGORY_MEDIAN_USD = (35, 28, 90, 45, 60, 140, 35, 15, 50, 250, 20, 150, 300)
CHANNELS = ("online", "pos", "contactless", "atm")
COUNTRIES = ("US", "CA", "MX", "GB", "DE", "FR", "BR", "IN", "NG", "JP")  # cards are issued in US
COUNTRY_MIX = (0.72, 0.06, 0.04, 0.04, 0.03, 0.03, 0.02, 0.02, 0.02, 0.02)
HOUR_WEIGHTS = (
    1.0,
    0.6,
    0.4,
    0.3,
    0.3,
    0.5,
    1.2,
    2.5,
    4,
    5,
    5.5,
    6,
    6.5,
    6,
    5.5,
    5.5,
    6,
    6.5,
    6.5,
    6,
    5,
    4,
    3,
    2,
)
FRAUD_RATE = 0.03


@dataclass(frozen=True)
class FraudPattern:
    """What the rows of one fraud pattern look like; unset fields keep the genuine values."""

    channels: dict[str, float] | None = None
    categories: dict[str, float] | None = None
    countries: dict[str, float] | None = None
    amount_usd: tuple[float, float] | None = None  # median and log-standard-deviation
    night_share: float = 0.0  # share of rows moved to 00:00-05:59
    far_from_home: bool = False
    new_account: bool = False
    txn_burst: bool = False
    risky_merchant: bool = False


FRAUD_PATTERNS: dict[str, FraudPattern] = {
    "night_online": FraudPattern(
        channels={"online": 1.0},
        amount_usd=(420.0, 0.6),
        night_share=0.8,
        categories={"electronics": 0.4, "jewelry": 0.2, "digital_goods": 0.2, "fashion": 0.2},
    ),
    "new_account_far": FraudPattern(
        channels={"online": 0.7, "pos": 0.3},
        amount_usd=(300.0, 0.7),
        far_from_home=True,
        new_account=True,
        countries={"US": 0.3, "GB": 0.2, "NG": 0.2, "BR": 0.15, "IN": 0.15},
    ),
    "risky_merchant": FraudPattern(
        channels={"online": 0.5, "pos": 0.5}, amount_usd=(150.0, 0.8), risky_merchant=True
    ),
    "card_testing": FraudPattern(
        channels={"online": 1.0},
        amount_usd=(4.0, 0.7),
        txn_burst=True,
        categories={"digital_goods": 0.5, "gaming": 0.5},
    ),
    "stealth": FraudPattern(),  # looks genuine: caps how well any model can do
    "contactless_relay": FraudPattern(
        channels={"contactless": 1.0},
        amount_usd=(90.0, 0.5),
        far_from_home=True,
        countries={"MX": 0.5, "BR": 0.5},
        categories={"fuel": 0.5, "grocery": 0.3, "restaurant": 0.2},
    ),
}

# The covariate shift moves the channel mix and scales amounts; the concept drift changes the
# share of fraud rows made by each pattern (in the order of FRAUD_PATTERNS).
CHANNEL_MIX = (0.35, 0.40, 0.20, 0.05)
CHANNEL_MIX_SHIFTED = (0.48, 0.24, 0.24, 0.04)
AMOUNT_SHIFT = 1.35
PATTERN_MIX = (0.30, 0.20, 0.15, 0.22, 0.13, 0.0)
PATTERN_MIX_DRIFTED = (0.08, 0.15, 0.12, 0.15, 0.12, 0.38)

# The data-quality incident: amounts arrive in cents, and on a share of the rows each of these
# columns gets a bad value: a null, an out-of-range value, an unseen category.
INCIDENT_UNIT_COLUMN = "amount"
INCIDENT_FAULTS: dict[str, Any] = {
    "merchant_category": None,
    "customer_age": -1,
    "channel": "mobile_wallet",
}
INCIDENT_FAULT_SHARE = 0.025
INCIDENT_COLUMNS = (INCIDENT_UNIT_COLUMN, *INCIDENT_FAULTS)


@dataclass(frozen=True)
class SimulationConfig:
    """Say what to simulate: how many days, how many rows, which seed and which scenario."""

    days: int = 30
    rows_per_day: int = 5000
    seed: int = 42
    label_delay_days: int = 3
    start_date: dt.date = dt.date(2026, 1, 1)
    scenario: ScenarioName = "drift"
    # Place the drift scenario's events as in a story of this many days; the days after it
    # keep its last state (default: the story is all `days`)
    story_days: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.start_date, str):
            object.__setattr__(self, "start_date", dt.date.fromisoformat(self.start_date))
        min_days = MIN_DRIFT_DAYS if self.scenario == "drift" else 1
        checks = (
            (self.scenario in SCENARIOS, f"scenario must be one of {SCENARIOS}"),
            (self.days >= min_days, f"days must be >= {min_days} for this scenario"),
            (1 <= self.rows_per_day <= MAX_ROWS, f"rows_per_day must be in 1..{MAX_ROWS}"),
            (self.label_delay_days >= 0, "label_delay_days must be >= 0"),
            (self.seed >= 0, "seed must be >= 0"),
            (
                self.story_days is None or min_days <= self.story_days <= self.days,
                f"story_days must be in {min_days}..days",
            ),
        )
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"invalid simulation config {self}: " + "; ".join(problems))

    def timeline(self) -> Timeline:
        """Return the drift scenario's event days: as for `story_days`, ending on the last day."""
        placed = drift_timeline(self.story_days or self.days)
        return replace(placed, last_day=self.days - 1)

    def date_of(self, day_index: int) -> dt.date:
        """Return the calendar date of a day index."""
        return self.start_date + dt.timedelta(days=day_index)


@dataclass(frozen=True)
class ScenarioEvent:
    """One ground-truth event of the scenario; start and end dates are inclusive."""

    name: str
    kind: EventKind
    start: dt.date
    end: dt.date
    columns: tuple[str, ...]
    description: str

    def covers(self, day: dt.date) -> bool:
        """Tell whether the event is in effect on a date."""
        return self.start <= day <= self.end

    def to_dict(self) -> dict[str, Any]:
        """Return the event as JSON-ready values."""
        return {
            "name": self.name,
            "kind": self.kind,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "columns": list(self.columns),
            "description": self.description,
        }


@dataclass(frozen=True)
class Timeline:
    """Day indices at which the drift scenario's events begin and end (inclusive)."""

    shift_start: int
    shift_ramp_end: int
    drift_start: int
    incident_start: int
    incident_end: int
    last_day: int


@dataclass(frozen=True)
class DayConditions:
    """What the generator does differently on one day."""

    shift: float  # progress of the covariate shift, from 0 (none) to 1 (complete)
    concept_drift: bool
    incident: bool


def drift_timeline(days: int) -> Timeline:
    """Place the drift scenario's events at fixed fractions of the simulated period."""
    shift_start = round(days * 0.47)
    incident_start = round(days * 0.8)
    return Timeline(
        shift_start=shift_start,
        shift_ramp_end=shift_start + max(2, round(days / 6)) - 1,
        drift_start=round(days * 2 / 3),
        incident_start=incident_start,
        incident_end=incident_start + (1 if days >= 20 else 0),
        last_day=days - 1,
    )


def scenario_events(config: SimulationConfig) -> list[ScenarioEvent]:
    """Return the ground-truth events of the configured scenario, in time order."""
    if config.scenario == "stable":
        return []
    t, day = config.timeline(), config.date_of
    return [
        ScenarioEvent(
            "spending_shift",
            "covariate_shift",
            day(t.shift_start),
            day(t.last_day),
            ("amount", "channel", "card_present"),
            f"Amounts rise by {AMOUNT_SHIFT - 1:.0%} and the channel mix moves from pos toward "
            f"online and contactless, ramping linearly until {day(t.shift_ramp_end)}, then "
            "staying shifted.",
        ),
        ScenarioEvent(
            "contactless_relay_fraud",
            "concept_drift",
            day(t.drift_start),
            day(t.last_day),
            ("is_fraud", "channel", "country", "merchant_category"),
            "A new fraud ring hits contactless payments at fuel, grocery and restaurant merchants "
            "in MX and BR while night-time online fraud fades: P(is_fraud | x) changes abruptly.",
        ),
        ScenarioEvent(
            "upstream_feed_incident",
            "data_quality",
            day(t.incident_start),
            day(t.incident_end),
            INCIDENT_COLUMNS,
            f"{INCIDENT_UNIT_COLUMN} is reported in cents instead of USD, and on about "
            f"{INCIDENT_FAULT_SHARE:.1%} of rows each: "
            + ", ".join(f"{column} = {bad!r}" for column, bad in INCIDENT_FAULTS.items())
            + " (a null, an out-of-range value, an unseen category).",
        ),
        ScenarioEvent(
            "upstream_feed_recovery",
            "recovery",
            day(t.incident_end + 1),
            day(t.last_day),
            INCIDENT_COLUMNS,
            "Data quality is back to normal; the spending shift and the new fraud pattern persist.",
        ),
    ]


def scenario_document(config: SimulationConfig) -> dict[str, Any]:
    """Return the ground truth written beside the data as scenario.json."""
    return {
        "seed": config.seed,
        "days": config.days,
        "start_date": config.start_date.isoformat(),
        "rows_per_day": config.rows_per_day,
        "label_delay_days": config.label_delay_days,
        "scenario": config.scenario,
        "events": [event.to_dict() for event in scenario_events(config)],
    }


def day_conditions(config: SimulationConfig, day_index: int) -> DayConditions:
    """Return how the scenario alters one day's data."""
    if config.scenario == "stable":
        return DayConditions(shift=0.0, concept_drift=False, incident=False)
    t = config.timeline()
    ramp_days = t.shift_ramp_end - t.shift_start + 1
    return DayConditions(
        shift=min(max((day_index - t.shift_start + 1) / ramp_days, 0.0), 1.0),
        concept_drift=day_index >= t.drift_start,
        incident=t.incident_start <= day_index <= t.incident_end,
    )


def corrupt_for_incident(features: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Return a copy of a day's features broken the way the upstream feed incident breaks them."""
    broken = features.copy()
    broken[INCIDENT_UNIT_COLUMN] = (broken[INCIDENT_UNIT_COLUMN] * 100).round(0)
    for column, bad in INCIDENT_FAULTS.items():
        broken.loc[rng.random(len(broken)) < INCIDENT_FAULT_SHARE, column] = bad
    return broken
