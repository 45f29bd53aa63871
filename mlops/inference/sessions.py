"""Open onnxruntime sessions on the device that really works (no torch import: serving uses it)."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

# Full fp32 matmuls: TF32 would trade the export's parity with the trained model for speed.
CUDA_OPTIONS = {"use_tf32": "0"}


def create_session(
    model: str | Path | bytes, *, prefer_gpu: bool = True, intra_op_threads: int = 0
) -> tuple[Any, str]:
    """Open an inference session; return it with the device it really got ("cuda" or "cpu").

    onnxruntime-gpu lists CUDA as available even without a GPU and then falls back to CPU, so the
    device is read from the created session, not from the list of available providers.
    `intra_op_threads` > 0 caps the threads of one call (0 keeps onnxruntime's default).
    """
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = intra_op_threads
    available = ort.get_available_providers()
    if prefer_gpu and "CUDAExecutionProvider" in available and nvidia_driver_present():
        _preload_cuda_libraries(ort)
        session = ort.InferenceSession(
            source,
            options,
            providers=[("CUDAExecutionProvider", CUDA_OPTIONS), "CPUExecutionProvider"],
        )
        if "CUDAExecutionProvider" in session.get_providers():
            return session, "cuda"
        log.info("CUDA provider listed but not usable here; using CPU")
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session, "cpu"


def _preload_cuda_libraries(ort: Any) -> None:
    """Load CUDA and cuDNN from the environment's nvidia-* wheels (serving imports no torch).

    onnxruntime-gpu does not bundle CUDA; without torch imported first it finds the libraries only
    through `preload_dlls`, which prints (rather than raises) what it could not load.
    """
    global _PRELOADED
    if _PRELOADED or not hasattr(ort, "preload_dlls"):
        return
    _PRELOADED = True
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as exc:  # a missing library must only cost the GPU, never the session
        log.info("could not preload CUDA libraries: %s", exc)
    if printed.getvalue().strip():
        log.info("preloading CUDA libraries: %s", printed.getvalue().strip())


_PRELOADED = False


def nvidia_driver_present() -> bool:
    """Return whether an NVIDIA kernel driver is loaded (without one CUDA cannot work)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def run_session(session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Run the session's single output."""
    return session.run(None, feed)[0]
