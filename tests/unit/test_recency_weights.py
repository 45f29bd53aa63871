"""Recency weights: newer rows weigh more in the training loss, by a half-life over the window."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mlops.release.card import _window_line
from mlops.training.assembly import recency_weights
from mlops.training.model import TabularModel
from mlops.training.train import (
    TrainParams,
    predict_torch,
    refit_model,
    split_by_time,
    train_model,
)
from mlops.training.window import RECENCY_HALF_LIFE, fit_window
from tasks.training import _window_markdown
from tests.support.synthetic import FAST, STEP, make_contract, make_frame, stepped_frame

PARAMS = dataclasses.replace(FAST, max_epochs=12, patience=12, learning_rate=0.01)


def test_weights_halve_every_half_life_of_the_window_and_end_at_one() -> None:
    weights = recency_weights(1000, 0.25)

    assert weights.dtype == np.float32 and weights.shape == (1000,)
    assert weights[-1] == 1.0 and np.all(np.diff(weights) > 0)
    assert weights[-251] == pytest.approx(0.5, rel=1e-6)  # 250 rows (a quarter) older
    assert weights[0] == pytest.approx(0.5 ** (999 / 250), rel=1e-5)
    # the half-life is a share of the rows, so a window 10x longer has the same profile
    assert recency_weights(10_000, 0.25)[::10][-100:] == pytest.approx(weights[-100:], rel=0.01)
    with pytest.raises(ValueError, match="half_life must be > 0"):
        recency_weights(10, 0.0)
    with pytest.raises(ValueError, match="greater than 0"):
        TrainParams(recency_half_life=0)


@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_a_weighted_batch_loss_is_the_weighted_mean_of_the_rows_losses(task: str) -> None:
    torch.manual_seed(0)
    outputs = 3 if task == "multiclass" else 1
    module = TabularModel(task, [0.0], [1.0], [False], [], outputs, hidden=(4,), dropout=0.0)
    numeric, categorical = torch.randn(6, 1), torch.zeros(6, 0, dtype=torch.long)
    y = torch.tensor([0, 1, 2, 0, 1, 2]) if task == "multiclass" else torch.rand(6).round()
    plain = module.batch_loss((numeric, categorical, y))

    same = module.batch_loss((numeric, categorical, y, torch.full((6,), 0.3)))
    assert same.item() == pytest.approx(plain.item(), rel=1e-5)  # equal weights: the plain mean
    kept = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    first_half = module.batch_loss((numeric[:3], categorical[:3], y[:3]))
    weighted = module.batch_loss((numeric, categorical, y, kept))
    assert weighted.item() == pytest.approx(first_half.item(), rel=1e-5)  # weight 0: not counted


def test_a_model_trained_with_recency_weights_follows_the_newest_level() -> None:
    contract, frame = make_contract("regression"), stepped_frame()
    splits = split_by_time(frame)  # the train split holds both levels, the holdout the new one
    newest = splits.holdout

    def bias(params: TrainParams) -> float:
        model = train_model(splits, contract, params)
        return float(np.mean(predict_torch(model, newest) - newest["label"]))

    plain, weighted = bias(PARAMS), bias(dataclasses.replace(PARAMS, recency_half_life=0.1))

    assert plain < -0.25 * STEP  # it learned a level between the two
    assert abs(weighted) < 0.5 * abs(plain)


def test_a_refit_weighs_every_row_it_learns_by_recency() -> None:
    contract, frame = make_contract("regression"), stepped_frame()
    splits = split_by_time(frame)
    model = train_model(splits, contract, PARAMS)
    newest = frame.iloc[-500:]

    def bias(params: TrainParams) -> float:
        refitted = refit_model(dataclasses.replace(model, params=params), frame, contract)
        assert refitted.refit_rows == len(frame)
        return float(np.mean(predict_torch(refitted, newest) - newest["label"]))

    plain, weighted = bias(PARAMS), bias(dataclasses.replace(PARAMS, recency_half_life=0.1))

    assert plain < -0.25 * STEP
    assert abs(weighted) < 0.5 * abs(plain)


def test_the_window_is_weighed_by_recency_where_its_newest_rows_say_so() -> None:
    contract = make_contract("regression")
    stepped = fit_window(stepped_frame(), contract, PARAMS, None)
    still = fit_window(make_frame("regression", 3000, seed=4), contract, PARAMS, None)

    assert stepped.choice["recency"]["kept"], stepped.choice
    assert stepped.choice["recency"]["better_z"] >= 2
    assert stepped.model.params.recency_half_life == RECENCY_HALF_LIFE
    assert stepped.model.window == stepped.choice
    # where nothing moves, fewer effective rows only cost: the unweighted model stays
    assert not still.choice["recency"]["kept"], still.choice
    assert still.model.params.recency_half_life is None
    assert still.choice["recency"]["validation_rows"] == len(still.splits.val)


def test_no_alternative_is_trained_when_weights_are_fixed_or_adapting_is_off() -> None:
    contract, frame = make_contract("regression"), stepped_frame()
    for params in (
        dataclasses.replace(PARAMS, adapt_recency=False),
        dataclasses.replace(PARAMS, recency_half_life=1.0),
    ):
        fitted = fit_window(frame, contract, params, None)
        assert "recency" not in fitted.choice
        assert fitted.model.params.recency_half_life == params.recency_half_life


def test_the_training_window_artifact_and_the_card_say_which_weighting_was_kept() -> None:
    choice = {"rows": "window", "recency": {"half_life": 0.25, "better_z": 3.1,
                                            "validation_rows": 450, "kept": True}}  # fmt: skip

    text = _window_markdown(choice)

    assert "| whole window | the training rows | - | no |" in text
    assert "| whole window, recency-weighted | the training rows, a row's weight halving every " \
        "0.25 of them back from the newest | 3.1 | yes |" in text  # fmt: skip
    assert "on the 450 newest validation rows" in text
    assert "- Recency-weighted alternative (half-life 0.25 of the rows learned): paired z 3.1 " \
        "against unweighted on 450 validation rows; kept." in _window_line(choice)  # fmt: skip
