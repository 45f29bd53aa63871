"""Time training epochs of the project's Lightning path against a minimal loop and the old path.

The same model on the same data, on CPU: the project's Lightning path; the previous one, kept here
only as the "before" baseline (rows fetched one by one and collated, the loss logged on every step);
and a minimal loop that shuffles with randperm and indexes the tensors directly. The machine is
noisy, so each Lightning epoch is paired with a minimal-loop epoch run just before it (in a forked
RNG, which leaves the Lightning run's results alone), and ratios are taken pair by pair.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from mlops.contract.spec import Contract
from mlops.training.assembly import build_datamodule, build_module, build_trainer
from mlops.training.features import Preprocessor
from mlops.training.model import BestWeights, TabularDataModule, TabularModel
from mlops.training.train import Splits, TrainParams

NAMES = {
    "before": "previous Lightning path (row-wise DataLoader, loss logged every step)",
    "lightning": "Lightning path (one gather per batch, loss logged per epoch)",
    "minimal": "minimal loop (randperm, tensors indexed directly)",
}


class StepLoggedModel(TabularModel):
    """The previous training step, the "before" baseline: `self.log` on every step."""

    def on_train_epoch_start(self) -> None:
        pass

    def training_step(self, batch: Sequence[torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self.batch_loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(batch[0]))
        return loss

    def on_train_epoch_end(self) -> None:
        pass


class RowwiseDataModule(TabularDataModule):
    """The previous data loaders, the "before" baseline: rows fetched one by one, then collated."""

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            self.train_set, batch_size=self.batch_size, shuffle=True, generator=generator
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=4096)


class MinimalLoop:
    """Train with randperm batches indexed straight from the tensors, then validate."""

    def __init__(self, module: TabularModel, data: TabularDataModule) -> None:
        self.module = module
        self.optimizer = module.configure_optimizers()
        self.train, self.val = data.train_set.tensors, data.val_set.tensors
        self.batch_size = data.batch_size
        self.generator = torch.Generator().manual_seed(data.seed)

    def epoch(self) -> float:
        """Run one epoch; return its seconds."""
        started = time.perf_counter()
        self.module.train()
        rows = len(self.train[0])
        for index in torch.randperm(rows, generator=self.generator).split(self.batch_size):
            loss = self.module.batch_loss([t[index] for t in self.train])
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
        self.module.eval()
        with torch.no_grad():
            for start in range(0, len(self.val[0]), 4096):
                self.module.batch_loss([t[start : start + 4096] for t in self.val])
        return time.perf_counter() - started


class PairedEpochs(pl.Callback):
    """Time each Lightning epoch, running a minimal-loop epoch (timed too) just before it."""

    def __init__(self, minimal: MinimalLoop) -> None:
        self.minimal = minimal
        self.seconds: dict[str, list[float]] = {"lightning": [], "minimal": []}
        self._started: float | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()
        with torch.random.fork_rng(devices=[]):  # the Lightning run keeps its dropout draws
            self.seconds["minimal"].append(self.minimal.epoch())
        self._started = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop()

    def _stop(self) -> None:
        # An epoch runs until the next one starts: validation and epoch-end hooks included.
        if self._started is not None:
            self.seconds["lightning"].append(time.perf_counter() - self._started)
            self._started = None


def _paired_fit(
    module: TabularModel,
    datamodule: TabularDataModule,
    data: TabularDataModule,
    params: TrainParams,
) -> tuple[PairedEpochs, BestWeights]:
    """Fit the module, pairing each epoch with one of a minimal loop (on `data`'s tensors)."""
    with torch.random.fork_rng(devices=[]):  # building the copy draws no weights of the fit
        copy = TabularModel(**module.hparams)
    copy.load_state_dict(module.state_dict())
    paired, best = PairedEpochs(MinimalLoop(copy, data)), BestWeights()
    build_trainer(params, [best, paired]).fit(module, datamodule=datamodule)
    return paired, best


def compare_epochs(
    splits: Splits,
    contract: Contract,
    prep: Preprocessor,
    params: TrainParams,
    rounds: int,
    epochs: int,
) -> dict[str, Any]:
    """Time epochs of the previous and current Lightning paths, each paired with a minimal loop."""
    params = dataclasses.replace(params, max_epochs=epochs, patience=epochs, accelerator="cpu")
    data = build_datamodule(splits, prep, contract.target.name, params)
    data.setup("fit")
    paths = {
        "before": (
            StepLoggedModel,
            RowwiseDataModule(data.train_arrays, data.val_arrays, params.batch_size, params.seed),
        ),
        "lightning": (TabularModel, data),
    }
    hparams = build_module(contract.task, prep, params).hparams
    seconds: dict[str, list[float]] = {name: [] for name in NAMES}
    ratios: dict[str, list[float]] = {"before": [], "lightning": []}
    runs: dict[str, tuple[TabularModel, BestWeights]] = {}
    for round_ in range(rounds):
        for name in ("before", "lightning")[:: 1 if round_ % 2 == 0 else -1]:
            model_class, datamodule = paths[name]
            pl.seed_everything(params.seed, workers=True, verbose=False)  # as train_model does
            module = model_class(**hparams)
            paired, best = _paired_fit(module, datamodule, data, params)
            runs[name] = (module, best)
            seconds[name] += paired.seconds["lightning"]
            seconds["minimal"] += paired.seconds["minimal"]
            pairs = zip(paired.seconds["lightning"], paired.seconds["minimal"], strict=True)
            ratios[name] += [lightning / minimal for lightning, minimal in pairs]
    (before, before_best), (after, after_best) = runs["before"], runs["lightning"]
    return {
        "rounds": rounds,
        "epochs_per_round": epochs,
        "seconds_per_epoch": {k: round(float(np.median(v)), 3) for k, v in seconds.items()},
        "ratio_to_minimal": {k: round(float(np.median(v)), 2) for k, v in ratios.items()},
        "ratio_quartiles": {
            k: [round(float(q), 2) for q in np.percentile(v, [25, 75])] for k, v in ratios.items()
        },
        "same_losses_before_and_after": before_best.history == after_best.history,
        "same_weights_before_and_after": all(
            torch.equal(tensor, before.state_dict()[name])
            for name, tensor in after.state_dict().items()
        ),
    }


def epoch_lines(epochs: dict[str, Any]) -> list[str]:
    """Render the comparison as markdown lines."""
    seconds, ratio = epochs["seconds_per_epoch"], epochs["ratio_to_minimal"]
    return [
        "",
        f"## Epoch time on CPU: {epochs['rounds']} rounds of {epochs['epochs_per_round']} epochs "
        "(training and validation)",
        "",
        "| variant | median s/epoch | median ratio to the paired minimal-loop epoch |",
        "|---|---|---|",
        *(f"| {NAMES[k]} | {seconds[k]:.3f} | {ratio.get(k, 1.0):.2f}x |" for k in NAMES),
        "",
        f"- Ratio quartiles (25%, 75%): {epochs['ratio_quartiles']}",
        f"- Same per-epoch losses before and after: {epochs['same_losses_before_and_after']}; "
        f"same weights: {epochs['same_weights_before_and_after']}",
    ]
