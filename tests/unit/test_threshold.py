"""Decision-threshold objectives: resolving them, choosing a stable cut, and recording it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from mlops.contract.spec import parse_threshold_objective
from mlops.monitoring.performance import performance_by_version
from mlops.training.evaluate import (
    HIGHER_IS_BETTER,
    best_threshold,
    choose_threshold,
    compute_metrics,
    decision_metric,
    resolve_objective,
)
from mlops.training.train import split_by_time, train_model
from tests.support.synthetic import FAST, make_contract, make_frame

ALLOWED = r"allowed are auto, f1, accuracy, balanced_accuracy or fixed:<p> with 0 < p < 1"


def calibrated(n: int, *, seed: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Draw labels from their own probabilities sigmoid(z), z ~ N(shift, 2): calibrated, noisy."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (1.0 + np.exp(-rng.normal(shift, 2.0, n)))
    return (rng.random(n) < p).astype(np.int64), p


def accuracy(y: np.ndarray, p: np.ndarray, cut: float) -> float:
    return float(((p >= cut) == y).mean())


def argmax_accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """The plain rule: the cut (among the scores) with the highest validation accuracy."""
    cuts = np.unique(p)
    return float(cuts[np.argmax([accuracy(y, p, c) for c in cuts])])


def test_auto_on_balanced_data_keeps_one_half_where_the_f1_argmax_cuts_far_lower() -> None:
    y, p = calibrated(600, seed=0)
    fresh_y, fresh_p = calibrated(20_000, seed=100)

    cut = choose_threshold(y, p, "auto", train_positive_rate=float(y.mean()))

    assert 0.4 < y.mean() < 0.6 and resolve_objective("auto", float(y.mean())) == "accuracy"
    best = max(accuracy(y, p, c) for c in np.unique(p))
    assert accuracy(y, p, cut) >= best - math.sqrt(best * (1 - best) / len(y))  # near-optimal
    assert abs(cut - 0.5) <= 0.05
    assert accuracy(fresh_y, fresh_p, cut) >= accuracy(fresh_y, fresh_p, 0.5) - 0.01
    old = best_threshold(y, p)  # the F1 argmax: about 0.32 here
    assert old < cut - 0.15
    assert accuracy(fresh_y, fresh_p, old) < accuracy(fresh_y, fresh_p, cut) - 0.015


def test_auto_on_rare_positives_tunes_for_f1_and_beats_one_half() -> None:
    y, p = calibrated(3000, seed=1, shift=-4.5)
    fresh_y, fresh_p = calibrated(50_000, seed=101, shift=-4.5)
    rate = float(y.mean())

    cut = choose_threshold(y, p, "auto", train_positive_rate=rate)

    assert 0.03 < rate < 0.07 and resolve_objective("auto", rate) == "f1"
    tuned = skm.f1_score(fresh_y, fresh_p >= cut)
    assert cut < 0.4 and tuned > skm.f1_score(fresh_y, fresh_p >= 0.5) + 0.05


def test_cuts_over_resamples_spread_far_less_than_the_plain_argmax() -> None:
    samples = [calibrated(600, seed=seed) for seed in range(200, 220)]

    chosen = [choose_threshold(y, p, "auto", train_positive_rate=0.5) for y, p in samples]
    argmax = [argmax_accuracy(y, p) for y, p in samples]
    f1_argmax = [best_threshold(y, p) for y, p in samples]

    assert np.std(chosen) <= 0.5 * np.std(argmax)
    assert np.std(chosen) <= 0.5 * np.std(f1_argmax)


def test_a_gain_larger_than_the_noise_moves_the_cut_away_from_the_anchor() -> None:
    p = np.linspace(0.0, 1.0, 401)
    y = (p > 0.8).astype(np.int64)  # 0.5 misclassifies 30% of rows; 0.8 none

    cut = choose_threshold(y, p, "accuracy", train_positive_rate=0.2)

    assert 0.8 < cut <= 0.8025 and accuracy(y, p, cut) == 1.0


def test_balanced_accuracy_is_anchored_at_the_training_positive_rate() -> None:
    y, p = calibrated(3000, seed=2, shift=-4.5)
    rate = float(y.mean())

    cut = choose_threshold(y, p, "balanced_accuracy", train_positive_rate=rate)
    chosen = compute_metrics("binary", pd.Series(y), np.column_stack([1 - p, p]), (0, 1), cut)
    at_half = compute_metrics("binary", pd.Series(y), np.column_stack([1 - p, p]), (0, 1), 0.5)

    assert abs(cut - rate) < 0.05
    assert chosen["balanced_accuracy"] > at_half["balanced_accuracy"] + 0.1


def test_f1_picks_the_middle_of_its_near_optimal_range() -> None:
    y, p = calibrated(3000, seed=3, shift=-4.5)

    cut = choose_threshold(y, p, "f1", train_positive_rate=0.05)

    cuts = np.unique(p)
    predicted = p[None, :] >= cuts[:, None]  # one row per cut
    tp = (predicted & (y == 1)).sum(axis=1)
    f1 = 2 * tp / (predicted.sum(axis=1) + y.sum())
    near = cuts[f1 >= f1.max() - math.sqrt(f1.max() * (1 - f1.max()) / len(y))]
    assert abs(cut - (near.min() + near.max()) / 2) < 0.01


def test_a_fixed_objective_returns_its_cut_whatever_the_data() -> None:
    y, p = calibrated(300, seed=4)

    assert choose_threshold(y, p, "fixed:0.3", train_positive_rate=0.5) == 0.3
    assert resolve_objective("Fixed:0.30", 0.01) == "fixed:0.3"


@pytest.mark.parametrize("objective", ["accuracy", "f1", "balanced_accuracy"])
@pytest.mark.parametrize("y", [np.zeros(4, dtype=np.int64), np.ones(4, dtype=np.int64)])
def test_validation_rows_of_one_class_leave_the_anchor(objective: str, y: np.ndarray) -> None:
    cut = choose_threshold(y, np.array([0.1, 0.4, 0.6, 0.9]), objective, train_positive_rate=0.3)

    assert cut == (0.3 if objective == "balanced_accuracy" else 0.5)


@pytest.mark.parametrize("objective", ["fixed:1.5", "fixed:0", "fixed:x", "foo", "", None])
def test_an_unknown_objective_is_rejected_naming_the_allowed_ones(objective: str | None) -> None:
    with pytest.raises(ValueError, match=ALLOWED):
        parse_threshold_objective(objective)
    with pytest.raises(ValueError, match=ALLOWED):
        choose_threshold(
            np.array([0, 1]), np.array([0.2, 0.8]), str(objective), train_positive_rate=0.5
        )


@pytest.mark.parametrize(
    ("objective", "metric"),
    [
        ("f1", "f1"),
        ("accuracy", "accuracy"),
        ("balanced_accuracy", "balanced_accuracy"),
        ("fixed:0.3", "accuracy"),
        (None, "accuracy"),
    ],
)
def test_decision_metric_names_the_thresholded_metric_of_an_objective(
    objective: str | None, metric: str
) -> None:
    assert decision_metric(objective) == metric


def test_decision_metric_of_an_unresolved_auto_is_an_error() -> None:
    with pytest.raises(ValueError, match="resolve_objective"):
        decision_metric("auto")


def test_binary_metrics_include_balanced_accuracy_as_sklearn_computes_it() -> None:
    y, p = calibrated(500, seed=5, shift=-2.0)

    found = compute_metrics("binary", pd.Series(y), np.column_stack([1 - p, p]), (0, 1), 0.3)

    assert found["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, p >= 0.3))
    assert HIGHER_IS_BETTER["balanced_accuracy"] is True


def test_live_performance_rows_carry_balanced_accuracy() -> None:
    contract = make_contract("binary")
    joined = pd.DataFrame({
        "model_version": ["v1"] * 4,
        "label": [0, 1, 1, 0],
        "probability_0": [0.9, 0.2, 0.6, 0.7],
        "probability_1": [0.1, 0.8, 0.4, 0.3],
    })  # fmt: skip
    manifest = {"task": "binary", "classes": [0, 1], "decision_threshold": 0.5, "metrics": {}}

    rows = performance_by_version(joined, contract, {"v1": manifest})

    assert rows[0]["live_balanced_accuracy"] == pytest.approx(0.75)


def test_training_follows_the_contract_objective_unless_the_parameters_override_it() -> None:
    splits = split_by_time(make_frame("binary", 300, seed=2))
    contract = make_contract("binary", threshold_objective="fixed:0.3")
    quick = dataclasses.replace(FAST, max_epochs=1)

    from_contract = train_model(splits, contract, quick)
    overridden = train_model(
        splits, contract, dataclasses.replace(quick, threshold_objective="fixed:0.7")
    )

    assert (from_contract.threshold_objective, from_contract.decision_threshold) == (
        "fixed:0.3",
        0.3,
    )
    assert (overridden.threshold_objective, overridden.decision_threshold) == ("fixed:0.7", 0.7)
