"""Tests of training on several devices: a DDP process group launched with torchrun (gloo)."""

from __future__ import annotations

import dataclasses
import functools
import logging
import tempfile
from pathlib import Path

import pytest
import torch

from mlops.training import distributed
from mlops.training.distributed import (
    DistributedTrainingError,
    fit_in_process_group,
)
from mlops.training.features import encode_features, encode_target, fit_preprocessor
from mlops.training.train import (
    TrainParams,
    evaluate_model,
    predict_torch,
    refit_model,
    split_by_time,
    train_model,
    uses_process_group,
)
from tasks.training import GPU_LIMIT, gpu_slot
from tests.support.synthetic import FAST, STEP, make_contract, make_frame, stepped_frame

PARAMS = dataclasses.replace(FAST, max_epochs=10, patience=3)
STEPPED = dataclasses.replace(FAST, max_epochs=12, patience=12, learning_rate=0.01)


@pytest.mark.slow
def test_two_gloo_ranks_train_a_model_as_good_as_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    contract, splits = make_contract("binary"), split_by_time(make_frame("binary", 2000, seed=2))
    single = train_model(splits, contract, PARAMS)
    with caplog.at_level(logging.INFO, logger="mlops.training.train"):
        ddp = train_model(splits, contract, dataclasses.replace(PARAMS, devices=2))

    assert "ranks [0, 1]" in caplog.text  # both ranks ran the fit to its end
    assert ddp.device == "2 x cpu (ddp)"  # rank 0's trainer saw a world of 2
    assert 1 <= ddp.epochs <= PARAMS.max_epochs and 0 <= ddp.best_epoch < ddp.epochs
    assert ddp.best_val_loss == min(h["val_loss"] for h in ddp.history)
    auc_single = evaluate_model(single, contract, splits.holdout)[0]["roc_auc"]
    auc_ddp = evaluate_model(ddp, contract, splits.holdout)[0]["roc_auc"]
    assert auc_single > 0.8 and auc_ddp > 0.8
    assert abs(auc_ddp - auc_single) < 0.03
    assert ddp.preprocessor == single.preprocessor  # fitted once, in this process
    assert list(tmp_path.iterdir()) == []  # the job directory is gone


@pytest.mark.slow
def test_a_failing_rank_raises_here_with_its_log_and_leaves_no_job_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    splits = split_by_time(make_frame("binary", 300, seed=2))
    bad = dataclasses.replace(
        PARAMS, devices=2, accelerator="abacus"
    )  # Lightning refuses it in the ranks

    with pytest.raises(DistributedTrainingError, match=r"failed in rank \d of 2") as failure:
        train_model(splits, make_contract("binary"), bad)

    assert "Traceback" in str(failure.value) and "abacus" in str(failure.value)
    assert list(tmp_path.iterdir()) == []


def test_one_device_trains_in_this_process_unless_ddp_is_asked_for() -> None:
    assert not uses_process_group(FAST)
    assert uses_process_group(dataclasses.replace(FAST, devices=2))
    assert uses_process_group(dataclasses.replace(FAST, strategy="ddp"))
    with pytest.raises(ValueError):
        TrainParams(devices=0)
    with pytest.raises(ValueError):
        TrainParams(strategy="fsdp")


def test_gpu_slot_occupies_one_slot_of_the_gpu_limit_per_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    slot = gpu_slot("gpu", 4)
    assert slot.args == (GPU_LIMIT,)  # type: ignore[attr-defined]
    assert slot.kwds == {"occupy": 4, "strict": True}  # type: ignore[attr-defined]
    assert gpu_slot("auto").kwds["occupy"] == 1  # type: ignore[attr-defined]
    assert gpu_slot("cpu", 4).__class__.__name__ == "nullcontext"


@pytest.mark.slow
def test_a_refit_on_two_ranks_learns_every_row_for_the_chosen_epochs() -> None:
    contract, frame = make_contract("binary"), make_frame("binary", 2000, seed=2)
    splits = split_by_time(frame)
    model = train_model(splits, contract, PARAMS)
    model = dataclasses.replace(model, params=dataclasses.replace(PARAMS, devices=2))

    refitted = refit_model(model, frame, contract)

    assert refitted.device == "2 x cpu (ddp)"
    assert refitted.refit_rows == len(frame) and refitted.refit_epochs == model.best_epoch + 1
    assert refitted.module is not model.module
    assert evaluate_model(refitted, contract, splits.holdout)[0]["roc_auc"] > 0.8


@pytest.mark.slow
def test_two_ranks_weigh_the_rows_by_recency_as_one_process_does() -> None:
    # The weights travel to the ranks with the rows they weigh (a fourth train array).
    contract, frame = make_contract("regression"), stepped_frame()
    model = train_model(split_by_time(frame), contract, STEPPED)
    newest = frame.iloc[-500:]

    def bias(params: TrainParams) -> float:
        refitted = refit_model(dataclasses.replace(model, params=params), frame, contract)
        return float((predict_torch(refitted, newest) - newest["label"]).mean())

    plain = bias(STEPPED)
    weighted = bias(dataclasses.replace(STEPPED, recency_half_life=0.1, devices=2))

    assert plain < -0.25 * STEP
    assert abs(weighted) < 0.5 * abs(plain)


@pytest.mark.slow
@pytest.mark.parametrize("grace_s", [30.0, 0.0], ids=["graceful", "torchrun-killed-at-once"])
def test_a_process_group_past_its_timeout_is_stopped_with_its_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grace_s: float
) -> None:
    # With no grace, torchrun is killed before it can stop the ranks, which run in sessions of
    # their own: they must be stopped all the same.
    monkeypatch.setattr(distributed, "_stop", functools.partial(distributed._stop, grace_s=grace_s))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    contract, frame = make_contract("binary"), make_frame("binary", 300, seed=2)
    prep = fit_preprocessor(frame, contract)
    arrays = (*encode_features(frame, prep), encode_target(frame["label"], prep.target))
    # 1,000 epochs: far more than 6 s allow on any machine, so the fit can only end stopped
    params = dataclasses.replace(PARAMS, devices=2, max_epochs=1000, patience=1000)

    with pytest.raises(DistributedTrainingError, match="did not finish in 6 s"):
        fit_in_process_group("binary", prep, params, arrays, arrays, timeout_s=6)

    assert list(tmp_path.iterdir()) == []
    left = [p for p in Path("/proc").glob("[0-9]*") if _cmdline_mentions(p, str(tmp_path))]
    assert left == []  # neither torchrun nor a rank still runs


def _cmdline_mentions(process: Path, text: str) -> bool:
    try:
        return text in (process / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
