"""Tests of the time split and of deterministic CPU training with early stopping."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from mlops.contract.spec import Contract
from mlops.training.features import OOV_INDEX, encode_features, encode_target
from mlops.training.train import TrainedModel, TrainParams, params_dict, split_by_time, train_model
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
