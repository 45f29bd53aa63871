"""Typed flow parameters: the Prefect UI renders them as forms with defaults and descriptions."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class DataSpec(BaseModel):
    """Which contract and data to use."""

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


class Hyperparameters(BaseModel):
    """How to train."""

    max_epochs: int = Field(25, ge=1, le=1000, description="Upper bound on epochs.")
    batch_size: int = Field(512, ge=8, description="Rows per optimisation step.")
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay.")
    hidden: list[int] = Field([128, 64], description="Hidden layer widths of the MLP.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    patience: int = Field(4, ge=1, description="Early-stopping patience in epochs.")
    seed: int = Field(42, description="Seed for splits, initialisation and shuffling.")
    accelerator: str = Field("auto", description="auto (GPU when present), cpu, or gpu.")
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of rows for validation.")
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5, description="Newest share for holdout.")


class GateSpec(BaseModel):
    """What a challenger must clear to become champion."""

    metric: str | None = Field(
        None, description="Gate metric (default: roc_auc, macro_f1 or r2 by task)."
    )
    floor: float | None = Field(
        None, description="Absolute bound on the metric (default: 0.70 AUC, 0.50 F1, 0.0 R2)."
    )
    max_regression: float = Field(
        0.005, ge=0, description="How much worse than the champion it may be, in metric units."
    )
    promote: bool = Field(True, description="Promote when the gate passes (else only register).")


class MonitorWindow(BaseModel):
    """Which served traffic to look at (by time served)."""

    start: datetime | None = Field(None, description="Window start (default: end - minutes).")
    end: datetime | None = Field(None, description="Window end, exclusive (default: now).")
    minutes: int = Field(60, ge=1, description="Window length when start is not given.")


class MonitorThresholds(BaseModel):
    """When drift or a performance drop warrants retraining."""

    drift_share: float = Field(
        0.15, gt=0, le=1, description="Share of features that must drift (0.15 = 2 of 11)."
    )
    consecutive_windows: int = Field(2, ge=1, description="Windows in a row that must drift.")
    max_metric_drop: float = Field(
        0.05, ge=0, description="Allowed fall of the live metric below the champion's holdout."
    )
    min_labelled_rows: int = Field(500, ge=0, description="Labelled rows needed to judge.")
    min_new_rows: int = Field(1000, ge=0, description="New rows needed since the last training.")
    cooldown_hours: float = Field(24.0, ge=0, description="No retrain this soon after the last.")
    performance_lookback_hours: float = Field(
        72.0, gt=0, description="How far back served rows are joined with arrived labels."
    )
