"""Train with Lightning on a window's time-ordered splits (fitting preprocessing on the training
split), refit on every row, tune the decision threshold, predict and evaluate."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch

from mlops.contract.spec import Contract
from mlops.training.assembly import (
    build_datamodule,
    build_module,
    build_trainer,
    describe_device,
    encode_rows,
    learned_arrays,
)
from mlops.training.distributed import DistributedFit, fit_in_process_group
from mlops.training.evaluate import (
    choose_threshold,
    compute_metrics,
    resolve_objective,
    slice_metrics,
    threshold_anchor,
)
from mlops.training.features import Preprocessor, encode_features, encode_target, fit_preprocessor
from mlops.training.model import BestWeights, TabularDataModule, TabularModel
from mlops.training.network import InferencePipeline, OutputHead
from mlops.training.params import TrainParams as TrainParams  # where callers import it from
from mlops.training.params import params_dict as params_dict
from mlops.training.quiet import quiet_libraries
from mlops.training.splits import Splits as Splits  # where callers import them from
from mlops.training.splits import split_by_time as split_by_time

log = logging.getLogger(__name__)


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
    arrays = (
        learned_arrays(splits.train, prep, target, params),
        encode_rows(splits.val, prep, target),
    )
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


def refit_threshold(model: TrainedModel, rows: pd.DataFrame, contract: Contract) -> float:
    """Return the decision threshold `model` serves with once refitted on `rows`.

    A cut tuned for accuracy or balanced accuracy leaves its anchor (`threshold_anchor`) only
    where the model's probabilities were off on the validation rows, which are the window's
    newest; the refit learns those rows, so the offset would correct a second time what the
    refit has already learned. Such a refit serves at the anchor, for the rows it learned. An F1
    or fixed cut, and a model without a threshold objective, keep `model`'s threshold.
    """
    objective = model.threshold_objective
    if objective not in ("accuracy", "balanced_accuracy"):
        return model.decision_threshold
    encoded = encode_target(rows[contract.target.name], model.preprocessor.target)
    return threshold_anchor(objective, float(np.mean(encoded)))


def refit_model(
    model: TrainedModel, rows: pd.DataFrame, contract: Contract, *, progress: bool = False
) -> TrainedModel:
    """Retrain on all `rows` for the epochs early stopping chose for `model`; no validation.

    The preprocessing is refitted on every row, so categories first seen in the newest rows get
    indices. The network starts from the same seed and hyperparameters. The decision threshold
    is `refit_threshold`'s. Everything else (validation loss and history) stays `model`'s: it was
    measured on rows that the refit then learns, so no figure of the refitted model itself would
    be honest.
    """
    params = model.params
    threshold = refit_threshold(model, rows, contract)
    pl.seed_everything(params.seed, workers=True, verbose=False)
    prep = fit_preprocessor(
        rows, contract, max_vocab=params.max_vocab, min_count=params.min_category_count
    )
    module = build_module(contract.task, prep, params)
    arrays = learned_arrays(rows, prep, contract.target.name, params)
    epochs = max(model.best_epoch + 1, 1)  # BestWeights counts epochs from 0
    if uses_process_group(params):
        started = time.perf_counter()
        fit = fit_in_process_group(contract.task, prep, params, arrays, None, epochs=epochs)
        seconds = time.perf_counter() - started
        log.info("refitted on %d rows for %d epochs on %s in %.1fs",
                 len(rows), epochs, fit.describe(), seconds)  # fmt: skip
        return replace(model, preprocessor=prep, module=_loaded(contract.task, prep, params, fit),
                       device=fit.describe(), decision_threshold=threshold, refit_rows=len(rows),
                       refit_epochs=epochs, refit_seconds=seconds)  # fmt: skip
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
        decision_threshold=threshold,
        refit_rows=len(rows),
        refit_epochs=epochs,
        refit_seconds=seconds,
    )


def predict_torch(model: TrainedModel, frame: pd.DataFrame) -> np.ndarray:
    """Predict with the PyTorch pipeline on raw rows: probabilities [N, C] or values [N]."""
    num, cat = encode_features(frame, model.preprocessor)
    pipeline = model.pipeline()
    columns = [torch.from_numpy(num[:, j]) for j in range(num.shape[1])]
    columns += [torch.from_numpy(cat[:, j]) for j in range(cat.shape[1])]
    with torch.no_grad():
        return pipeline(*columns).numpy()


def evaluate_model(
    model: TrainedModel, contract: Contract, frame: pd.DataFrame
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Return the model's metrics on labelled rows, overall and per slice."""
    output = predict_torch(model, frame)
    classes, threshold = model.preprocessor.target.classes, model.decision_threshold
    target = frame[contract.target.name]
    metrics = compute_metrics(contract.task, target, output, classes, threshold)
    return metrics, slice_metrics(frame, contract, output, classes, threshold)
