"""Split by time, fit preprocessing on the training split, and train with Lightning."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from pydantic import AfterValidator, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.contract.spec import Contract, parse_threshold_objective
from mlops.training.distributed import DistributedFit, fit_in_process_group
from mlops.training.evaluate import (
    choose_threshold,
    compute_metrics,
    resolve_objective,
    slice_metrics,
)
from mlops.training.features import Preprocessor, encode_features, encode_target, fit_preprocessor
from mlops.training.model import BestWeights, TabularDataModule, TabularModel
from mlops.training.network import InferencePipeline, OutputHead
from mlops.training.quiet import quiet_libraries

log = logging.getLogger(__name__)


@pydantic_dataclass(frozen=True)
class TrainParams:
    """How to train: hyperparameters and split fractions of one training run."""

    # Also the train-model flow's `training` parameter: its form shows these descriptions.
    max_epochs: int = Field(25, ge=1, le=1000, description="Upper bound on epochs.")
    batch_size: int = Field(512, ge=8, description="Rows per optimisation step.")
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay.")
    hidden: tuple[int, ...] = Field((128, 64), description="Hidden layer widths of the MLP.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    patience: int = Field(4, ge=1, description="Early-stopping patience in epochs.")
    seed: int = Field(42, description="Seed for splits, initialisation and shuffling.")
    accelerator: str = Field("auto", description="auto (GPU when present), cpu, or gpu.")
    devices: int = Field(
        1,
        ge=1,
        description="Devices to train on. Over 1: a DDP process group of that many processes "
        "launched with torchrun (gloo on CPU, nccl on GPU); on GPU it holds as many slots of "
        "the gpu limit.",
    )
    strategy: Literal["auto", "ddp"] = Field(
        "auto",
        description="auto: in this process on one device, DDP with torchrun on several; "
        "ddp: always in a torchrun process group, even on one device.",
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of rows for validation.")
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5, description="Newest share for holdout.")
    max_vocab: int = Field(5000, ge=1, description="Most categories kept per categorical column.")
    min_category_count: int = Field(
        2, ge=1, description="Training rows a category needs for its own index (else unseen)."
    )
    threshold_objective: Annotated[str, AfterValidator(parse_threshold_objective)] | None = Field(
        None,
        description="Binary models: what the decision threshold is tuned for on validation: "
        "auto (f1 when under 20% of training rows are positive, else accuracy), f1, accuracy, "
        "balanced_accuracy, or fixed:<p> (e.g. fixed:0.5). Empty: the contract's, else auto.",
    )
    refit: bool = Field(
        True,
        description="After evaluation, retrain on every row of the window (validation and "
        "holdout included) for the epochs early stopping chose, and serve that model: it has "
        "learned the newest rows. Holdout metrics and the gate use the model before the refit.",
    )
    recency_half_life: float | None = Field(
        None,
        gt=0,
        description="Weigh training rows by recency: a row older than the newest by this share "
        "of the rows learned weighs half as much (1: the oldest row weighs half the newest). "
        "Empty: every row weighs the same, or see adapt_recency. Validation, holdout and the "
        "gate are unweighted.",
    )
    adapt_recency: bool = Field(
        True,
        description="Without recency_half_life: also train with recency weights (half-life a "
        "quarter of the rows learned) and keep that model when it beats the unweighted one on "
        "the newest validation rows by two standard errors.",
    )
    adapt_window: bool = Field(
        True,
        description="When the champion's per-row loss steps up inside the window (a change of "
        "concept), also train on the rows since the change only, and keep that model when it "
        "beats the whole window's on the newest rows by two standard errors.",
    )


@dataclass(frozen=True)
class Splits:
    """Train, validation and holdout frames, in time order."""

    train: pd.DataFrame
    val: pd.DataFrame
    holdout: pd.DataFrame

    def describe(self, timestamp: str | None) -> list[dict[str, Any]]:
        """Return one row per split: rows and time range (or row range)."""
        rows = []
        for name, frame in (("train", self.train), ("val", self.val), ("holdout", self.holdout)):
            first = frame[timestamp].min() if timestamp and len(frame) else None
            last = frame[timestamp].max() if timestamp and len(frame) else None
            rows.append({"split": name, "rows": len(frame), "from": str(first), "to": str(last)})
        return rows


@dataclass
class TrainedModel:
    """A fitted preprocessor and network, with what the run observed."""

    preprocessor: Preprocessor
    module: TabularModel
    params: TrainParams
    device: str
    epochs: int
    best_epoch: int
    best_val_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    decision_threshold: float = 0.5
    threshold_objective: str | None = None  # binary: the resolved objective, e.g. "accuracy"
    refit_rows: int | None = None  # set by refit_model: rows it learned (None: not refitted)
    refit_epochs: int | None = None
    refit_seconds: float = 0.0
    window: dict[str, Any] | None = None  # set when a change of concept decided the rows learned

    def pipeline(self) -> InferencePipeline:
        """Return the eval-mode CPU inference pipeline (network + head)."""
        net = self.module.net.to("cpu").eval()
        t = self.preprocessor.target
        head = OutputHead(t.task, t.mean, t.std)
        return InferencePipeline(net, head, len(self.preprocessor.numeric)).eval()


def split_by_time(
    frame: pd.DataFrame, *, val_fraction: float = 0.15, holdout_fraction: float = 0.15
) -> Splits:
    """Cut an already time-ordered frame into train, validation and holdout, newest last."""
    n = len(frame)
    n_hold = round(n * holdout_fraction)
    n_val = round(n * val_fraction)
    if n - n_hold - n_val < 10 or n_val < 1 or n_hold < 1:
        raise ValueError(f"{n} rows are too few to split into train/validation/holdout")
    a, b = n - n_hold - n_val, n - n_hold
    return Splits(frame.iloc[:a], frame.iloc[a:b], frame.iloc[b:])


def _arrays(
    frame: pd.DataFrame, prep: Preprocessor, target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    num, cat = encode_features(frame, prep)
    return num, cat, encode_target(frame[target], prep.target)


def recency_weights(n_rows: int, half_life: float) -> np.ndarray:
    """Return the weights of `n_rows` time-ordered rows, newest last: 2^(-age / half-life).

    A row's age is its distance from the newest row as a share of `n_rows`, so the half-life
    means the same for a window of 2,000 rows as for one of 2 million.
    """
    if half_life <= 0:
        raise ValueError(f"half_life must be > 0, got {half_life}")
    age = (n_rows - 1 - np.arange(n_rows)) / max(n_rows, 1)
    return np.exp2(-age / half_life).astype(np.float32)


def _learned_arrays(
    frame: pd.DataFrame, prep: Preprocessor, target: str, params: TrainParams
) -> tuple[np.ndarray, ...]:
    """Encode the rows a model learns, with their recency weights when `params` ask for them."""
    arrays = _arrays(frame, prep, target)
    if params.recency_half_life is None:
        return arrays
    return (*arrays, recency_weights(len(frame), params.recency_half_life))


def train_model(
    splits: Splits,
    contract: Contract,
    params: TrainParams,
    *,
    progress: bool = False,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainedModel:
    """Fit preprocessing on the train split and train with early stopping on validation loss.

    `callbacks` join the Trainer's (one process only: a process group takes none).
    """
    pl.seed_everything(params.seed, workers=True, verbose=False)
    prep = fit_preprocessor(
        splits.train, contract, max_vocab=params.max_vocab, min_count=params.min_category_count
    )
    if uses_process_group(params):
        if callbacks:
            raise ValueError("callbacks need a fit in this process (devices 1, strategy auto)")
        trained = _train_in_process_group(splits, contract, prep, params)
    else:
        trained = _train_here(splits, contract, prep, params, progress, callbacks)
    if contract.task == "binary":
        tune_threshold(trained, splits, contract)
    return trained


def _train_here(
    splits: Splits,
    contract: Contract,
    prep: Preprocessor,
    params: TrainParams,
    progress: bool,
    callbacks: Sequence[pl.Callback] = (),
) -> TrainedModel:
    """Train in this process on one device, with early stopping on validation loss."""
    module = build_module(contract.task, prep, params)
    data = build_datamodule(splits, prep, contract.target.name, params)
    best = BestWeights()
    started = time.perf_counter()
    with quiet_libraries():
        trainer = build_trainer(params, [best, *callbacks], progress=progress)
        trainer.fit(module, datamodule=data)
    device = str(trainer.strategy.root_device)
    seconds = time.perf_counter() - started
    log.info("trained %d epochs on %s in %.1fs", trainer.current_epoch, device, seconds)
    return TrainedModel(
        preprocessor=prep,
        module=module.eval(),
        params=params,
        device=describe_device(device),
        epochs=trainer.current_epoch,
        best_epoch=best.best_epoch,
        best_val_loss=best.best_score,
        seconds=seconds,
        history=best.history,
    )


def uses_process_group(params: TrainParams) -> bool:
    """Whether `params` ask for a fit in its own process group (several devices, or ddp)."""
    return params.devices > 1 or params.strategy == "ddp"


def _train_in_process_group(
    splits: Splits, contract: Contract, prep: Preprocessor, params: TrainParams
) -> TrainedModel:
    """Train on `params.devices` devices in a torchrun process group (threshold not tuned)."""
    target = contract.target.name
    arrays = _learned_arrays(splits.train, prep, target, params), _arrays(splits.val, prep, target)
    started = time.perf_counter()
    fit = fit_in_process_group(contract.task, prep, params, *arrays)
    seconds = time.perf_counter() - started
    log.info("trained %d epochs on %s (ranks %s) in %.1fs",
             fit.epochs, fit.describe(), fit.ranks, seconds)  # fmt: skip
    return TrainedModel(
        preprocessor=prep,
        module=_loaded(contract.task, prep, params, fit),
        params=params,
        device=fit.describe(),
        epochs=fit.epochs,
        best_epoch=fit.best_epoch,
        best_val_loss=fit.best_val_loss,
        seconds=seconds,
        history=fit.history,
    )


def _loaded(
    task: str, prep: Preprocessor, params: TrainParams, fit: DistributedFit
) -> TabularModel:
    module = build_module(task, prep, params)
    module.load_state_dict(fit.state)
    return module.eval()


def tune_threshold(model: TrainedModel, splits: Splits, contract: Contract) -> None:
    """Set a binary model's decision threshold and the resolved objective it was tuned for."""
    target, encoding = contract.target.name, model.preprocessor.target
    rate = float(encode_target(splits.train[target], encoding).mean())
    wanted = model.params.threshold_objective or contract.target.threshold_objective or "auto"
    model.threshold_objective = resolve_objective(wanted, rate)
    model.decision_threshold = choose_threshold(
        encode_target(splits.val[target], encoding),
        predict_torch(model, splits.val)[:, 1],
        model.threshold_objective,
        train_positive_rate=rate,
    )


