"""Tests of the ONNX export and its verification, for binary, multiclass and regression models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from onnx import TensorProto, numpy_helper

import mlops.inference.sessions
from mlops.contract.spec import Contract
from mlops.inference.feed import onnx_feed
from mlops.release.export import export_onnx, output_name, read_metadata
from mlops.release.verify import ExportVerificationError, create_session, run_session, verify_export
from mlops.training.train import TrainedModel, predict_torch
from tests.support.synthetic import CLASSES, TASKS, make_frame, trained, unseen_rows

Exported = tuple[Contract, TrainedModel, Path]


@pytest.fixture(scope="module", params=TASKS)
def exported(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Export the session's small trained model of each task into its own folder."""
    contract, model = trained(request.param)
    path = export_onnx(model, contract, tmp_path_factory.mktemp(request.param) / "model.onnx")
    return contract, model, path


@pytest.fixture(scope="module")
def holdout_frames() -> dict[str, pd.DataFrame]:
    """Give 1200 fresh rows per task, drawn apart from the training rows."""
    return {task: make_frame(task, 1200, seed=11, start="2026-03-01") for task in TASKS}


def _cpu_session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_export_writes_one_self_contained_file_without_external_data(exported: Exported) -> None:
    _, _, path = exported

    proto = onnx.load(str(path), load_external_data=False)

    assert [p.name for p in path.parent.iterdir()] == ["model.onnx"]
    assert proto.graph.initializer
    assert all(
        t.data_location != TensorProto.EXTERNAL and not t.external_data
        for t in proto.graph.initializer
    )
    onnx.checker.check_model(proto, full_check=True)


def test_graph_inputs_are_the_raw_feature_columns_in_contract_order(exported: Exported) -> None:
    contract, _, path = exported

    inputs = onnx.load(str(path)).graph.input

    assert tuple(i.name for i in inputs) == contract.feature_names
    for spec, graph_input in zip(contract.features, inputs, strict=True):
        tensor = graph_input.type.tensor_type
        expected = TensorProto.FLOAT if spec.is_numeric else TensorProto.STRING
        assert tensor.elem_type == expected, spec.name
        assert len(tensor.shape.dim) == 1, spec.name
        assert tensor.shape.dim[0].dim_param, f"{spec.name} has a fixed batch size"


@pytest.mark.parametrize("batch", [1, 7, 300])
def test_onnx_model_runs_any_batch_size_and_returns_the_task_output(
    exported: Exported, holdout_frames: dict[str, pd.DataFrame], batch: int
) -> None:
    contract, _, path = exported
    session = _cpu_session(path)

    output = session.run(None, onnx_feed(holdout_frames[contract.task].head(batch), contract))[0]

    assert [o.name for o in session.get_outputs()] == [output_name(contract.task)]
    if contract.task == "regression":
        assert output.shape == (batch,)
    else:
        assert output.shape == (batch, 2 if contract.task == "binary" else len(CLASSES))
        np.testing.assert_allclose(output.sum(axis=1), 1.0, atol=1e-5)
        assert ((output >= 0) & (output <= 1)).all()


def test_verify_export_passes_with_tight_parity_on_over_1000_holdout_rows(
    exported: Exported, holdout_frames: dict[str, pd.DataFrame]
) -> None:
    contract, model, path = exported

    report = verify_export(path, model, contract, holdout_frames[contract.task])

    assert report.parity_rows >= 1000
    assert report.max_abs_diff <= 1e-4 and report.oov_max_abs_diff <= 1e-4
    assert report.tolerance == 1e-4
    assert report.checker == "onnx.checker full_check passed"
    assert report.p50_ms_batch1 > 0 and report.p50_ms_batch256 > 0
    assert report.to_dict()["parity_rows"] == report.parity_rows


