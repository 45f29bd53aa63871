"""Lightning wrappers: the training module, the data module and a best-weights callback."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mlops.training.network import TabularNet


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

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """Return raw outputs of the network."""
        return self.net(numeric, categorical)

    def _loss(self, batch: Sequence[torch.Tensor]) -> torch.Tensor:
        numeric, categorical, y = batch
        raw = self(numeric, categorical)
        if self.task == "multiclass":
            return self.loss_fn(raw, y)
        return self.loss_fn(raw[:, 0], y)

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def validation_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> None:
        loss = self._loss(batch)
        self.log("val_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            self.parameters(),
            lr=self.hparams["learning_rate"],
            weight_decay=self.hparams["weight_decay"],
        )


class TabularDataModule(pl.LightningDataModule):
    """Serve already-encoded train and validation arrays as tensors."""

    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray, np.ndarray],
        batch_size: int = 512,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.train_arrays = train
        self.val_arrays = val
        self.batch_size = batch_size
        self.seed = seed

    @staticmethod
    def _dataset(arrays: tuple[np.ndarray, np.ndarray, np.ndarray]) -> TensorDataset:
        return TensorDataset(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self._dataset(self.train_arrays),
            batch_size=self.batch_size,
            shuffle=True,
            generator=generator,
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._dataset(self.val_arrays), batch_size=4096)


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
