"""Synthetic labelled histories: sizes, seeds, contracts, the drift each one promises, files."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.sources import load_dataset
from mlops.data.validate import validate_frame
from tests.support.histories import (
    FEED_UNIT_FACTOR,
    UNSEEN_SEGMENT,
    History,
    broken_feed_batches,
    broken_feed_binary,
    growing_regression,
    low_volume_binary,
    recurring_binary,
    recurring_phases,
    stable_binary,
    write_history,
)

BUILDERS: dict[str, Callable[..., History]] = {
    "recurring-binary": recurring_binary,
    "growing-regression": growing_regression,
    "low-volume-binary": low_volume_binary,
    "stable-binary": stable_binary,
}
WITH_BROKEN_FEED = {**BUILDERS, "broken-feed-binary": broken_feed_binary}  # fails its contract
DEFAULT_SIZES = {
    "recurring-binary": (24, 1000, 6000),
    "growing-regression": (24, 700, 6000),
    "low-volume-binary": (30, 500, 3000),
    "stable-binary": (24, 1000, 6000),
}
HOURS = {"hour": range(24)}
SMALL = {"batches": 3, "batch_rows": 40, "initial_rows": 100}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def history(request: pytest.FixtureRequest) -> History:
    return BUILDERS[request.param]()


@pytest.fixture(scope="module")
def recurring() -> History:
    return recurring_binary()


@pytest.fixture(scope="module")
def growing() -> History:
    return growing_regression()


@pytest.fixture(scope="module")
def low_volume() -> History:
    return low_volume_binary()


@pytest.fixture(scope="module")
def stable() -> History:
    return stable_binary()


@pytest.fixture(scope="module")
def broken() -> History:
    return broken_feed_binary()


def design(
    frame: pd.DataFrame, contract: Contract, one_hot: Mapping[str, Iterable[object]] | None = None
) -> np.ndarray:
    """Return numeric features as they are, categorical ones and `one_hot` ones as indicators."""
    levels: dict[str, Iterable[object]] = {
        c.name: c.checks.allowed or () for c in contract.categorical_features
    }
    levels.update(one_hot or {})
    parts = [frame[[c.name for c in contract.numeric_features if c.name not in levels]]]
    for name, values in levels.items():
        parts += [(frame[name] == v).rename(f"{name}={v}") for v in values]
    return pd.concat(parts, axis=1).to_numpy(dtype=float)


def batch_aucs(history: History, model: LogisticRegression) -> list[float]:
    """Return the ROC AUC of `model` on each batch of a binary history."""
    aucs = []
    for b in range(history.n_batches):
        rows = history.batch(b)
        scores = model.predict_proba(design(rows, history.contract))[:, 1]
        aucs.append(roc_auc_score(rows["label"], scores))
    return aucs


def fit_classifier(history: History, rows: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(design(rows, history.contract), rows["label"])


def test_each_history_has_its_initial_rows_then_full_batches(history: History) -> None:
    batches, batch_rows, initial_rows = DEFAULT_SIZES[history.name]
    assert (history.batch_rows, history.initial_rows, history.n_batches) == (
        batch_rows,
        initial_rows,
        batches,
    )
    assert len(history.frame) == initial_rows + batches * batch_rows <= 40_000
    assert len(history.initial) == initial_rows
    assert len(history.batch(batches - 1)) == batch_rows


@pytest.mark.parametrize("name", sorted(WITH_BROKEN_FEED))
def test_sizes_follow_the_keyword_arguments(name: str) -> None:
    small = WITH_BROKEN_FEED[name](**SMALL)
    assert len(small.frame) == 100 + 3 * 40
    assert small.n_batches == 3
    assert small.batch(2)["row_id"].iloc[-1] == small.frame["row_id"].iloc[-1]


@pytest.mark.parametrize("name", sorted(WITH_BROKEN_FEED))
def test_the_same_seed_gives_the_same_history_and_another_seed_another(name: str) -> None:
    build = WITH_BROKEN_FEED[name]
    first, again, other = build(**SMALL, seed=3), build(**SMALL, seed=3), build(**SMALL, seed=4)
    pd.testing.assert_frame_equal(first.frame, again.frame)
    assert first.contract.fingerprint == other.contract.fingerprint
    target = first.contract.target.name
    assert not np.array_equal(first.frame[target], other.frame[target])


def test_every_row_passes_the_contract(history: History) -> None:
    result = validate_frame(history.frame, history.contract)
    assert (result.n_valid, result.n_quarantined) == (len(history.frame), 0)
    assert list(history.frame.columns) == [c.name for c in history.contract.columns]
    assert history.frame.columns[-1] == history.contract.target.name
    assert history.frame["row_id"].is_unique
    assert history.frame["timestamp"].is_monotonic_increasing
    assert history.frame["timestamp"].is_unique
    assert not history.frame.isna().any().any()


def test_binary_batches_are_one_day_each(
    recurring: History, low_volume: History, stable: History, broken: History
) -> None:
    for history in (recurring, low_volume, stable, broken):
        days = [history.batch(b)["timestamp"].dt.normalize().unique() for b in (0, 5)]
        assert [len(d) for d in days] == [1, 1]
        assert days[1][0] - days[0][0] == pd.Timedelta(days=5)


def test_regression_rows_are_hourly(growing: History) -> None:
    steps = growing.frame["timestamp"].diff().dropna()
    assert (steps == pd.Timedelta(hours=1)).all()


def test_recurring_binary_is_balanced_in_every_batch(recurring: History) -> None:
    rates = [recurring.batch(b)["label"].mean() for b in range(recurring.n_batches)]
    assert all(0.45 <= rate <= 0.55 for rate in rates), rates
    assert 0.45 <= recurring.initial["label"].mean() <= 0.55


def test_recurring_phases_are_thirds_of_a_then_b_then_a() -> None:
    assert recurring_phases(24) == ["A"] * 8 + ["B"] * 8 + ["A"] * 8
    assert recurring_phases(3) == ["A", "B", "A"]


def test_a_model_of_concept_a_fails_on_b_batches_and_recovers_when_a_recurs(
    recurring: History,
) -> None:
    aucs = batch_aucs(recurring, fit_classifier(recurring, recurring.initial))
    phases = recurring_phases(recurring.n_batches)
    on_a = [auc for auc, phase in zip(aucs, phases, strict=True) if phase == "A"]
    on_b = [auc for auc, phase in zip(aucs, phases, strict=True) if phase == "B"]
    assert min(on_a) >= 0.85, on_a
    assert max(on_b) < 0.6, on_b
    assert min(aucs[-8:]) >= 0.85  # concept A is back in the last third


def test_a_model_of_concept_b_is_good_on_b_batches(recurring: History) -> None:
    model = fit_classifier(recurring, recurring.batch(8))
    assert min(batch_aucs(recurring, model)[9:16]) >= 0.85


def test_recurring_binary_features_do_not_move_when_the_concept_flips(
    recurring: History,
) -> None:
    phases = np.repeat(recurring_phases(recurring.n_batches), recurring.batch_rows)
    batches = recurring.frame.iloc[recurring.initial_rows :].assign(phase=phases)
    means = batches.groupby("phase")[["x1", "x2", "x3", "x4"]].agg(["mean", "std"])
    assert (means.loc["A"] - means.loc["B"]).abs().max() < 0.05
    shares = pd.crosstab(batches["phase"], batches["segment"], normalize="index")
    assert (shares.loc["A"] - shares.loc["B"]).abs().max() < 0.03


def test_regression_target_mean_grows_every_batch_by_about_three_percent(
    growing: History,
) -> None:
    means = np.array([growing.batch(b)["demand"].mean() for b in range(growing.n_batches)])
    assert (np.diff(means) > 0).all(), means
    growth = means[-1] / means[0]
    assert 1.03**23 * 0.95 < growth < 1.03**23 * 1.05, growth
    assert abs(growing.initial["demand"].mean() / means[0] - 1) < 0.05


def test_regression_features_stay_in_a_small_band(growing: History) -> None:
    names = ["hour", "temperature", "humidity", "demand"]
    means = pd.DataFrame([growing.batch(b)[names].mean() for b in range(growing.n_batches)])
    spread = (means.max() - means.min()) / growing.frame[names].std()  # in standard deviations
    assert (spread[names[:3]] < 0.25).all() and spread["demand"] > 1.5, spread.to_dict()
    weekend = [growing.batch(b)["weekday"].isin(["sat", "sun"]).mean() for b in (0, 23)]
    assert abs(weekend[0] - weekend[1]) < 0.05


def test_a_static_regression_model_degrades_and_retraining_fixes_it(growing: History) -> None:
    contract = growing.contract

    def fit(rows: pd.DataFrame) -> LinearRegression:
        return LinearRegression().fit(design(rows, contract, HOURS), rows["demand"])

    def rmse(model: LinearRegression, rows: pd.DataFrame) -> float:
        errors = model.predict(design(rows, contract, HOURS)) - rows["demand"]
        return float(np.sqrt(np.mean(errors**2)))

    static = fit(growing.initial)
    errors = [rmse(static, growing.batch(b)) for b in range(growing.n_batches)]
    assert (np.diff(errors) > 0).all(), errors
    assert errors[-1] > 5 * errors[0]
    assert rmse(fit(growing.batch(22)), growing.batch(23)) < 0.25 * errors[-1]


def test_low_volume_binary_has_500_rows_per_batch(low_volume: History) -> None:
    sizes = {len(low_volume.batch(b)) for b in range(low_volume.n_batches)}
    assert sizes == {500}


def test_low_volume_binary_shifts_gradually_from_halfway(low_volume: History) -> None:
    x1 = np.array([low_volume.batch(b)["x1"].mean() for b in range(low_volume.n_batches)])
    assert np.abs(x1[:15]).max() < 0.15, x1[:15]
    assert x1[-1] > 1.2 and x1[22] > 0.5 and x1[22] < x1[-1] - 0.3
    aucs = batch_aucs(low_volume, fit_classifier(low_volume, low_volume.initial))
    assert min(aucs[:15]) >= 0.9, aucs[:15]
    assert max(aucs[-3:]) < 0.8 and aucs[20] > aucs[-1], aucs
    last, retrained = low_volume.batch(29), fit_classifier(low_volume, low_volume.batch(28))
    scores = retrained.predict_proba(design(last, low_volume.contract))[:, 1]
    assert roc_auc_score(last["label"], scores) >= 0.9


def test_stable_binary_is_balanced_and_its_features_do_not_move(stable: History) -> None:
    batches = [stable.batch(b) for b in range(stable.n_batches)]
    rates = [rows["label"].mean() for rows in batches]
    assert all(0.45 <= rate <= 0.55 for rate in rates), rates
    means = pd.DataFrame([rows[["x1", "x2", "x3", "x4"]].mean() for rows in batches])
    assert (means.abs() < 0.1).all().all(), means  # 1000 rows: the mean's noise is about 0.03
    shares = pd.DataFrame([rows["segment"].value_counts(normalize=True) for rows in batches])
    assert ((shares - 0.25).abs() < 0.05).all().all(), shares


def test_a_model_of_the_first_rows_scores_as_well_on_the_last_stable_batches_as_on_the_first(
    stable: History,
) -> None:
    model = fit_classifier(stable, stable.initial)
    aucs = batch_aucs(stable, model)
    accuracies = [
        float((model.predict(design(rows, stable.contract)) == rows["label"]).mean())
        for rows in (stable.batch(b) for b in range(stable.n_batches))
    ]
    assert min(aucs) >= 0.85, aucs  # there is something to learn
    for scores in (aucs, accuracies):  # within noise: about 0.01 per 1000-row batch
        assert abs(np.mean(scores[:4]) - np.mean(scores[-4:])) < 0.02, scores
        assert max(scores) - min(scores) < 0.08, scores  # no batch strays either


def test_the_broken_feed_hits_three_consecutive_batches_from_the_middle() -> None:
    assert broken_feed_batches(24) == [12, 13, 14]
    assert broken_feed_batches(20) == [10, 11, 12]
    assert broken_feed_batches(3) == [1, 2]


def test_the_broken_feed_changes_only_its_batches_and_only_what_it_reports(
    stable: History, broken: History
) -> None:
    assert broken.n_batches == stable.n_batches
    pd.testing.assert_series_equal(broken.frame["label"], stable.frame["label"])
    pd.testing.assert_frame_equal(
        broken.frame[["timestamp", "x3", "x4"]], stable.frame[["timestamp", "x3", "x4"]]
    )
    bad = set(broken_feed_batches(broken.n_batches))
    for b in range(broken.n_batches):
        rows, clean = broken.batch(b), stable.batch(b)
        if b not in bad:
            pd.testing.assert_frame_equal(rows.drop(columns="row_id"), clean.drop(columns="row_id"))
            continue
        np.testing.assert_allclose(rows["x1"], clean["x1"] * FEED_UNIT_FACTOR)
        nulls, unseen = rows["x2"].isna(), rows["segment"] == UNSEEN_SEGMENT
        assert 0.15 < nulls.mean() < 0.25 and 0.15 < unseen.mean() < 0.25
        np.testing.assert_array_equal(rows["x2"][~nulls], clean["x2"][~nulls])
        np.testing.assert_array_equal(rows["segment"][~unseen], clean["segment"][~unseen])


def test_the_contract_quarantines_broken_rows_only_and_the_broken_batches_hurt_a_model(
    broken: History,
) -> None:
    result = validate_frame(broken.frame, broken.contract)
    bad = broken_feed_batches(broken.n_batches)
    broken_rows = pd.concat([broken.batch(b) for b in bad])
    faulty = broken_rows["x2"].isna() | (broken_rows["segment"] == UNSEEN_SEGMENT)
    assert result.n_quarantined == int(faulty.sum()) > 0
    assert set(result.valid["row_id"]) >= set(broken.frame["row_id"]) - set(broken_rows["row_id"])
    model = fit_classifier(broken, broken.initial)
    aucs = []
    for b in range(broken.n_batches):
        rows = broken.batch(b).assign(x2=lambda f: f["x2"].fillna(0.0))  # the mean: 0
        aucs.append(
            roc_auc_score(rows["label"], model.predict_proba(design(rows, broken.contract))[:, 1])
        )
    clean = [auc for b, auc in enumerate(aucs) if b not in bad]
    assert max(aucs[b] for b in bad) < min(clean) - 0.05, aucs


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize(("fmt", "with_timestamp"), [("csv", False), ("parquet", True)])
def test_a_written_history_reads_back_through_its_contract(
    name: str, fmt: Literal["csv", "parquet"], with_timestamp: bool, tmp_path: Path
) -> None:
    history = BUILDERS[name](**SMALL, seed=1)
    data_path, contract_path = write_history(
        history, tmp_path / "out", fmt=fmt, with_timestamp=with_timestamp
    )
    assert data_path == tmp_path / "out" / f"{name}.{fmt}" and data_path.is_file()
    contract = load_contract(contract_path)
    expected = history.frame if with_timestamp else history.frame.drop(columns="timestamp")
    assert [c.name for c in contract.columns] == list(expected.columns)
    assert (contract.timestamp_column is not None) == with_timestamp
    if with_timestamp:
        assert contract.fingerprint == history.contract.fingerprint
    loaded = load_dataset(str(data_path), contract)
    assert loaded.dropped_columns == ()
    read = validate_frame(loaded.frame, contract)
    assert read.n_quarantined == 0
    pd.testing.assert_frame_equal(read.valid, validate_frame(expected, contract).valid)


def test_write_history_refuses_an_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fmt"):
        write_history(recurring_binary(**SMALL), tmp_path, fmt="json")  # type: ignore[arg-type]
