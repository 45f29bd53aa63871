"""Copy a registered model version into the BentoML model store, so a Bento can package it.

The BentoML model store (``BENTOML_HOME``) is shared by every registry of a user, while versions
are numbered per registry: two registries each have a ``v1``. A version is therefore stored as
``<name>:<version>-<suffix>``, the suffix being 8 hex digits of a hash of the registry's location
and the version's model file, so that versions of different registries (or of a registry that was
deleted and trained again) never claim the same tag.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops.registry.store import ModelVersion, Registry, RegistryError
from mlops.settings import quiet_telemetry

BENTO_FILES = ("model.onnx", "manifest.json", "model_card.md")
# Manifest keys worth carrying into the BentoML model's metadata.
_METADATA_KEYS = ("metrics", "contract_fingerprint", "onnx_sha256", "created_at")
_TAG_MAX = 63


@dataclass(frozen=True)
class BentoSave:
    """The outcome of saving a version into the BentoML model store: its tag, or why not."""

    tag: str | None
    error: str | None = None

    def describe(self) -> str:
        """Say where the version was saved, or why it was not."""
        if self.tag is not None:
            return f"Saved to the BentoML model store as `{self.tag}`."
        return f"Not saved to the BentoML model store: {self.error}"


def bento_name(model: str) -> str:
    """Turn a registry model name into a valid BentoML model name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", model.lower()).strip("._-")[:_TAG_MAX].rstrip("._-")
    if not name:
        raise ValueError(
            f"cannot derive a BentoML model name from {model!r}; pass bento_model_name"
        )
    return name


def bento_version(version: ModelVersion, registry_location: str) -> str:
    """Return the BentoML version of a registry version: `<version>-<8 hex digits>`."""
    key = f"{registry_location}\n{version.model}\n{version.version}\n"
    key += str(version.manifest.get("onnx_sha256"))
    return f"{version.version}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def bento_metadata(version: ModelVersion, registry_location: str) -> dict[str, Any]:
    """Summarize a version's manifest (and where it is registered) for BentoML metadata."""
    summary = {key: version.manifest[key] for key in _METADATA_KEYS if key in version.manifest}
    where = {"registry": registry_location, "registry_model": version.model}
    return {**summary, **where, "registry_version": version.version}


def save_to_bentoml(
    version: ModelVersion,
    registry: Registry,
    *,
    bento_model_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Save a registry version into the BentoML model store and return its tag.

    The tag is ``<name>:<registry version>-<suffix>`` (see the module's docstring); saving a
    version that is already there returns its tag without writing anything.
    """
    quiet_telemetry()
    import bentoml
    from bentoml.exceptions import NotFound

    name = bento_model_name or bento_name(version.model)
    location = registry.location
    tag = f"{name}:{bento_version(version, location)}"
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        pass
    else:
        _check_same_model(tag, existing.info.metadata, version, location)
        return tag
    all_labels = {"registry_model": version.model, "registry_version": version.version}
    all_labels |= labels or {}
    with tempfile.TemporaryDirectory(prefix="mlops-bento-") as tmp:
        source = registry.fetch_local(version.model, version.version, Path(tmp))
        with bentoml.models.create(
            tag, labels=all_labels, metadata=bento_metadata(version, location)
        ) as bento_model:
            for file_name in BENTO_FILES:
                shutil.copyfile(source / file_name, bento_model.path_of(file_name))
    return tag


def try_save_to_bentoml(
    version: ModelVersion, registry: Registry, *, labels: dict[str, str] | None = None
) -> BentoSave:
    """Save a version like `save_to_bentoml`, reporting a failure instead of raising it.

    For callers that run after the champion alias moved: serving reads the registry, not this
    store, so a store that cannot take the model must not fail a promotion that has happened.
    """
    try:
        return BentoSave(save_to_bentoml(version, registry, labels=labels))
    except Exception as exc:
        return BentoSave(None, f"{type(exc).__name__}: {exc}")


def _check_same_model(
    tag: str, metadata: dict[str, Any], version: ModelVersion, location: str
) -> None:
    """Refuse to reuse a BentoML model that holds another registry's or another ONNX file."""
    stored = (metadata.get("onnx_sha256"), metadata.get("registry", location))
    expected = (version.manifest.get("onnx_sha256"), location)
    if stored != expected:
        raise RegistryError(
            f"BentoML model {tag} already exists with onnx_sha256 {stored[0]} from registry "
            f"{stored[1]}, but {version.model} {version.version} of {location} has {expected[0]}; "
            f"delete it (bentoml models delete {tag}) or save under another bento_model_name"
        )
