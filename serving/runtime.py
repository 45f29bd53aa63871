"""What the service runs beside requests: the model keeper (hot reload) and the prediction log."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable
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
from mlops.registry.rollouts import Rollout
from mlops.registry.store import Registry
from mlops.settings import Settings

log = logging.getLogger("mlops.serving")
RETRY_FIRST_S = 5.0  # the registry poll's first retry of a refused version, at the earliest
RETRY_MAX_S = 300.0  # and its longest wait between retries


class ModelKeeper:
    """Hold the model being served and switch to a new version when the registry alias moves.

    A switch replaces one reference: requests already running keep the model they started
    with, new ones get the new model. A version that cannot be loaded (a file missing, damaged
    or failing its checks, or an unreadable alias) is refused with its error recorded, and the
    current model keeps serving. The registry poll tries a refused version again after a back-off
    (its files may be repaired or a read error may pass); an explicit reload tries it at once.

    Beside the champion it keeps the version on trial, when the registry records a rollout
    (shadow or canary): loaded like the champion, refused the same way (the champion then serves
    alone), dropped when the rollout ends. A pinned model or a pinned version has no trial.
    """

    def __init__(
        self,
        settings: Settings,
        metrics: Any,
        contract_fingerprint: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.contract_fingerprint = contract_fingerprint
        self.clock = clock
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.refused: str | None = None
        self._failures = 0  # refusals in a row of the same version
        self._retry_at = 0.0
        self._alias_error: str | None = None
        self._trial: tuple[Rollout, LoadedModel | None] | None = None  # one reference, swapped
        self.trial_error: str | None = None
        self._trial_refused: tuple[str, float] | None = None  # (version, retry at)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.registry = Registry(settings.registry)

    def start(self) -> None:
        """Load the model now and, unless it is pinned, watch the registry in the background."""
        self.reload(force=True)
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
        return self._read_registry()[0]

    def _read_registry(self) -> tuple[str | None, Rollout | None]:
        """Read the aliases once: the target version and the rollout (none for a pinned one)."""
        ref = self.settings.serve_ref
        if ref.startswith("v") and ref[1:].isdigit():
            return ref, None
        state = self.registry.aliases(self.settings.model_name)
        return state.aliases.get(ref), Rollout.from_dict(state.rollout)

    @property
    def trial(self) -> LoadedModel | None:
        """The version on trial, loaded; None without a rollout or when it was refused."""
        held = self._trial
        return None if held is None else held[1]

    @property
    def rollout(self) -> Rollout | None:
        """The rollout the registry records (the trial may still have failed to load)."""
        held = self._trial
        return None if held is None else held[0]

    def active_trial(self) -> tuple[Rollout, LoadedModel] | None:
        """Return the rollout and its loaded model together (one read), or None."""
        held = self._trial
        return None if held is None or held[1] is None else (held[0], held[1])

    def reload(self, *, force: bool = False) -> dict[str, Any]:
        """Load the target version if it differs from the one served; report what happened.

        A refused version is tried again when `force` is set or its back-off has passed.
        """
        with self._lock:
            if self.settings.serve_model_dir is not None:
                return self._load_pinned(self.settings.serve_model_dir, force)
            try:
                target, rollout = self._read_registry()
            except Exception as exc:  # e.g. a garbled aliases.json: keep serving what we have
                self._alias_error = f"cannot read the {self.settings.serve_ref} alias: {exc}"
                self._refuse(None, self._alias_error)
                return {**self.status(), "changed": False}
            if self._alias_error is not None:  # readable again: that error is over
                self.last_error = None if self.last_error == self._alias_error else self.last_error
                self._alias_error = None
            served = self.current.version if self.current else None
            self._sync_trial(rollout, force)
            if target is None or target == served:
                return {**self.status(), "changed": False}
            if target == self.refused and not (force or self._retry_due()):
                return {**self.status(), "changed": False}
            self._swap(target, lambda: self._load(target))
            return {**self.status(), "changed": self.current is not None
                    and self.current.version == target}  # fmt: skip

    def _load(self, version: str) -> LoadedModel:
        """Load a registry version with the service's settings."""
        return load_from_registry(
            self.registry, self.settings.model_name, version,
            prefer_gpu=self.settings.prefer_gpu,
            intra_op_threads=self.settings.onnx_threads)  # fmt: skip

    def _sync_trial(self, rollout: Rollout | None, force: bool) -> None:
        """Load the rollout's version when it changed; drop the trial when the rollout ended."""
        if rollout is None:
            self._trial, self.trial_error, self._trial_refused = None, None, None
            return
        held = self._trial
        if held is not None and held[1] is not None and held[1].version == rollout.version:
            self._trial = (rollout, held[1])  # e.g. a canary widened: same model, new share
            return
        refused = self._trial_refused
        if refused and refused[0] == rollout.version and not force and self.clock() < refused[1]:
            self._trial = (rollout, None)
            return
        try:
            model: LoadedModel | None = self._check_contract(self._load(rollout.version))
        except Exception as exc:  # a trial that cannot load never stops the champion serving
            model, error = None, str(exc) if isinstance(exc, ModelLoadError) else repr(exc)
            self.trial_error = f"{rollout.strategy} {rollout.version} refused: {error}"
            retry_s = max(self.settings.reload_interval_s, RETRY_FIRST_S)
            self._trial_refused = (rollout.version, self.clock() + retry_s)
            self.metrics.reloads.labels(outcome="trial_refused").inc()
            log.error("%s; the champion serves alone", self.trial_error)
        else:
            self.trial_error, self._trial_refused = None, None
            self.metrics.reloads.labels(outcome="trial_loaded").inc()
            log.info("%s %s on trial at share %s", rollout.strategy, rollout.version, rollout.share)
        self._trial = (rollout, model)

    def _load_pinned(self, folder: str, force: bool) -> dict[str, Any]:
        """Load the pinned folder's model unless it is loaded (or failed and waits to retry)."""
        if self.current is not None or not (force or self._retry_due()):
            return {**self.status(), "changed": False}
        self._swap(None, lambda: load_from_directory(
            Path(folder), self.settings.model_name, prefer_gpu=self.settings.prefer_gpu,
            intra_op_threads=self.settings.onnx_threads))  # fmt: skip
        return {**self.status(), "changed": self.current is not None}

    def _swap(self, version: str | None, load: Callable[[], LoadedModel]) -> None:
        """Serve what `load` returns, or record why it failed (`version` None: a pinned folder)."""
        try:
            model = self._check_contract(load())
        except ModelLoadError as exc:
            self._refuse(version, str(exc))
            return
        except Exception as exc:  # whatever else loading raises, the service keeps serving
            what = version or self.settings.serve_model_dir
            self._refuse(version, f"cannot load {self.settings.model_name} {what}: {exc!r}")
            return
        previous, self.current = self.current, model
        self.last_error, self.refused, self._failures = None, None, 0
        self.metrics.reloads.labels(outcome="loaded").inc()
        if previous is not None:
            self.metrics.model_info.labels(version=previous.version, device=previous.device).set(0)
        self.metrics.model_info.labels(version=model.version, device=model.device).set(1)
        log.info("serving %s %s on %s", model.model_name, model.version, model.device)

    def _refuse(self, version: str | None, error: str) -> None:
        """Record a failed load of `version` (None: a pinned folder, or an unreadable alias)."""
        repeated = error == self.last_error
        self._failures = self._failures + 1 if version == self.refused else 1
        self._retry_at = self.clock() + self._back_off_s()
        self.last_error = error
        if version is not None:
            self.refused = version
        self.metrics.reloads.labels(outcome="refused").inc()
        if not repeated:  # a poll meeting the same broken file again says nothing new
            log.error("model refused, still serving %s: %s", self.served_version(), error)

    def _back_off_s(self) -> float:
        """Wait before the poll retries: RETRY_FIRST_S at least, doubling up to RETRY_MAX_S."""
        first = max(self.settings.reload_interval_s, RETRY_FIRST_S)
        return float(min(first * 2 ** (self._failures - 1), RETRY_MAX_S))

    def _retry_due(self) -> bool:
        return self.clock() >= self._retry_at

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
                "error": self.last_error, "rollout": self.rollout_status()}  # fmt: skip

    def rollout_status(self) -> dict[str, Any] | None:
        """Return the rollout for `status()`: strategy, version, share, loaded and error."""
        held = self._trial
        if held is None:
            return None
        rollout, model = held
        error = None if model is not None else self.trial_error
        return {"strategy": rollout.strategy, "version": rollout.version, "share": rollout.share,
                "loaded": model is not None, "error": error}  # fmt: skip


def start_logger(settings: Settings) -> PredictionLogger:
    """Start the background writer of served rows (prediction log and whylogs profiles)."""
    logger = PredictionLogger(
        LogSettings(
            profiles_url=settings.store("profiles"),
            predictions_url=settings.store("predictions"),
            window_seconds=settings.profile_window_s,
            flush_interval_s=settings.log_flush_s,
            profile_interval_s=settings.profile_flush_s,
            profile_process=settings.profile_process,
        ),
        model_name=settings.model_name,
    )
    logger.start()  # a profiler process loads whylogs itself, beside this one
    if not settings.profile_process:
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
