"""Tests of the time split and of deterministic CPU training with early stopping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from mlops.contract.spec import Contract
from mlops.training.assembly import build_datamodule, build_module
from mlops.training.features import OOV_INDEX, encode_features, encode_target
from mlops.training.model import TabularDataModule, TabularModel
from mlops.training.train import (
    TrainedModel,
    TrainParams,
    params_dict,
    split_by_time,
    train_model,
)
from tests.support.synthetic import FAST, make_contract, make_frame, trained


def _train(task: str, params: TrainParams, frame: pd.DataFrame | None = None) -> TrainedModel:
    frame = make_frame(task, 400, seed=2) if frame is None else frame
    return train_model(split_by_time(frame), make_contract(task), params)


def _binary_loss(model: TrainedModel, frame: pd.DataFrame, contract: Contract) -> float:
    num, cat = encode_features(frame, model.preprocessor)
    y = torch.from_numpy(encode_target(frame[contract.target.name], model.preprocessor.target))
    with torch.no_grad():
        raw = model.module(torch.from_numpy(num), torch.from_numpy(cat))
        return float(torch.nn.functional.binary_cross_entropy_with_logits(raw[:, 0], y))


def _weighted_mean(losses: list[tuple[torch.Tensor, int]]) -> float:
    """Average per-batch mean losses weighted by rows, in float32 as Lightning's epoch logs do."""
    total, rows = torch.zeros(()), 0
    for loss, batch_rows in losses:
        total, rows = total + loss * batch_rows, rows + batch_rows
    return float(total / rows)


