"""Load a verified model version for serving and predict on raw records."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.inference.feed import frame_feed, values_feed
from mlops.inference.sessions import create_session, run_session
from mlops.registry.store import IntegrityError, Registry
from mlops.training.features import categorical_strings, category_strings


class ModelLoadError(RuntimeError):
    """A model version that cannot be served (missing, corrupted or failing its load check)."""


@dataclass
class LoadedModel:
    """An onnxruntime session with the manifest that describes it."""

    model_name: str
    version: str
    manifest: dict[str, Any]
    session: Any
    device: str
    vocabularies: dict[str, frozenset[str]] = field(default_factory=dict)

    @property
    def inputs(self) -> list[dict[str, str]]:
        return list(self.manifest["inputs"])

    def feed(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Turn raw records into the graph's inputs, as typed in the manifest."""
        return frame_feed(frame, self.inputs)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Return probabilities [N, C] or values [N] for raw records."""
        return run_session(self.session, self.feed(frame))

    def feed_values(
        self, columns: Mapping[str, Sequence[Any]]
    ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Turn raw column values (plain Python, as in API records) into the graph's inputs.

        Also count, per categorical input, the values bound for the out-of-vocabulary slot (as
        `count_unseen` does). No pandas: this is the serving hot path.
        """
        feed, strings = values_feed(columns, self.inputs)
        unseen = {}
        for name, known in self.vocabularies.items():
            values = strings[name] if name in strings else category_strings(columns[name])
            count = sum(1 for v in values if v is not None and v not in known)
            if count:
                unseen[name] = count
        return feed, unseen

    def predict_values(
        self, columns: Mapping[str, Sequence[Any]]
    ) -> tuple[np.ndarray, dict[str, int]]:
        """Return `predict`'s output for raw column values, with `count_unseen`'s counts."""
        feed, unseen = self.feed_values(columns)
        return run_session(self.session, feed), unseen

    def count_unseen(self, frame: pd.DataFrame) -> dict[str, int]:
        """Count, per categorical input, the values that will go to the out-of-vocabulary slot."""
        counts = {}
        for name, known in self.vocabularies.items():
            values = categorical_strings(frame[name])
            unseen = int((values.notna() & ~values.isin(known)).sum())
            if unseen:
                counts[name] = unseen
        return counts

    def summary(self) -> dict[str, Any]:
        """Return what `GET /model` shows."""
        m = self.manifest
        return {
            "model": self.model_name,
            "version": self.version,
            "device": self.device,
            "providers": list(self.session.get_providers()),
            "task": m.get("task"),
            "classes": m.get("classes"),
            "decision_threshold": m.get("decision_threshold"),
            "created_at": m.get("created_at"),
            "contract_fingerprint": m.get("contract_fingerprint"),
            "onnx_sha256": m.get("onnx_sha256"),
            "metrics": m.get("metrics"),
            "training_device": m.get("training", {}).get("device"),
            "data_window": [
                m.get("data", {}).get("window_from"),
                m.get("data", {}).get("window_to"),
            ],
            "inputs": self.inputs,
        }


def load_from_registry(
    registry: Registry,
    model_name: str,
    ref: str = "champion",
    *,
    prefer_gpu: bool = True,
    intra_op_threads: int = 0,
) -> LoadedModel:
    """Load a version (by name or alias), verify its checksum, and check that it answers."""
    try:
        version = registry.get(model_name, ref)
        data = registry.read_onnx(model_name, version.version)
    except IntegrityError as exc:
        raise ModelLoadError(str(exc)) from exc
    except LookupError as exc:
        raise ModelLoadError(f"cannot load {model_name} {ref}: {exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # e.g. a manifest cut short
        raise ModelLoadError(
            f"cannot load {model_name} {ref}: its manifest.json is not valid JSON: {exc}"
        ) from exc
    except OSError as exc:  # a file of the version gone or unreadable since it was registered
        raise ModelLoadError(f"cannot load {model_name} {ref}: {exc}") from exc
    return load_model_bytes(
        data, version.manifest, model_name, prefer_gpu=prefer_gpu, intra_op_threads=intra_op_threads
    )


def load_from_directory(
    path: Path, model_name: str, *, prefer_gpu: bool = True, intra_op_threads: int = 0
) -> LoadedModel:
    """Load a pinned model from a folder holding model.onnx and manifest.json (a built Bento)."""
    import hashlib

    try:
        manifest = json.loads((path / "manifest.json").read_text())
        data = (path / "model.onnx").read_bytes()
    except (OSError, ValueError) as exc:  # a file missing, unreadable, or not JSON
        raise ModelLoadError(f"cannot load the model in {path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.get("onnx_sha256"):
        expected = manifest.get("onnx_sha256")
        raise ModelLoadError(
            f"{path}/model.onnx has sha256 {actual}, its manifest expects {expected}"
        )
    return load_model_bytes(
        data, manifest, model_name, prefer_gpu=prefer_gpu, intra_op_threads=intra_op_threads
    )


def load_model_bytes(
    data: bytes,
    manifest: dict[str, Any],
    model_name: str,
    *,
    prefer_gpu: bool = True,
    intra_op_threads: int = 0,
) -> LoadedModel:
    """Open a session on verified bytes and run the load check on one neutral record.

    `intra_op_threads` caps onnxruntime's threads per model call (0: its default, all cores).
    """
    try:
        session, device = create_session(
            data, prefer_gpu=prefer_gpu, intra_op_threads=intra_op_threads
        )
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelLoadError(
            f"onnxruntime cannot load {model_name} {manifest.get('version')}: {exc}"
        ) from exc
    vocabularies = {
        v["name"]: frozenset(v["values"])
        for v in manifest.get("preprocessor", {}).get("categorical", [])
    }
    model = LoadedModel(model_name, manifest["version"], manifest, session, device, vocabularies)
    probe = pd.DataFrame({i["name"]: ["" if i["type"] == "string" else 0.0] for i in model.inputs})
    try:
        out = model.predict(probe)
    except Exception as exc:
        raise ModelLoadError(f"{model_name} {model.version} fails its load check: {exc}") from exc
    if not np.all(np.isfinite(out)):
        raise ModelLoadError(f"{model_name} {model.version} returns non-finite values on a probe")
    return model
