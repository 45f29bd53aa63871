"""Tasks that split, train and evaluate."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import pandas as pd
import torch
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.registry.store import Registry
from mlops.release.build import champion_change
from mlops.training import train
from mlops.training.change import Change
from mlops.training.train import TrainedModel, TrainParams, evaluate_model
from mlops.training.window import WindowFit, fit_window

GPU_LIMIT = "gpu"  # the global concurrency limit `mlops bootstrap` creates (one slot per GPU)


@task(name="find-change", cache_policy=NO_CACHE)
def find_change(
    registry: Registry, model_name: str, rows: pd.DataFrame, contract: Contract, params: TrainParams
) -> Change | None:
    """Look for a step up in the champion's per-row loss on the window's newer rows."""
    if not params.adapt_window:
        return None
    change = champion_change(registry, model_name, rows, contract)
    log = get_run_logger()
    if change is None:
        log.info("no change of concept in the window: the champion's loss has no clear step")
    elif change.inherited:
        log.info("no new step in the champion's loss; the change it was trained across began "
                 "%d rows before the end, and the rows since it are weighed again",
                 change.rows_after)  # fmt: skip
    else:
        log.info("the champion's loss stepped up %.3f -> %.3f (z %.1f) %d rows before the end",
                 change.loss_before, change.loss_after, change.z, change.rows_after)  # fmt: skip
    return change


def gpu_slot(accelerator: str, devices: int = 1) -> AbstractContextManager[Any]:
    """Hold one slot of the `gpu` concurrency limit per device while training on CUDA devices.

    Strict: a missing limit fails the run instead of letting two runs share a GPU. CPU runs
    (accelerator "cpu", or no CUDA device) take no slot.
    """
    if accelerator == "cpu" or not torch.cuda.is_available():
        return nullcontext()
    return concurrency(GPU_LIMIT, occupy=devices, strict=True)


@task(name="fit-model", cache_policy=NO_CACHE)
def fit_model(
    rows: pd.DataFrame,
    contract: Contract,
    params: TrainParams,
    change: Change | None,
    learned: int = 0,
) -> WindowFit:
    """Split by time and fit preprocessing and network with Lightning on the device available.

    After a `change` of concept, also fit on the rows since the change and keep the better.
    The champion learned the first `learned` rows: the holdout avoids them where it can.
    """
    fitted = fit_window(rows, contract, params, change, learned=learned)
    model = fitted.model
    create_table_artifact(
        key="data-splits",
        table=fitted.splits.describe(contract.timestamp_column),
        description="Time-ordered splits (holdout is the newest)",
    )
    if change is not None or "recency" in fitted.choice:
        create_markdown_artifact(key="training-window", markdown=_window_markdown(fitted.choice))
    get_run_logger().info(
        "trained on %s: %d epochs (best %d, val loss %.4f) in %.1f s, on %s",
        model.device,
        model.epochs,
        model.best_epoch,
        model.best_val_loss,
        model.seconds,
        _learned(fitted.choice),
    )
    return fitted


def _learned(choice: dict[str, Any]) -> str:
    rows = "the rows since the change" if choice["rows"] == "since change" else "the window"
    weighted = (choice.get("recency") or {}).get("kept")
    return f"{rows}, weighted by recency" if weighted else rows


def _window_markdown(choice: dict[str, Any]) -> str:
    """Say which rows the model learned and how they were weighed, and why."""
    lines = ["# Training window", ""]
    change, recency = choice.get("change"), choice.get("recency")
    if change is not None:
        found = (
            "No new step in the champion's loss; the change it was itself trained across (its "
            f"predecessor's loss stepped up from {change['loss_before']} to "
            f"{change['loss_after']}) "
            if change.get("inherited")
            else f"The champion's mean per-row loss stepped up from {change['loss_before']} to "
            f"{change['loss_after']} ({change['z']} standard errors), "
        )
        lines += [f"{found}{change['rows_after']} rows before the window's end.", ""]
    rows = (
        "the rows before the change and the training rows after it"
        if change
        else "the training rows"
    )
    lines += ["| model | learned | paired z vs whole window | kept |", "|---|---|---|---|",
              f"| whole window | {rows} | - | {_kept(choice, 'window', recency)} |"]  # fmt: skip
    if change is not None:
        lines.append(
            "| since change | the training rows after the change only | "
            f"{choice['recent_better_z']} | {'yes' if choice['rows'] == 'since change' else 'no'} |"
        )
    if recency is not None:
        lines.append(
            f"| whole window, recency-weighted | {rows}, a row's weight halving every "
            f"{recency['half_life']:g} of them back from the newest | {recency['better_z']} | "
            f"{'yes' if recency['kept'] else 'no'} |"
        )
    validation = choice.get("validation_rows") or (recency or {}).get("validation_rows")
    lines += ["", f"z: how many standard errors of the paired per-row loss difference on the "
              f"{validation} newest validation rows an alternative beat the whole window's model "
              "by; an alternative is kept from 2 (the rows since a change first, then the "
              "weighted window)."]  # fmt: skip
    if change is not None:
        lines.append("The gate's holdout is the newest rows after the change either way.")
    return "\n".join(lines)


def _kept(choice: dict[str, Any], rows: str, recency: dict[str, Any] | None) -> str:
    weighted = recency is not None and recency["kept"]
    return "yes" if choice["rows"] == rows and not weighted else "no"


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
