"""Tests of the search space, the pruning callback, trials, study storage and the study report."""

from __future__ import annotations

import base64
import dataclasses
import itertools
import multiprocessing
import re
import xml.etree.ElementTree as ET
from typing import Any

import optuna
import pytest

from mlops.training.train import TrainParams, split_by_time
from mlops.training.tuning import (
    DEFAULT_SPACE,
    asking,
    count_states,
    enqueue_base,
    open_study,
    params_of,
    run_trial,
    study_storage,
    suggest,
)
from mlops.training.tuning_report import (
    history_svg,
    importance_svg,
    param_importances,
    trials_table,
    tuning_markdown,
)
from tests.support.synthetic import FAST, make_contract, make_frame

BASE = dataclasses.replace(FAST, max_epochs=6, patience=6)


@pytest.fixture(scope="module")
def toy() -> tuple:
    splits = split_by_time(make_frame("binary", 600, seed=3))
    return splits.train, splits.val, make_contract("binary")


def test_suggest_draws_every_hyperparameter_inside_the_space_and_keeps_the_rest() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        params = suggest(study.ask(), BASE)
        assert 1e-4 <= params.learning_rate <= 1e-2
        assert 1e-6 <= params.weight_decay <= 1e-2
        assert 0.0 <= params.dropout <= 0.4
        assert params.batch_size in DEFAULT_SPACE.batch_sizes
        assert params.hidden[0] in DEFAULT_SPACE.widths and 1 <= len(params.hidden) <= 3
        assert all(b == max(a // 2, 8) for a, b in itertools.pairwise(params.hidden))
        assert (params.max_epochs, params.seed, params.accelerator) == (6, 7, "cpu")


def test_params_of_rebuilds_the_params_a_trial_drew() -> None:
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1)).ask()
    drawn = suggest(trial, BASE)
    assert params_of(trial.params, BASE) == drawn
    assert params_of(
        {"width": 64, "layers": 2, "learning_rate": 1e-3, "weight_decay": 1e-5, "dropout": 0.2,
         "batch_size": 256}, BASE,
    ).hidden == (64, 32)  # fmt: skip


def test_a_new_study_starts_from_the_base_hyperparameters_when_the_space_holds_them() -> None:
    base = TrainParams()  # hidden (128, 64), learning rate 2e-3, batch 512, ...
    study = optuna.create_study()

    assert enqueue_base(study, base)
    assert suggest(study.ask(), base) == base
    assert not enqueue_base(study, base)  # a study with trials is left as it is
    for outside in ({"hidden": (100,)}, {"hidden": (128, 60)}, {"learning_rate": 0.5}):
        assert not enqueue_base(optuna.create_study(), dataclasses.replace(base, **outside))


def test_a_trial_behind_the_median_is_pruned_at_its_first_reported_epoch(toy) -> None:
    train, val, contract = toy
    study = optuna.create_study(
        pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    )
    best = study.ask()  # a finished trial whose loss no real model reaches
    for epoch in range(6):
        best.report(1e-6, step=epoch)
    study.tell(best, 1e-6)

    result = run_trial(study, train, val, contract, BASE)

    assert result.state == "PRUNED" and result.value is None and "epoch 0" in result.message
    pruned = study.trials[1]
    assert pruned.state == optuna.trial.TrialState.PRUNED
    assert list(pruned.intermediate_values) == [0]  # stopped after one epoch of six


def test_an_unpruned_trial_reports_every_epoch_and_is_told_its_best_validation_loss(toy) -> None:
    train, val, contract = toy
    study = optuna.create_study(pruner=optuna.pruners.NopPruner())

    result = run_trial(study, train, val, contract, BASE)

    (trial,) = study.trials
    assert result.state == "COMPLETE" and trial.state == optuna.trial.TrialState.COMPLETE
    assert len(trial.intermediate_values) == result.epochs == 6
    assert trial.value == pytest.approx(min(trial.intermediate_values.values()), rel=1e-6)
    assert count_states(study) == {"complete": 1, "pruned": 0, "failed": 0, "running": 0}