def refit_model(
    model: TrainedModel, rows: pd.DataFrame, contract: Contract, *, progress: bool = False
) -> TrainedModel:
    """Retrain on all `rows` for the epochs early stopping chose for `model`; no validation.

    The preprocessing is refitted on every row, so categories first seen in the newest rows get
    indices. The network starts from the same seed and hyperparameters. Everything else (decision
    threshold, validation loss and history) stays `model`'s: it was measured on rows that the
    refit then learns, so no figure of the refitted model itself would be honest.
    """
    params = model.params
    pl.seed_everything(params.seed, workers=True, verbose=False)
    prep = fit_preprocessor(
        rows, contract, max_vocab=params.max_vocab, min_count=params.min_category_count
    )
    module = build_module(contract.task, prep, params)
    arrays = _learned_arrays(rows, prep, contract.target.name, params)
    epochs = max(model.best_epoch + 1, 1)  # BestWeights counts epochs from 0
    if uses_process_group(params):
        started = time.perf_counter()
        fit = fit_in_process_group(contract.task, prep, params, arrays, None, epochs=epochs)
        seconds = time.perf_counter() - started
        log.info("refitted on %d rows for %d epochs on %s in %.1fs",
                 len(rows), epochs, fit.describe(), seconds)  # fmt: skip
        return replace(model, preprocessor=prep, module=_loaded(contract.task, prep, params, fit),
                       device=fit.describe(), refit_rows=len(rows), refit_epochs=epochs,
                       refit_seconds=seconds)  # fmt: skip
    data = TabularDataModule(arrays, None, batch_size=params.batch_size, seed=params.seed)
    started = time.perf_counter()
    with quiet_libraries():
        trainer = build_trainer(params, [], progress=progress, epochs=epochs)
        trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - started
    log.info("refitted on %d rows for %d epochs in %.1fs", len(rows), epochs, seconds)
    return replace(
        model,
        preprocessor=prep,
        module=module.eval(),
        device=describe_device(str(trainer.strategy.root_device)),
        refit_rows=len(rows),
        refit_epochs=epochs,
        refit_seconds=seconds,
    )


