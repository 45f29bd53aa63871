"""Hyperparameter search with Optuna: the search space, a pruning callback, trials, storage.

A study lives in an RDB storage, so trials in other processes (or on other machines) ask it for
their parameters and tell it their result: SQLite under a local MLOPS_HOME, any SQLAlchemy URL
otherwise. A trial trains on the training split and is scored by its best validation loss, the
same loss early stopping watches; the holdout is left to the release path.
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import pandas as pd
import pytorch_lightning as pl

from mlops.contract.spec import Contract
from mlops.training.train import Splits, TrainParams, train_model

MONITOR = "val_loss"  # what trials minimise and the pruner compares, epoch by epoch
TrialState = Literal["COMPLETE", "PRUNED", "FAIL", "SKIPPED"]


@dataclass(frozen=True)
class SearchSpace:
    """The ranges trials draw from: everything else comes from the base `TrainParams`."""

    learning_rate: tuple[float, float] = (1e-4, 1e-2)  # log-uniform
    weight_decay: tuple[float, float] = (1e-6, 1e-2)  # log-uniform
    dropout: tuple[float, float] = (0.0, 0.4)  # uniform
    widths: tuple[int, ...] = (32, 64, 128, 256)  # first hidden layer; each next one is half
    layers: tuple[int, int] = (1, 3)  # hidden layers, inclusive
    batch_sizes: tuple[int, ...] = (128, 256, 512, 1024)


DEFAULT_SPACE = SearchSpace()


def suggest(
    trial: optuna.trial.BaseTrial, base: TrainParams, space: SearchSpace = DEFAULT_SPACE
) -> TrainParams:
    """Return `base` with the hyperparameters `trial` draws from `space`."""
    width = trial.suggest_categorical("width", space.widths)
    layers = trial.suggest_int("layers", *space.layers)
    return dataclasses.replace(
        base,
        learning_rate=trial.suggest_float("learning_rate", *space.learning_rate, log=True),
        weight_decay=trial.suggest_float("weight_decay", *space.weight_decay, log=True),
        dropout=trial.suggest_float("dropout", *space.dropout),
        hidden=tuple(max(width >> i, 8) for i in range(layers)),
        batch_size=trial.suggest_categorical("batch_size", space.batch_sizes),
    )


def params_of(
    values: dict[str, Any], base: TrainParams, space: SearchSpace = DEFAULT_SPACE
) -> TrainParams:
    """Return the `TrainParams` a trial's recorded parameter values stand for."""
    return suggest(optuna.trial.FixedTrial(values), base, space)


def enqueue_base(
    study: optuna.Study, base: TrainParams, space: SearchSpace = DEFAULT_SPACE
) -> bool:
    """Make `base`'s hyperparameters a new study's first trial, so the search starts from them.

    Returns whether it did: not when the study has trials, nor when `space` cannot express
    `base` (its hidden widths do not halve, or a value lies outside the space).
    """
    values = {
        "width": base.hidden[0] if base.hidden else 0,
        "layers": len(base.hidden),
        "learning_rate": base.learning_rate,
        "weight_decay": base.weight_decay,
        "dropout": base.dropout,
        "batch_size": base.batch_size,
    }
    ranges = {k: getattr(space, k) for k in ("learning_rate", "weight_decay", "dropout")}
    inside = all(lo <= values[k] <= hi for k, (lo, hi) in ranges.items())
    inside &= values["width"] in space.widths and values["batch_size"] in space.batch_sizes
    inside &= space.layers[0] <= values["layers"] <= space.layers[1]
    if study.get_trials(deepcopy=False) or not inside or params_of(values, base, space) != base:
        return False
    study.enqueue_trial(values)
    return True


class PruneOnValidation(pl.Callback):
    """Report the monitored validation metric to a trial each epoch; prune when told to.

    Raising `optuna.TrialPruned` ends `Trainer.fit`: Lightning tells the callbacks and the
    strategy (`on_exception`) and re-raises it, so the caller marks the trial pruned.
    """

    def __init__(self, trial: optuna.trial.BaseTrial, monitor: str = MONITOR) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch}: {self.monitor} behind the median")


def study_storage(home: str, storage: str | None = None) -> str:
    """Return the study's SQLAlchemy URL: `storage`, else SQLite under a local `home`.

    A SQLite file cannot be shared by trials on many machines, so a remote home needs a URL.
    """
    if storage:
        return storage
    local = home.removeprefix("file://")
    if "://" in local:
        raise ValueError(
            f"MLOPS_HOME is {home}: a SQLite file there cannot be shared by trials on other "
            "machines; give the study a database URL (search.storage, e.g. "
            "postgresql+psycopg://user:password@host/db)"
        )
    return f"sqlite:///{Path(local).resolve() / 'tuning' / 'optuna.db'}"


def open_study(storage: str, study_name: str, *, seed: int = 42) -> optuna.Study:
    """Create the study, or load it when it exists (a rerun continues it); minimises MONITOR.

    The sampler and pruner are not stored: every process opening the study builds its own, so
    each trial is given its own `seed`, or parallel trials would draw the same parameters.
    """
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
    )


@contextmanager
def asking(storage: str | None) -> Iterator[None]:
    """Hold an exclusive lock on a SQLite study's file while a trial is asked for.

    SQLite has no SELECT ... FOR UPDATE, so two processes asking at once can both pop the same
    enqueued trial (the search's first, the given hyperparameters): both train it, and the
    second one's result is refused ("Cannot tell a COMPLETE trial"). Server databases lock the
    trial's row themselves, and other storages need nothing here.
    """
    if storage is None or not storage.startswith("sqlite:///"):
        yield
        return
    with open(storage.removeprefix("sqlite:///") + ".ask-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True)
class TrialResult:
    """What one trial ended as."""

    number: int
    state: TrialState
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    seconds: float
    message: str = ""


def run_trial(
    study: optuna.Study,
    train: pd.DataFrame,
    val: pd.DataFrame,
    contract: Contract,
    base: TrainParams,
    space: SearchSpace = DEFAULT_SPACE,
    *,
    storage: str | None = None,
) -> TrialResult:
    """Ask the study for parameters, train on `train` with pruning on `val`, tell the result.

    A pruned trial is told PRUNED; a trial whose training raises is told FAIL, then re-raised.
    `storage`, the study's URL, serialises the asking where the database cannot (`asking`).
    """
    with asking(storage):
        trial = study.ask()
    params = suggest(trial, dataclasses.replace(base, refit=False), space)
    started = time.perf_counter()
    splits = Splits(train, val, val.iloc[:0])  # trials never see the holdout
    try:
        model = train_model(splits, contract, params, callbacks=[PruneOnValidation(trial)])
    except optuna.TrialPruned as pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        seconds = time.perf_counter() - started
        return TrialResult(trial.number, "PRUNED", None, trial.params, None, seconds, str(pruned))
    except Exception:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    seconds = time.perf_counter() - started
    if not math.isfinite(model.best_val_loss):
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        message = f"{MONITOR} is not finite"
        return TrialResult(trial.number, "FAIL", None, trial.params, model.epochs, seconds, message)
    value = model.best_val_loss
    trial.set_user_attr("epochs", model.epochs)
    study.tell(trial, value)
    return TrialResult(trial.number, "COMPLETE", value, trial.params, model.epochs, seconds)


def count_states(study: optuna.Study) -> dict[str, int]:
    """Return how many of the study's trials are complete, pruned, failed and running."""
    counts = {"complete": 0, "pruned": 0, "failed": 0, "running": 0}
    names = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name in names:
            counts[names[trial.state.name]] += 1
    return counts
