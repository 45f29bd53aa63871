"""Scoring raw rows as the gate does feeds a model exactly as serving and batch scoring do."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.inference.feed import contract_inputs, frame_feed, onnx_feed
from mlops.inference.model import load_model_bytes
from mlops.inference.scoring import IncompatibleModelError, predict_onnx, score_onnx
from tests.support.synthetic import TASKS, make_frame, unseen_rows
from tests.support.synthetic import exported as exported_model


@pytest.fixture(scope="module", params=TASKS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """An exported model of each task: its contract, ONNX bytes, manifest, and raw rows."""
    contract, onnx, manifest = exported_model(request.param, tmp_path_factory.mktemp(request.param))
    frame = make_frame(request.param, 60, seed=9)
    frame = pd.concat([frame, unseen_rows(frame.head(5))], ignore_index=True)
    return contract, onnx, manifest, frame


def test_the_manifest_lists_the_inputs_the_contract_makes(exported: Any) -> None:
    contract, _, manifest, _ = exported

    assert manifest["inputs"] == contract_inputs(contract)


def test_the_gate_and_serving_feed_and_predict_alike(exported: Any) -> None:
    contract, data, manifest, frame = exported
    loaded = load_model_bytes(data, manifest, "m", prefer_gpu=False, intra_op_threads=1)

    by_contract, by_manifest = onnx_feed(frame, contract), loaded.feed(frame)
    assert by_contract.keys() == by_manifest.keys()
    for name, values in by_contract.items():
        np.testing.assert_array_equal(values, by_manifest[name])
        assert values.dtype == by_manifest[name].dtype
    output = predict_onnx(data, frame, contract, prefer_gpu=False)
    np.testing.assert_array_equal(output, loaded.predict(frame))


def test_frame_feed_takes_only_the_inputs_it_is_given(exported: Any) -> None:
    contract, _, _, frame = exported
    numeric = [i for i in contract_inputs(contract) if i["type"] != "string"]

    assert set(frame_feed(frame, numeric)) == {i["name"] for i in numeric}


def test_a_model_needing_a_column_the_contract_lacks_is_incompatible(exported: Any) -> None:
    contract, data, _, frame = exported
    without_amount = replace(
        contract, columns=tuple(c for c in contract.columns if c.name != "amount")
    )

    with pytest.raises(IncompatibleModelError, match="amount"):
        predict_onnx(data, frame, without_amount, prefer_gpu=False)


def test_score_onnx_gives_the_metrics_of_the_task(exported: Any) -> None:
    contract, data, manifest, frame = exported

    metrics = score_onnx(data, manifest, frame, contract)

    primary = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "r2"}[contract.task]
    assert np.isfinite(metrics[primary])