def test_unseen_categories_and_missing_numbers_match_pytorch_through_the_oov_slot(
    exported: Exported, holdout_frames: dict[str, pd.DataFrame]
) -> None:
    contract, model, path = exported
    rows = holdout_frames[contract.task].head(50)
    unseen = unseen_rows(rows)
    missing = unseen.assign(city=None, channel=None)
    session = _cpu_session(path)

    from_unseen = run_session(session, onnx_feed(unseen, contract))
    from_missing = run_session(session, onnx_feed(missing, contract))

    np.testing.assert_allclose(from_unseen, predict_torch(model, unseen), atol=1e-5)
    np.testing.assert_allclose(from_unseen, from_missing, atol=1e-6)
    assert not np.allclose(from_unseen, run_session(session, onnx_feed(rows, contract)))


def test_metadata_records_the_contract_fingerprint_task_and_classes(exported: Exported) -> None:
    contract, model, path = exported

    meta = read_metadata(path)

    assert meta == read_metadata(path.read_bytes())
    assert meta["contract_name"] == contract.name
    assert meta["contract_fingerprint"] == contract.fingerprint
    assert meta["task"] == contract.task
    assert json.loads(meta["classes"]) == list(model.preprocessor.target.classes or [])
    assert json.loads(meta["features"]) == list(contract.feature_names)
    assert float(meta["decision_threshold"]) == model.decision_threshold


def test_verify_export_rejects_an_onnx_file_whose_weights_were_tampered_with(
    exported: Exported, holdout_frames: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    contract, model, path = exported
    proto = onnx.load(str(path))
    weights = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weights) + np.float32(0.25)
    weights.CopyFrom(numpy_helper.from_array(values, weights.name))
    tampered = tmp_path / "tampered.onnx"
    onnx.save_model(proto, str(tampered))

    with pytest.raises(ExportVerificationError, match="ONNX and PyTorch disagree"):
        verify_export(tampered, model, contract, holdout_frames[contract.task])


def test_verify_export_refuses_a_holdout_with_fewer_rows_than_min_rows(
    exported: Exported, holdout_frames: dict[str, pd.DataFrame]
) -> None:
    contract, model, path = exported

    with pytest.raises(ExportVerificationError, match=r"at least 1000 rows, the window has 999"):
        verify_export(path, model, contract, holdout_frames[contract.task].head(999))


def test_onnx_feed_gives_float32_numbers_and_strings_with_empty_for_missing() -> None:
    contract, _ = trained("binary")
    frame = make_frame("binary", 3, seed=0)
    frame.loc[0, "channel"] = None
    frame.loc[1, "amount"] = np.nan

    feed = onnx_feed(frame, contract)

    assert set(feed) == set(contract.feature_names)
    assert feed["amount"].dtype == np.float32 and np.isnan(feed["amount"][1])
    assert feed["age"].dtype == np.float32
    assert feed["channel"].dtype == object and feed["channel"][0] == ""
    assert set(feed["is_member"]) <= {"true", "false"}
    assert feed["tier"].tolist() == [str(v) for v in frame["tier"]]


@pytest.mark.skipif(
    mlops.inference.sessions.nvidia_driver_present(), reason="an NVIDIA driver is loaded"
)
def test_create_session_reports_cpu_without_an_nvidia_driver(exported: Exported) -> None:
    session, device = create_session(exported[2])

    assert device == "cpu"
    assert session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.skipif(
    mlops.inference.sessions.nvidia_driver_present(), reason="an NVIDIA driver is loaded"
)
def test_create_session_reports_cpu_when_the_listed_cuda_provider_cannot_load(
    exported: Exported, monkeypatch: pytest.MonkeyPatch
) -> None:
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build does not list CUDA")
    path = exported[2]
    monkeypatch.setattr(mlops.inference.sessions, "nvidia_driver_present", lambda: True)

    session, device = create_session(path.read_bytes())

    assert device == "cpu"
    assert "CUDAExecutionProvider" not in session.get_providers()
