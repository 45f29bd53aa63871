"""Tasks that split, train and evaluate."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pandas as pd
import torch
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.training import train
from mlops.training.train import (
    Splits,
    TrainedModel,
    TrainParams,
    evaluate_model,
    split_by_time,
    train_model,
)

GPU_LIMIT = "gpu"  # the global concurrency limit `mlops bootstrap` creates (one slot per GPU)


@task(name="split-data", cache_policy=NO_CACHE)
def split_data(frame: pd.DataFrame, contract: Contract, params: TrainParams) -> Splits:
    """Split ordered rows into train, validation and holdout, newest last."""
    splits = split_by_time(
        frame, val_fraction=params.val_fraction, holdout_fraction=params.holdout_fraction
    )
    create_table_artifact(
        key="data-splits",
        table=splits.describe(contract.timestamp_column),
        description="Time-ordered splits (holdout is the newest)",
    )
    return splits


def gpu_slot(accelerator: str) -> AbstractContextManager[Any]:
    """Hold one slot of the `gpu` concurrency limit while training on a CUDA device.

    Strict: a missing limit fails the run instead of letting two runs share a GPU. CPU runs
    (accelerator "cpu", or no CUDA device) take no slot.
    """
    if accelerator == "cpu" or not torch.cuda.is_available():
        return nullcontext()
    return concurrency(GPU_LIMIT, occupy=1, strict=True)


@task(name="fit-model", cache_policy=NO_CACHE)
def fit_model(splits: Splits, contract: Contract, params: TrainParams) -> TrainedModel:
    """Fit preprocessing and the network with Lightning on the device available."""
    model = train_model(splits, contract, params)
    get_run_logger().info(
        "trained on %s: %d epochs (best %d, val loss %.4f) in %.1f s",
        model.device,
        model.epochs,
        model.best_epoch,
        model.best_val_loss,
        model.seconds,
    )
    return model


@task(name="refit-model", cache_policy=NO_CACHE)
def refit_model(model: TrainedModel, rows: pd.DataFrame, contract: Contract) -> TrainedModel:
    """Retrain on every row of the window (holdout included) for the epochs early stopping chose."""
    refitted = train.refit_model(model, rows, contract)
    get_run_logger().info(
        "refit on %d rows for %d epochs (%s, %.1f s); holdout metrics stay those of the model "
        "before the refit",
        refitted.refit_rows,
        refitted.refit_epochs,
        refitted.device,
        refitted.refit_seconds,
    )
    return refitted


@task(name="evaluate-holdout", cache_policy=NO_CACHE)
def evaluate_holdout(
    model: TrainedModel, contract: Contract, holdout: pd.DataFrame
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Compute holdout metrics overall and per slice, and publish them as tables."""
    metrics, slices = evaluate_model(model, contract, holdout)
    create_table_artifact(
        key="holdout-metrics",
        table=[{"metric": k, "value": round(v, 5)} for k, v in metrics.items()],
        description=f"Holdout metrics on {len(holdout)} rows (device {model.device})",
    )
    if slices:
        create_table_artifact(
            key="slice-metrics",
            table=[
                {k: round(v, 5) if isinstance(v, float) else v for k, v in row.items()}
                for row in slices
            ],
            description="Holdout metrics per slice",
        )
    return metrics, slices
