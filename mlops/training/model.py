"""Lightning wrappers: the training module, the data module and a best-weights callback."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, RandomSampler, Sampler, SequentialSampler, TensorDataset

from mlops.training.network import TabularNet

ROW_LOSS: dict[str, Callable[..., torch.Tensor]] = {  # per row, for weighted batches (as loss_fn)
    "binary": F.binary_cross_entropy_with_logits,
    "multiclass": F.cross_entropy,
    "regression": F.mse_loss,
}


class TabularModel(pl.LightningModule):
    """Train a `TabularNet` for a binary, multiclass or regression target."""

    def __init__(
        self,
        task: str,
        numeric_mean: Sequence[float],
        numeric_std: Sequence[float],
        null_indicator: Sequence[bool],
        vocab_sizes: Sequence[int],
        n_outputs: int,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-5,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.task = task
        self.net = TabularNet(
            numeric_mean, numeric_std, null_indicator, vocab_sizes, n_outputs, hidden, dropout
        )
        self.loss_fn: nn.Module = {
            "binary": nn.BCEWithLogitsLoss(),
            "multiclass": nn.CrossEntropyLoss(),
            "regression": nn.MSELoss(),
        }[task]
        self._step_losses: list[tuple[torch.Tensor, int]] = []  # (mean loss, rows) per step

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Return raw outputs of the network."""
        return self.net(numeric, categorical)

    def batch_loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return the mean loss over a batch of (numeric, categorical, target) tensors, weighted
        by a fourth tensor of row weights when the batch has one (recency weights)."""
        numeric, categorical, y, *weights = batch
        raw = self(numeric, categorical)
        out = raw if self.task == "multiclass" else raw[:, 0]
        if not weights:
            return self.loss_fn(out, y)
        rows = ROW_LOSS[self.task](out, y, reduction="none")
        return (rows * weights[0]).sum() / weights[0].sum()

    def on_train_epoch_start(self) -> None:
        self._step_losses.clear()

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        # Kept here and logged once per epoch: `self.log` on every step costs ~10% of a CPU epoch.
        self._step_losses.append((loss.detach(), len(batch[0])))
        return loss

    def on_train_epoch_end(self) -> None:
        # The row-weighted mean `self.log(on_epoch=True)` takes, with the same float32 sums.
        total, rows = torch.zeros((), device=self.device), 0
        for loss, batch_rows in self._step_losses:
            total, rows = total + loss * batch_rows, rows + batch_rows
        self.log("train_loss", total / rows, sync_dist=True)  # sync_dist: mean over DDP ranks

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        loss = self.batch_loss(batch)
        # sync_dist: every DDP rank sees the same val_loss, so early stopping and BestWeights agree.
        self.log(
            "val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]), sync_dist=True
        )

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )


class TabularDataModule(pl.LightningDataModule):
    """Serve already-encoded train and validation arrays as tensors, one gather per batch.

    Without validation arrays (a refit on every row) it serves no validation batches. Train
    arrays may carry a fourth, the rows' weights (`TabularModel.batch_loss`).
    """

    def __init__(
        self,
        train: tuple[np.ndarray, ...],
        val: tuple[np.ndarray, ...] | None,
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_arrays = train
        self.val_arrays = val
        self.batch_size = batch_size
        self.seed = seed

    def setup(self, stage: str) -> None:
        self.train_set = _tensors(self.train_arrays)
        self.val_set = None if self.val_arrays is None else _tensors(self.val_arrays)

    def train_dataloader(self) -> DataLoader:
        # One generator for the loader's base seed and the sampler, as DataLoader(shuffle=True,
        # generator=...) uses it: the same batches, in the same order, as with that loader.
        generator = torch.Generator().manual_seed(self.seed)
        batches = IndexBatches(RandomSampler(self.train_set, generator=generator), self.batch_size)
        return DataLoader(self.train_set, sampler=batches, batch_size=None, generator=generator)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.val_set is None:
            return []  # Lightning's "no validation loaders"
        # A DataLoader still: each pass draws its base seed from torch's global RNG, which
        # dropout shares, so a seed gives the weights it gave before.
        batches = IndexBatches(SequentialSampler(self.val_set), 4096)
        return DataLoader(self.val_set, sampler=batches, batch_size=None)


class IndexBatches(Sampler[torch.Tensor]):
    """Cut a sampler's order into batches, one index tensor per batch.

    With `batch_size=None`, the DataLoader then indexes its TensorDataset with a whole batch at
    once, instead of fetching rows one by one and collating them.
    """

    def __init__(self, rows: RandomSampler | SequentialSampler, batch_size: int) -> None:
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        # Two details keep a shared generator's draws those of DataLoader(shuffle=True), hence
        # every epoch's order: being a generator, this draws at the first batch, after the
        # DataLoader's base seed; and it reads the sampler to its end, where RandomSampler
        # draws once more.
        order = np.fromiter(self.rows, dtype=np.int64)
        yield from torch.from_numpy(order).split(self.batch_size)


def _tensors(arrays: tuple[np.ndarray, ...]) -> TensorDataset:
    return TensorDataset(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))


class BestWeights(pl.Callback):
    """Keep the weights of the epoch with the lowest validation loss and restore them at the end."""

    def __init__(self, monitor: str = "val_loss") -> None:
        self.monitor = monitor
        self.best_score = float("inf")
        self.best_epoch = -1
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.history.append({"epoch": trainer.current_epoch, **metrics})
        score = metrics.get(self.monitor, float("inf"))
        if score < self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)
