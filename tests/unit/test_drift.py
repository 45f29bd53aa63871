"""Tests of per-column drift between two whylogs profiles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.contract.loader import parse_contract
from mlops.contract.spec import Contract
from mlops.monitoring import drift
from mlops.monitoring.drift import DriftThresholds, chi_square, feature_drift, hellinger
from mlops.monitoring.profile import profile_frame

CHANNELS = ("online", "pos", "contactless")


def make_contract(task: str = "binary") -> Contract:
    target = {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]}
    if task == "regression":
        target = {"role": "target", "dtype": "float", "task": "regression"}
    columns = {
        "txn_id": {"role": "id", "dtype": "string"},
        "amount": {"role": "feature", "dtype": "float", "checks": {"min": 0}},
        "channel": {"role": "feature", "dtype": "string", "checks": {"allowed": list(CHANNELS)}},
        "age": {"role": "feature", "dtype": "int", "checks": {"min": 18, "max": 100}},
        "card_present": {"role": "feature", "dtype": "bool"},
        "label": target,
    }
    return parse_contract({"name": "drift-test", "columns": columns})


def make_frame(n: int, *, seed: int = 0, scale: float = 1.0, online: float = 0.5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rest = (1 - online) / 2
    return pd.DataFrame(
        {
            "txn_id": [f"t{seed}-{i}" for i in range(n)],
            "amount": rng.lognormal(3.0, 0.8, n) * scale,
            "channel": rng.choice(CHANNELS, n, p=[online, rest, rest]),
            "age": rng.integers(18, 90, n),
            "card_present": rng.random(n) < 0.6,
        }
    )


@pytest.fixture(scope="module")
def contract() -> Contract:
    return make_contract()


@pytest.fixture(scope="module")
def reference():
    return profile_frame(make_frame(20_000, seed=1))


def _row(report: drift.DriftReport, column: str) -> drift.DriftRow:
    return next(row for row in report.rows if row.feature == column)


def test_same_distribution_does_not_drift(contract, reference):
    report = feature_drift(reference, profile_frame(make_frame(3000, seed=2)), contract)

    assert report.drifted_features == ()
    assert report.share_drifted == 0.0
    assert report.n_features == 4
    assert {row.test for row in report.rows} == {"ks", "chi-square"}
    assert _row(report, "amount").test == "ks"
    assert _row(report, "card_present").test == "chi-square"


def test_shifted_columns_drift_with_their_effect_sizes(contract, reference):
    window = profile_frame(make_frame(3000, seed=3, scale=1.5, online=0.7))

    report = feature_drift(reference, window, contract)

    assert set(report.drifted_features) == {"amount", "channel"}
    assert report.share_drifted == pytest.approx(0.5)
    amount, channel = _row(report, "amount"), _row(report, "channel")
    assert amount.effect_size == amount.statistic > DriftThresholds().ks_statistic
    assert amount.p_value < 1e-6 and amount.hellinger > 0.1
    assert channel.effect_size == channel.hellinger > DriftThresholds().hellinger
    assert (amount.category, channel.category) == ("drift", "drift")


def test_significant_but_tiny_difference_is_only_possible_drift(contract):
    # 200k rows a side make a 2% scale change highly significant, yet too small to act on
    # (KLL sketches are randomised: 1% sat too close to alpha to be a stable test).
    big = make_frame(200_000, seed=4)[["amount"]]
    nudged = make_frame(200_000, seed=5, scale=1.02)[["amount"]]

    report = feature_drift(profile_frame(big), profile_frame(nudged), contract, columns=["amount"])

    amount = _row(report, "amount")
    assert amount.p_value < DriftThresholds().alpha
    assert amount.effect_size < DriftThresholds().ks_statistic
    assert (amount.drifted, amount.category) == (False, "possible")


def test_thresholds_are_configurable(contract, reference):
    window = profile_frame(make_frame(3000, seed=3, scale=1.5, online=0.7))
    lenient = DriftThresholds(alpha=0.05, ks_statistic=0.9, hellinger=0.9)

    report = feature_drift(reference, window, contract, thresholds=lenient)

    assert report.drifted_features == ()
    assert _row(report, "amount").category == "possible"
    assert report.to_dict()["thresholds"]["ks_statistic"] == 0.9


def test_new_category_is_named_in_the_note(contract, reference):
    frame = make_frame(3000, seed=6)
    frame.loc[:150, "channel"] = "mobile_wallet"

    report = feature_drift(reference, profile_frame(frame), contract)

    channel = _row(report, "channel")
    assert channel.note == "new categories: mobile_wallet"
    assert channel.drifted
    assert channel.statistic is not None and np.isfinite(channel.statistic)


def test_empty_window_explains_every_column_and_stays_json_safe(contract, reference):
    empty = profile_frame(make_frame(3000).iloc[:0])

    report = feature_drift(reference, empty, contract)

    assert {row.note for row in report.rows} == {"no rows in window"}
    assert all(row.statistic is None and not row.drifted for row in report.rows)
    assert report.share_drifted == 0.0
    json.dumps(report.to_dict(), allow_nan=False)


def test_all_null_or_missing_columns_are_explained(contract, reference):
    frame = make_frame(500, seed=7).drop(columns=["age"])
    frame["amount"] = np.nan

    report = feature_drift(reference, profile_frame(frame), contract)

    assert _row(report, "amount").note == "only nulls in window"
    assert _row(report, "age").note == "column not in the window profile"
    assert not report.drifted_features


def test_infinite_and_nan_scores_become_none_with_a_note(contract, reference, monkeypatch):
    monkeypatch.setattr(drift, "ks_test", lambda *args: (float("inf"), float("nan")))

    report = feature_drift(reference, profile_frame(make_frame(500)), contract)

    amount = _row(report, "amount")
    assert (amount.statistic, amount.p_value, amount.effect_size) == (None, None, None)
    assert amount.note == "statistic was inf; p_value was nan; effect_size was inf"
    assert amount.category == "none"
    json.dumps(report.to_rows(), allow_nan=False)


def test_model_outputs_are_tested_but_do_not_count_in_the_share(contract):
    ref_frame = make_frame(5000, seed=8)
    ref_frame["probability_1"] = np.random.default_rng(8).beta(1, 20, 5000)
    ref_frame["prediction"] = (ref_frame["probability_1"] > 0.2).astype(int)
    window = make_frame(3000, seed=9)
    window["probability_1"] = np.random.default_rng(9).beta(3, 10, 3000)
    window["prediction"] = (window["probability_1"] > 0.2).astype(int)

    report = feature_drift(profile_frame(ref_frame), profile_frame(window), contract)

    outputs = {row.feature: row for row in report.rows if row.role == "output"}
    assert set(outputs) == {"probability_1", "prediction"}
    assert (outputs["probability_1"].kind, outputs["prediction"].kind) == ("numeric", "categorical")
    assert report.prediction_drifted
    assert report.share_drifted == 0.0
    assert "txn_id" not in {row.feature for row in report.rows}


def test_regression_predictions_are_numeric():
    frame = make_frame(2000, seed=10).assign(prediction=np.linspace(0, 1, 2000))
    view = profile_frame(frame)

    report = feature_drift(view, view, make_contract("regression"))

    assert _row(report, "prediction").kind == "numeric"


def test_unknown_columns_are_refused(contract, reference):
    with pytest.raises(ValueError, match="'price' not a feature of contract 'drift-test'"):
        feature_drift(reference, reference, contract, columns=["price"])


def test_to_rows_has_one_table_row_per_column(contract, reference):
    report = feature_drift(reference, reference, contract, columns=["amount", "channel"])

    rows = report.to_rows()
    assert [row["feature"] for row in rows] == ["amount", "channel"]
    assert set(rows[0]) >= {"feature", "kind", "test", "statistic", "p_value", "effect_size"}
    assert set(rows[0]) >= {"drifted", "category", "note"}


def test_chi_square_and_hellinger_on_known_counts():
    assert chi_square([50, 50], [50, 50]) == (0.0, 1.0)
    assert chi_square([10, 0], [10, 0]) == (0.0, 1.0)  # one category only: nothing to test
    statistic, p_value = chi_square([900, 100], [100, 900])
    assert statistic > 100 and p_value < 1e-6
    assert hellinger([1, 1], [1, 1]) == pytest.approx(0.0)
    assert hellinger([1, 0], [0, 1]) == pytest.approx(1.0)
    assert hellinger([0.5, 0.5], [50, 50]) == pytest.approx(0.0)  # counts or shares
