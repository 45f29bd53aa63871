"""Model outputs as the columns serving logs, batch scoring writes and reference profiles hold."""

from __future__ import annotations

import numpy as np

from mlops.inference.outputs import output_frame


def test_binary_outputs_apply_the_decision_threshold_not_argmax() -> None:
    output = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]], dtype=np.float32)
    frame = output_frame(output, {"task": "binary", "classes": [0, 1], "decision_threshold": 0.25})
    assert list(frame.columns) == ["prediction", "probability_0", "probability_1"]
    assert frame["prediction"].tolist() == [0, 1, 1]
    assert frame["probability_1"].tolist() == output[:, 1].tolist()


def test_multiclass_outputs_name_one_column_per_class_and_pick_the_most_likely() -> None:
    output = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    frame = output_frame(output, {"task": "multiclass", "classes": ["a", "b", "c"]})
    assert list(frame.columns) == ["prediction", "probability_a", "probability_b", "probability_c"]
    assert frame["prediction"].tolist() == ["b", "a"]


def test_regression_outputs_are_a_single_prediction_column() -> None:
    frame = output_frame(np.array([1.5, -2.0], dtype=np.float32), {"task": "regression"})
    assert list(frame.columns) == ["prediction"]
    assert frame["prediction"].tolist() == [1.5, -2.0]
