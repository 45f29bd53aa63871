"""Typed flow parameters: the Prefect UI renders them as forms with defaults and descriptions.

The training hyperparameters are the domain's `TrainParams`; the gate and the monitor thresholds
extend the domain's `GatePolicy` and `RetrainThresholds` with what only the flows need, so every
default is declared once.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.data.sources import Window
from mlops.monitoring.thresholds import DEFAULT_COOLDOWN, RetrainPolicy, RetrainThresholds
from mlops.registry.rollouts import CANARY_STEPS
from mlops.release.canary_latency import FLOOR_MS, MAX_RATIO, LatencyBudget
from mlops.release.gate import GatePolicy
from mlops.release.rollout import MIN_LABELLED_ROWS


class DataSpec(BaseModel):
    """Which contract and data to use."""

    model_config = ConfigDict(extra="forbid")

    contract: str | None = Field(
        None, description="Path or URL of the data contract YAML (default: MLOPS_CONTRACT)."
    )
    data_uri: str | None = Field(
        None,
        description="CSV/Parquet file or folder, local or fsspec URL "
        "(default: the simulator's output under MLOPS_HOME).",
    )
    labels_uri: str | None = Field(
        None,
        description="Separate label files joined on the contract's id column "
        "(default: the simulator's labels when data_uri is the default).",
    )
    start: datetime | None = Field(None, description="Window start (inclusive), by timestamp.")
    end: datetime | None = Field(None, description="Window end (exclusive), by timestamp.")
    last_rows: int | None = Field(None, ge=1, description="Keep only the newest N rows.")
    last: timedelta | None = Field(
        None,
        description="Keep only the rows within this span before the newest one, by timestamp "
        "(e.g. P90D): the training window of scheduled and triggered retrains.",
    )
    exclude_incidents: bool = Field(
        True,
        description="Training: set aside (quarantine) rows served in monitoring windows that "
        "failed their data checks (needs the contract's id column).",
    )

    def window(self) -> Window:
        """Return the rows to keep, by time or by count."""
        return Window(start=self.start, end=self.end, last_rows=self.last_rows, last=self.last)

    def uris(self, data_store: str) -> tuple[str, str | None]:
        """Return the data and labels URIs (default: the simulator's output under `data_store`)."""
        if self.data_uri:
            return self.data_uri, self.labels_uri
        simulated = f"{data_store.rstrip('/')}/simulated"
        return f"{simulated}/raw", self.labels_uri or f"{simulated}/labels"


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class GateSpec(GatePolicy):
    """What a challenger must clear to become champion."""

    promote: bool = Field(True, description="Promote when the gate passes (else only register).")
    release: Literal["direct", "shadow", "canary"] = Field(
        "direct",
        description="What a challenger that passes does when a champion exists: become champion "
        "now (direct), or go on trial beside it as a shadow or a canary, which monitor-model then "
        "promotes or ends on live traffic.",
    )
    canary_share: float = Field(
        CANARY_STEPS[0], gt=0, lt=1, description="A canary's first share of the records."
    )


class MonitorWindow(BaseModel):
    """Which served traffic to look at (by time served)."""

    model_config = ConfigDict(extra="forbid")

    start: datetime | None = Field(None, description="Window start (default: end - minutes).")
    end: datetime | None = Field(None, description="Window end, exclusive (default: now).")
    minutes: int = Field(60, ge=1, description="Window length when start is not given.")


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class MonitorThresholds(RetrainThresholds):
    """When a performance drop (measured, else estimated) or drift warrants retraining."""

    cooldown_hours: float = Field(
        DEFAULT_COOLDOWN / timedelta(hours=1),
        ge=0,
        description="No retrain this soon after the last.",
    )
    performance_lookback_hours: float = Field(
        72.0, gt=0, description="How far back served rows are joined with arrived labels."
    )
    label_delay_hours: float = Field(
        0.0,
        ge=0,
        description="How long labels take to arrive: performance is judged on rows served at "
        "least this long ago (rows younger than that have no labels yet).",
    )

    def policy(self, metric: str) -> RetrainPolicy:
        """Return the retrain policy these thresholds describe, judging live `metric`."""
        shared = {f.name: getattr(self, f.name) for f in fields(RetrainThresholds)}
        return RetrainPolicy(**shared, metric=metric, cooldown=timedelta(hours=self.cooldown_hours))


class RolloutRules(BaseModel):
    """How monitor-model judges a shadow or canary on trial (see mlops.release.rollout)."""

    model_config = ConfigDict(extra="forbid")

    shadow_margin: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="A shadow wins when its loss on the same labelled records is this much "
        "(relative) below the champion's, by 3 standard errors of the paired differences.",
    )
    min_labelled_rows: int = Field(
        MIN_LABELLED_ROWS,
        ge=2,
        description="Labelled records a verdict needs: a shadow's paired records; a canary's "
        "own and the champion's, each.",
    )
    canary_latency_ratio: float = Field(
        MAX_RATIO,
        ge=1,
        description="A canary is rolled back when the 95th percentile of its answer times is "
        "more than this many times the champion's in the same window (and more than "
        "canary_latency_floor_ms above it), over at least 100 requests each.",
    )
    canary_latency_floor_ms: float = Field(
        FLOOR_MS,
        ge=0,
        description="Differences in answer time smaller than this never roll a canary back.",
    )

    def latency(self) -> LatencyBudget:
        """Return the canary's latency budget these rules describe."""
        return LatencyBudget(self.canary_latency_ratio, self.canary_latency_floor_ms)


class ReplaySpec(BaseModel):
    """How a backtest cuts the history and which policies it compares."""

    model_config = ConfigDict(extra="forbid")

    initial: str = Field(
        "5000", description="Rows (e.g. 5000) or event time (e.g. 90d) the first model trains on."
    )
    batch: str = Field("1000", description="Rows (e.g. 1000) or event time (e.g. 28d) per batch.")
    policies: list[str] = Field(
        ["static", "every", "triggered"],
        description="static, every, periodic:K (every K batches), triggered (monitor's policy).",
    )
    train_window_rows: int | None = Field(
        None, ge=1, description="Retrain on the newest N rows (default: every row seen so far)."
    )
    max_batches: int | None = Field(None, ge=1, description="Stop after N batches.")


class SearchSpec(BaseModel):
    """How tune-model searches: trials, parallelism, time budget and where the study lives."""

    model_config = ConfigDict(extra="forbid")

    n_trials: int = Field(16, ge=1, description="Trials this run adds to the study.")
    parallel: int = Field(
        2, ge=1, description="Trials at once: local Dask worker processes (one thread each)."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="No trial starts after this many seconds (running ones finish)."
    )
    storage: str | None = Field(
        None,
        description="SQLAlchemy URL of the Optuna study (default: SQLite under a local "
        "MLOPS_HOME; trials on many machines need a shared database, e.g. "
        "postgresql+psycopg://user:password@host/db?options=-csearch_path%3Doptuna).",
    )
    study_name: str | None = Field(
        None, description="Study name (default: the model name); a rerun continues it."
    )
    seed: int = Field(42, description="Sampler seed (trial n of a run draws from seed + n).")
