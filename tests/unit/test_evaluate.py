"""Tests of holdout metrics, per-slice metrics and metric deltas against hand-made examples."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlops.training.evaluate import (
    HIGHER_IS_BETTER,
    PRIMARY_METRIC,
    best_threshold,
    class_indices,
    compute_metrics,
    metric_delta,
    slice_metrics,
)
from tests.support.synthetic import make_contract

Y_BINARY = pd.Series([0, 0, 1, 1, 0, 1, 0, 1])
P_POSITIVE = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.7])


def _binary_output(p: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - p, p])


def test_binary_metrics_match_sklearn() -> None:
    found = compute_metrics("binary", Y_BINARY, _binary_output(P_POSITIVE), (0, 1), threshold=0.5)

    pred = (P_POSITIVE >= 0.5).astype(int)
    assert found["roc_auc"] == pytest.approx(skm.roc_auc_score(Y_BINARY, P_POSITIVE))
    assert found["pr_auc"] == pytest.approx(skm.average_precision_score(Y_BINARY, P_POSITIVE))
    assert found["accuracy"] == pytest.approx(skm.accuracy_score(Y_BINARY, pred))
    assert found["f1"] == pytest.approx(skm.f1_score(Y_BINARY, pred))
    assert found["log_loss"] == pytest.approx(skm.log_loss(Y_BINARY, P_POSITIVE))
    assert found["accuracy"] == 0.75


def test_binary_accuracy_and_f1_use_the_given_threshold() -> None:
    strict = compute_metrics("binary", Y_BINARY, _binary_output(P_POSITIVE), (0, 1), threshold=0.75)

    assert strict["accuracy"] == pytest.approx(6 / 8)
    assert strict["f1"] == pytest.approx(skm.f1_score(Y_BINARY, (P_POSITIVE >= 0.75).astype(int)))


def test_binary_metrics_with_one_class_present_give_nan_auc_instead_of_failing() -> None:
    found = compute_metrics(
        "binary", pd.Series([1, 1]), _binary_output(np.array([0.7, 0.9])), (0, 1)
    )

    assert math.isnan(found["roc_auc"])
    assert found["accuracy"] == 1.0


def test_multiclass_metrics_match_sklearn_with_string_labels() -> None:
    classes = ("cat", "dog", "fox")
    y = pd.Series(["cat", "dog", "fox", "dog", "cat", "fox"])
    probs = np.array([
        [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3],
        [0.3, 0.4, 0.3], [0.5, 0.25, 0.25], [0.1, 0.1, 0.8],
    ])  # fmt: skip

    found = compute_metrics("multiclass", y, probs, classes)

    codes = [0, 1, 2, 1, 0, 2]
    pred = probs.argmax(axis=1)
    assert found["accuracy"] == pytest.approx(5 / 6)
    assert found["macro_f1"] == pytest.approx(skm.f1_score(codes, pred, average="macro"))
    assert found["log_loss"] == pytest.approx(skm.log_loss(codes, probs, labels=[0, 1, 2]))


def test_multiclass_macro_f1_counts_a_class_absent_from_the_rows_as_zero() -> None:
    y = pd.Series(["cat", "dog"])
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])

    found = compute_metrics("multiclass", y, probs, ("cat", "dog", "fox"))

    assert found["accuracy"] == 1.0
    assert found["macro_f1"] == pytest.approx(2 / 3)


def test_regression_metrics_match_sklearn() -> None:
    y = pd.Series([3.0, -0.5, 2.0, 7.0])
    pred = np.array([2.5, 0.0, 2.0, 8.0])

    found = compute_metrics("regression", y, pred)

    assert found["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, pred)))
    assert found["mae"] == pytest.approx(0.5)
    assert found["r2"] == pytest.approx(skm.r2_score(y, pred))


def test_regression_r2_of_a_single_row_is_nan() -> None:
    assert math.isnan(compute_metrics("regression", pd.Series([1.0]), np.array([2.0]))["r2"])


def test_class_indices_accept_numpy_scalars_and_plain_values() -> None:
    y = pd.Series(np.array([1, 0, 1], dtype=np.int64))

    assert class_indices(y, (0, 1)).tolist() == [1, 0, 1]


def test_best_threshold_maximises_f1_on_a_separable_example() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.9])

    assert best_threshold(y, p) == pytest.approx(0.6)


@pytest.mark.parametrize("y", [np.zeros(4), np.ones(4)])
def test_best_threshold_is_one_half_when_only_one_class_is_present(y: np.ndarray) -> None:
    assert best_threshold(y, np.array([0.1, 0.4, 0.6, 0.9])) == 0.5


def test_slice_metrics_report_each_value_with_enough_rows_and_skip_small_slices() -> None:
    contract = make_contract("regression")
    frame = pd.DataFrame({
        "city": ["paris"] * 40 + ["lyon"] * 35 + ["oslo"] * 5,
        "label": np.arange(80, dtype=float),
    })  # fmt: skip
    output = frame["label"].to_numpy() + np.where(frame["city"] == "paris", 1.0, 2.0)

    rows = slice_metrics(frame, contract, output, min_rows=30)

    assert [(r["slice"], r["value"], r["rows"]) for r in rows] == [
        ("city", "lyon", 35), ("city", "paris", 40),
    ]  # fmt: skip
    assert rows[0]["mae"] == pytest.approx(2.0)
    assert rows[1]["mae"] == pytest.approx(1.0)


def test_slice_metrics_group_missing_values_under_a_null_label() -> None:
    contract = make_contract("binary")
    frame = pd.DataFrame({"city": [None] * 4 + ["paris"] * 4, "label": [0, 1] * 4})
    output = _binary_output(np.linspace(0.1, 0.9, 8))

    rows = slice_metrics(frame, contract, output, (0, 1), min_rows=4)

    assert [r["value"] for r in rows] == ["<null>", "paris"]
    assert {"roc_auc", "f1", "accuracy"} <= rows[0].keys()


@pytest.mark.parametrize(
    ("metric", "challenger", "champion", "expected"),
    [
        ("roc_auc", 0.82, 0.80, 0.02),
        ("roc_auc", 0.78, 0.80, -0.02),
        ("rmse", 9.0, 10.0, 1.0),
        ("rmse", 11.0, 10.0, -1.0),
        ("log_loss", 0.30, 0.25, -0.05),
        ("mae", 1.5, 2.0, 0.5),
    ],
)
def test_metric_delta_is_positive_when_the_challenger_is_better(
    metric: str, challenger: float, champion: float, expected: float
) -> None:
    assert metric_delta(metric, challenger, champion) == pytest.approx(expected)


def test_every_primary_metric_has_a_known_direction() -> None:
    assert set(PRIMARY_METRIC.values()) <= set(HIGHER_IS_BETTER)