def _plain_loop(module: TabularModel, data: TabularDataModule, epochs: int) -> list[dict]:
    """Train by hand over plain shuffling DataLoaders; return each epoch's train and val loss."""
    tensors = [
        TensorDataset(*map(torch.from_numpy, a)) for a in (data.train_arrays, data.val_arrays)
    ]
    generator = torch.Generator().manual_seed(data.seed)
    train = DataLoader(tensors[0], batch_size=data.batch_size, shuffle=True, generator=generator)
    val = DataLoader(tensors[1], batch_size=4096)
    optimizer = module.configure_optimizers()
    losses = []
    for _ in range(epochs):
        module.train()
        train_losses = []
        for batch in train:
            loss = module.batch_loss(batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_losses.append((loss.detach(), len(batch[0])))
        module.eval()
        with torch.no_grad():
            val_losses = [(module.batch_loss(batch), len(batch[0])) for batch in val]
        losses.append({"train": _weighted_mean(train_losses), "val": _weighted_mean(val_losses)})
    return losses


def test_split_by_time_keeps_row_order_and_the_requested_sizes() -> None:
    frame = make_frame("binary", 200, seed=0)

    splits = split_by_time(frame, val_fraction=0.1, holdout_fraction=0.25)

    assert [len(splits.train), len(splits.val), len(splits.holdout)] == [130, 20, 50]
    rejoined = pd.concat([splits.train, splits.val, splits.holdout])
    pd.testing.assert_frame_equal(rejoined, frame)
    assert splits.train["ts"].max() < splits.val["ts"].min()
    assert splits.val["ts"].max() < splits.holdout["ts"].min()


def test_split_by_time_describes_each_split_with_rows_and_time_range() -> None:
    frame = make_frame("binary", 100, seed=0)

    described = split_by_time(frame).describe("ts")

    assert [d["split"] for d in described] == ["train", "val", "holdout"]
    assert [d["rows"] for d in described] == [70, 15, 15]
    assert described[2]["to"] == str(frame["ts"].max())


@pytest.mark.parametrize("rows", [0, 5, 13])
def test_split_by_time_refuses_too_few_rows(rows: int) -> None:
    with pytest.raises(ValueError, match=f"{rows} rows are too few"):
        split_by_time(make_frame("binary", rows, seed=0))


def test_training_twice_with_the_same_seed_gives_bit_identical_weights() -> None:
    params = dataclasses.replace(FAST, max_epochs=2)

    first = _train("multiclass", params).module.state_dict()
    second = _train("multiclass", params).module.state_dict()

    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_train_batches_come_in_the_order_of_a_seeded_shuffling_dataloader_every_epoch() -> None:
    rng = np.random.default_rng(0)
    arrays = (
        rng.normal(size=(1000, 3)).astype(np.float32),
        rng.integers(0, 5, size=(1000, 2)),
        rng.normal(size=1000).astype(np.float32),
    )
    data = TabularDataModule(arrays, arrays, batch_size=128, seed=7)
    data.setup("fit")
    found = data.train_dataloader()
    expected = DataLoader(
        TensorDataset(*(torch.from_numpy(a) for a in arrays)),
        batch_size=128,
        shuffle=True,
        generator=torch.Generator().manual_seed(7),
    )

    for _ in range(3):  # the generator carries over, so later epochs check its draws too
        pairs = list(zip(found, expected, strict=True))
        assert len(pairs) == 8  # the last batch is partial: 1000 = 7 * 128 + 104
        for got, want in pairs:
            assert all(torch.equal(g, w) for g, w in zip(got, want, strict=True))


def test_seeded_training_gives_the_epoch_losses_of_a_plain_loop_over_the_same_batches() -> None:
    params = dataclasses.replace(FAST, max_epochs=3, patience=3)
    contract = make_contract("multiclass")
    splits = split_by_time(make_frame("multiclass", 400, seed=2))

    model = train_model(splits, contract, params)

    pl.seed_everything(params.seed, workers=True, verbose=False)
    module = build_module(contract.task, model.preprocessor, params)
    data = build_datamodule(splits, model.preprocessor, contract.target.name, params)
    expected = _plain_loop(module, data, params.max_epochs)
    assert [h["val_loss"] for h in model.history] == [e["val"] for e in expected]
    # A history row is taken at validation end, before that epoch's train loss is logged.
    assert [h["train_loss"] for h in model.history[1:]] == [e["train"] for e in expected[:-1]]


def test_training_with_a_different_seed_gives_different_weights() -> None:
    first = _train("multiclass", dataclasses.replace(FAST, max_epochs=2, seed=1))
    second = _train("multiclass", dataclasses.replace(FAST, max_epochs=2, seed=2))

    a, b = first.module.state_dict(), second.module.state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_cpu_training_reports_the_cpu_device_and_its_epochs(task: str) -> None:
    _, model = trained(task)

    assert model.device == "cpu"
    assert model.epochs == FAST.max_epochs
    assert 0 <= model.best_epoch < model.epochs
    assert [h["epoch"] for h in model.history] == list(range(model.epochs))
    assert np.isfinite(model.best_val_loss)


def test_binary_training_tunes_a_decision_threshold_strictly_between_0_and_1() -> None:
    _, model = trained("binary")

    assert 0.0 < model.decision_threshold < 1.0


@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_non_binary_training_keeps_the_default_decision_threshold(task: str) -> None:
    assert trained(task)[1].decision_threshold == 0.5


def test_preprocessing_is_fitted_on_the_train_split_only() -> None:
    contract = make_contract("regression")
    frame = make_frame("regression", 400, seed=2)
    frame.loc[300:, "rating"] += 100.0  # a shift in the newest rows (validation and holdout)
    frame.loc[300:, "city"] = "zurich"
    splits = split_by_time(frame)

    model = train_model(splits, contract, dataclasses.replace(FAST, max_epochs=2))

    rating = next(s for s in model.preprocessor.numeric if s.name == "rating")
    city = next(v for v in model.preprocessor.categorical if v.name == "city")
    assert rating.mean == pytest.approx(splits.train["rating"].mean(), rel=1e-6)
    assert "zurich" not in city.values
    assert city.lookup(pd.Series(["zurich"])).tolist() == [OOV_INDEX]


def test_early_stopping_ends_training_once_validation_loss_stops_improving() -> None:
    frame = make_frame("binary", 600, seed=2)
    frame["label"] = np.random.default_rng(0).integers(0, 2, len(frame))  # nothing to learn
    params = dataclasses.replace(FAST, max_epochs=30, patience=1, learning_rate=0.05, hidden=(64,))

    model = _train("binary", params, frame)

    assert model.epochs < params.max_epochs
    assert model.best_epoch < model.epochs - 1
    assert model.best_val_loss == min(h["val_loss"] for h in model.history)


def test_training_restores_the_weights_of_the_best_validation_epoch() -> None:
    frame = make_frame("binary", 600, seed=2)
    frame["label"] = np.random.default_rng(0).integers(0, 2, len(frame))
    params = dataclasses.replace(FAST, max_epochs=30, patience=1, learning_rate=0.05, hidden=(64,))
    contract = make_contract("binary")
    splits = split_by_time(frame)

    model = train_model(splits, contract, params)

    last = model.history[-1]["val_loss"]
    assert last > model.best_val_loss
    assert _binary_loss(model, splits.val, contract) == pytest.approx(model.best_val_loss, rel=1e-5)


def test_params_dict_turns_tuples_into_lists_for_json() -> None:
    found = params_dict(TrainParams(hidden=(32, 16)))

    assert found["hidden"] == [32, 16]
    assert found["max_epochs"] == 25 and found["accelerator"] == "auto"