def build_module(task: str, prep: Preprocessor, params: TrainParams) -> TabularModel:
    """Return a freshly initialised network for the fitted preprocessing; draws on torch's RNG."""
    return TabularModel(
        task=task,
        numeric_mean=[s.mean for s in prep.numeric],
        numeric_std=[s.std for s in prep.numeric],
        null_indicator=[s.null_indicator for s in prep.numeric],
        vocab_sizes=[v.size for v in prep.categorical],
        n_outputs=prep.target.n_outputs,
        hidden=params.hidden,
        dropout=params.dropout,
        learning_rate=params.learning_rate,
        weight_decay=params.weight_decay,
    )


def build_datamodule(
    splits: Splits, prep: Preprocessor, target: str, params: TrainParams
) -> TabularDataModule:
    """Return the encoded train and validation splits, shuffled with the run's seed."""
    return TabularDataModule(
        _learned_arrays(splits.train, prep, target, params),
        _arrays(splits.val, prep, target),
        batch_size=params.batch_size,
        seed=params.seed,
    )


def build_trainer(
    params: TrainParams,
    callbacks: list[pl.Callback],
    *,
    progress: bool = False,
    epochs: int | None = None,
    ddp: bool = False,
) -> pl.Trainer:
    """Return a Trainer that stops early on validation loss, without logger or checkpoints.

    With `epochs`, it trains exactly that many epochs instead, without validation. With `ddp`,
    it is one rank of a DDP process group on `params.devices` devices, whose data module shards
    the rows itself.
    """
    stopping: list[pl.Callback] = []
    if epochs is None:
        early = pl.callbacks.EarlyStopping(monitor="val_loss", patience=params.patience, mode="min")
        stopping.append(early)
    gpu = params.accelerator in ("gpu", "cuda") or (
        params.accelerator == "auto" and torch.cuda.is_available()
    )
    return pl.Trainer(
        max_epochs=params.max_epochs if epochs is None else epochs,
        limit_val_batches=None if epochs is None else 0,
        accelerator=params.accelerator,
        devices=params.devices if ddp else 1,
        strategy="ddp" if ddp else "auto",
        use_distributed_sampler=not ddp,  # the ranks' data module shards the rows itself
        callbacks=[*stopping, *callbacks],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,  # Lightning isolates its RNG: skipping it changes no weight
        deterministic="warn" if gpu else True,
    )


def describe_device(device: str) -> str:
    """Return a readable device name, with the GPU model when on CUDA."""
    if device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return device


def predict_torch(model: TrainedModel, frame: pd.DataFrame) -> np.ndarray:
    """Predict with the PyTorch pipeline on raw rows: probabilities [N, C] or values [N]."""
    num, cat = encode_features(frame, model.preprocessor)
    pipeline = model.pipeline()
    columns = [torch.from_numpy(num[:, j]) for j in range(num.shape[1])]
    columns += [torch.from_numpy(cat[:, j]) for j in range(cat.shape[1])]
    with torch.no_grad():
        return pipeline(*columns).numpy()


def params_dict(params: TrainParams) -> dict[str, Any]:
    """Return the parameters as a JSON-ready dict."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}


def evaluate_model(
    model: TrainedModel, contract: Contract, frame: pd.DataFrame
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Return the model's metrics on labelled rows, overall and per slice."""
    output = predict_torch(model, frame)
    classes, threshold = model.preprocessor.target.classes, model.decision_threshold
    target = frame[contract.target.name]
    metrics = compute_metrics(contract.task, target, output, classes, threshold)
    return metrics, slice_metrics(frame, contract, output, classes, threshold)