def test_storage_is_sqlite_under_a_local_home_and_a_url_elsewhere(tmp_path) -> None:
    expected = f"sqlite:///{tmp_path / 'tuning' / 'optuna.db'}"
    assert study_storage(str(tmp_path)) == expected
    assert study_storage(f"file://{tmp_path}") == expected
    url = "postgresql://mlops@db:5432/optuna"
    assert study_storage("s3://bucket/mlops", url) == url
    with pytest.raises(ValueError, match=r"cannot be shared.*database URL"):
        study_storage("s3://bucket/mlops")


def test_reopening_a_study_continues_it(tmp_path) -> None:
    storage = study_storage(str(tmp_path))
    first = open_study(storage, "card-fraud")
    first.tell(first.ask({"x": optuna.distributions.FloatDistribution(0, 1)}), 0.5)

    again = open_study(storage, "card-fraud", seed=7)

    assert (tmp_path / "tuning" / "optuna.db").is_file()
    assert len(again.trials) == 1 and again.best_value == 0.5
    assert again.direction == optuna.study.StudyDirection.MINIMIZE


def _decoded_svgs(markdown: str) -> list[ET.Element]:
    found = re.findall(r"data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)\)", markdown)
    return [ET.fromstring(base64.b64decode(b)) for b in found]


def _study(values: list[float | None]) -> optuna.Study:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for value in values:
        trial = study.ask()
        suggest(trial, TrainParams())
        if value is None:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, value)
    return study


def test_the_report_shows_history_importances_and_one_row_per_trial() -> None:
    study = _study([0.5, None, 0.4, 0.45, 0.3, None, 0.35, 0.32])
    importances = param_importances(study)

    markdown = tuning_markdown(study, importances)

    assert set(importances) == {
        "width", "layers", "learning_rate", "weight_decay", "dropout", "batch_size"
    }  # fmt: skip
    assert sum(importances.values()) == pytest.approx(1.0)
    history, bars = _decoded_svgs(markdown)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(history.findall(f"{ns}circle")) == 6 + 1  # complete trials, and the legend's
    assert len(bars.findall(f"{ns}rect")) == 1 + len(importances)  # background + bars
    rows = trials_table(study)
    assert [r["state"] for r in rows].count("PRUNED") == 2 and len(rows) == 8
    assert "8 trials: 6 complete, 2 pruned, 0 failed" in markdown
    assert "trial 4" in markdown  # the best, 0.3


def test_the_report_has_no_importances_under_two_complete_trials() -> None:
    study = _study([0.5, None])

    markdown = tuning_markdown(study, param_importances(study))

    assert param_importances(study) == {}
    assert "need at least two complete trials" in markdown
    assert len(_decoded_svgs(markdown)) == 1
    ET.fromstring(importance_svg({}))
    ET.fromstring(history_svg(_study([])))


def _ask_once(storage: str, start: Any, out: Any) -> None:
    """In a process of its own: open the study, wait for the others, ask for one trial."""
    study = open_study(storage, "race")
    start.wait()
    with asking(storage):
        trial = study.ask()
    out.put(trial.number)


def test_parallel_processes_asking_a_sqlite_study_never_share_its_enqueued_trial(tmp_path) -> None:
    # SQLite cannot lock the enqueued trial's row: without `asking`, two processes starting
    # together may both pop it, train it twice, and the second tell is refused.
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    assert enqueue_base(open_study(storage, "race"), TrainParams())
    context = multiprocessing.get_context("fork")
    start, out = context.Barrier(6), context.Queue()
    workers = [context.Process(target=_ask_once, args=(storage, start, out)) for _ in range(6)]
    for worker in workers:
        worker.start()
    asked = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)

    assert sorted(asked) == list(range(6))  # the enqueued trial 0 was popped once
    trials = open_study(storage, "race").get_trials()
    assert sum("fixed_params" in t.system_attrs for t in trials) == 1
    assert (tmp_path / "optuna.db.ask-lock").exists()
