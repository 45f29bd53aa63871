"""Confidence-based performance estimation: calibrated probabilities predict the metric."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from mlops.monitoring.estimate import estimate_window, expected_accuracy, expected_roc_auc
from mlops.monitoring.profile import profile_frame

MANIFEST = {"task": "binary", "classes": [0, 1], "decision_threshold": 0.5}


def calibrated(n: int, a: float, b: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities from Beta(a, b) and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.beta(a, b, n)
    return p, (rng.random(n) < p).astype(int)


@pytest.mark.parametrize(("a", "b"), [(0.5, 0.5), (2.0, 2.0), (0.7, 2.5)])
def test_expected_metrics_match_the_labels_when_probabilities_are_calibrated(a, b):
    p, y = calibrated(40_000, a, b, seed=3)

    assert expected_roc_auc(p) == pytest.approx(roc_auc_score(y, p), abs=0.01)
    assert expected_accuracy(p) == pytest.approx(accuracy_score(y, p >= 0.5), abs=0.01)


def test_degenerate_probabilities_have_no_auc():
    assert np.isnan(expected_roc_auc(np.zeros(10)))
    assert np.isnan(expected_accuracy(np.array([])))


def _profile(p: np.ndarray):
    return profile_frame(pd.DataFrame({"prediction": (p >= 0.5).astype(int), "probability_1": p}))


def test_rows_moving_into_uncertain_regions_lower_the_estimate():
    confident, _ = calibrated(5000, 0.4, 0.4, seed=1)  # probabilities near 0 and 1
    unsure, y = calibrated(5000, 3.0, 3.0, seed=2)  # probabilities near 0.5
    reference = _profile(confident)

    same = estimate_window(reference, _profile(calibrated(2000, 0.4, 0.4, seed=4)[0]), MANIFEST,
                           "roc_auc")  # fmt: skip
    shifted = estimate_window(reference, _profile(unsure), MANIFEST, "roc_auc")

    assert same is not None and shifted is not None
    assert same.window == pytest.approx(same.reference, abs=0.01)
    assert shifted.reference - shifted.window > 0.15
    assert shifted.window == pytest.approx(roc_auc_score(y, unsure), abs=0.03)  # from a sketch
    assert shifted.rows == 5000


def test_only_binary_models_and_estimable_metrics_are_estimated():
    view = _profile(calibrated(500, 1.0, 1.0, seed=5)[0])

    assert estimate_window(view, view, {**MANIFEST, "task": "regression"}, "roc_auc") is None
    assert estimate_window(view, view, MANIFEST, "f1") is None
    no_probability = profile_frame(pd.DataFrame({"prediction": [0, 1, 1]}))
    assert estimate_window(view, no_probability, MANIFEST, "roc_auc") is None
