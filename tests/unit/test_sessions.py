"""Opening onnxruntime sessions: the device really got, and CUDA library preloading."""

from __future__ import annotations

import logging

import onnx
import pytest
from onnx import TensorProto, helper

from mlops.inference import sessions


def relu_model() -> bytes:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


class FakeOrt:
    """Stands in for the onnxruntime module at the preload seam only."""

    def __init__(self, fail: bool) -> None:
        self.calls, self.fail = 0, fail

    def preload_dlls(self) -> None:
        self.calls += 1
        print("Failed to load libcublas.so.13: cannot open shared object file")
        if self.fail:
            raise RuntimeError("Invalid parameter of directory")


@pytest.mark.parametrize("fail", [False, True])
def test_preload_runs_once_and_turns_prints_and_errors_into_log_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], caplog, fail: bool
) -> None:
    monkeypatch.setattr(sessions, "_PRELOADED", False)
    fake = FakeOrt(fail)
    with caplog.at_level(logging.INFO, logger=sessions.__name__):
        sessions._preload_cuda_libraries(fake)
        sessions._preload_cuda_libraries(fake)

    assert fake.calls == 1
    assert capsys.readouterr().out == ""
    assert "libcublas.so.13" in caplog.text
    assert ("Invalid parameter" in caplog.text) is fail


def test_a_cpu_session_reports_cpu_and_never_preloads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "nvidia_driver_present", lambda: False)
    monkeypatch.setattr(sessions, "_PRELOADED", False)

    session, device = sessions.create_session(relu_model(), prefer_gpu=True)

    assert device == "cpu"
    assert session.get_providers() == ["CPUExecutionProvider"]
    assert sessions._PRELOADED is False


def test_cuda_sessions_ask_for_full_fp32_matmuls() -> None:
    # With TF32, CUDA outputs of the default network differed from CPU's by up to 1e-3 on an
    # H200 (bench/results/gpu.md), ten times the export check's tolerance.
    assert sessions.CUDA_OPTIONS == {"use_tf32": "0"}
