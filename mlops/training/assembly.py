"""What one Lightning fit is built from: the encoded rows (with their recency weights), the
network, the data module and the trainer; shared by the fit in this process and by DDP ranks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from mlops.training.features import Preprocessor, encode_features, encode_target
from mlops.training.model import TabularDataModule, TabularModel
from mlops.training.params import TrainParams
from mlops.training.splits import Splits


def encode_rows(
    frame: pd.DataFrame, prep: Preprocessor, target: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Encode rows as the network takes them: numeric and categorical features, and target."""
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


def learned_arrays(
    frame: pd.DataFrame, prep: Preprocessor, target: str, params: TrainParams
) -> tuple[np.ndarray, ...]:
    """Encode the rows a model learns, with their recency weights when `params` ask for them."""
    arrays = encode_rows(frame, prep, target)
    if params.recency_half_life is None:
        return arrays
    return (*arrays, recency_weights(len(frame), params.recency_half_life))


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
        learned_arrays(splits.train, prep, target, params),
        encode_rows(splits.val, prep, target),
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
