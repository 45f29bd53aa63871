"""What the service runs beside requests: the model keeper (hot reload) and the prediction log."""

from __future__ import annotations

import gc
import logging
import threading
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.inference.model import (
    LoadedModel,
    ModelLoadError,
    load_from_directory,
    load_from_registry,
)
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.profile import profile_frame
from mlops.registry.store import Registry
from mlops.settings import Settings

log = logging.getLogger("mlops.serving")


class ModelKeeper:
    """Hold the model being served and switch to a new version when the registry alias moves.

    A switch replaces one reference: requests already running keep the model they started
    with, new ones get the new model. A version that fails its checksum or load check is refused
    and the current one keeps serving.
    """

    def __init__(
        self, settings: Settings, metrics: Any, contract_fingerprint: str | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.contract_fingerprint = contract_fingerprint
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.refused: str | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.registry = Registry(settings.registry)

    def start(self) -> None:
        """Load the model now and, unless it is pinned, watch the registry in the background."""
        self.reload()
        if self.settings.serve_model_dir is None:
            self._thread = threading.Thread(target=self._watch, name="model-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop watching."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval_s):
            try:
                self.reload()
            except Exception as exc:  # the watcher must outlive any registry hiccup
                log.warning("registry check failed: %s", exc)

    def target_version(self) -> str | None:
        """Return the version the configured alias points at now (or the pinned version)."""
        ref = self.settings.serve_ref
        if ref.startswith("v") and ref[1:].isdigit():
            return ref
        return self.registry.aliases(self.settings.model_name).aliases.get(ref)

    def reload(self) -> dict[str, Any]:
        """Load the target version if it differs from the one served; report what happened."""
        with self._lock:
            if self.settings.serve_model_dir is not None:
                if self.current is None:
                    self._swap(lambda: load_from_directory(
                        Path(self.settings.serve_model_dir or ""), self.settings.model_name,
                        prefer_gpu=self.settings.prefer_gpu,
                        intra_op_threads=self.settings.onnx_threads))  # fmt: skip
                return self.status()
            target = self.target_version()
            served = self.current.version if self.current else None
            if target is None or target == served or target == self.refused:
                return {**self.status(), "changed": False}
            self._swap(lambda: load_from_registry(
                self.registry, self.settings.model_name, target,
                prefer_gpu=self.settings.prefer_gpu,
                intra_op_threads=self.settings.onnx_threads))  # fmt: skip
            return {**self.status(), "changed": self.current is not None
                    and self.current.version == target}  # fmt: skip

    def _swap(self, load: Any) -> None:
        try:
            model = self._check_contract(load())
        except ModelLoadError as exc:
            self.last_error = str(exc)
            self.refused = self.target_version() if self.settings.serve_model_dir is None else None
            self.metrics.reloads.labels(outcome="refused").inc()
            log.error("model refused, still serving %s: %s", self.served_version(), exc)
            return
        previous, self.current = self.current, model
        self.last_error, self.refused = None, None
        self.metrics.reloads.labels(outcome="loaded").inc()
        if previous is not None:
            self.metrics.model_info.labels(version=previous.version, device=previous.device).set(0)
        self.metrics.model_info.labels(version=model.version, device=model.device).set(1)
        log.info("serving %s %s on %s", model.model_name, model.version, model.device)

    def _check_contract(self, model: LoadedModel) -> LoadedModel:
        """Refuse a model trained on another contract than the one the API validates against."""
        trained_on = model.manifest.get("contract_fingerprint")
        if self.contract_fingerprint and trained_on != self.contract_fingerprint:
            raise ModelLoadError(
                f"{model.model_name} {model.version} was trained on contract {trained_on}, but "
                f"the service validates requests against {self.contract_fingerprint}; serve it "
                "with its own contract (MLOPS_CONTRACT)"
            )
        return model

    def served_version(self) -> str | None:
        return self.current.version if self.current else None

    def status(self) -> dict[str, Any]:
        """Return the keeper's state for `GET /model` and the reload endpoint."""
        return {"served_version": self.served_version(), "serve_ref": self.settings.serve_ref,
                "last_reload_error": self.last_error, "refused_version": self.refused,
                "error": self.last_error}  # fmt: skip


def start_logger(settings: Settings) -> PredictionLogger:
    """Start the background writer of served rows (prediction log and whylogs profiles)."""
    logger = PredictionLogger(
        LogSettings(
            profiles_url=settings.store("profiles"),
            predictions_url=settings.store("predictions"),
            window_seconds=settings.profile_window_s,
            flush_interval_s=settings.log_flush_s,
        ),
        model_name=settings.model_name,
    )
    logger.start()
    # whylogs loads lazily and takes seconds: load it now, not at the first flush under traffic.
    profile_frame(pd.DataFrame({"warm_up": [0.0]}))
    return logger


def tune_gc() -> None:
    """Keep the garbage collector off the request path of a long-running server (call once ready).

    After startup the heap holds ~250k long-lived objects (libraries, model, whylogs): a full
    collection scans them all and stalls every request for ~0.2 s, and the default thresholds
    collect every few requests. Freeze what exists, and collect the young generation less often.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
