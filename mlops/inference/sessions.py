"""Open onnxruntime sessions on the device that really works (no torch import: serving uses it)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


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
        session = ort.InferenceSession(
            source, options, providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
        )
        if "CUDAExecutionProvider" in session.get_providers():
            return session, "cuda"
        log.info("CUDA provider listed but not usable here; using CPU")
    session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    return session, "cpu"


def nvidia_driver_present() -> bool:
    """Return whether an NVIDIA kernel driver is loaded (without one CUDA cannot work)."""
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidiactl").exists()


def run_session(session: Any, feed: dict[str, np.ndarray]) -> np.ndarray:
    """Run the session's single output."""
    return session.run(None, feed)[0]
