"""Copy a registered model version into the BentoML model store, so a Bento can package it."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from mlops.registry.store import ModelVersion, Registry, RegistryError
from mlops.settings import quiet_telemetry

BENTO_FILES = ("model.onnx", "manifest.json", "model_card.md")
# Manifest keys worth carrying into the BentoML model's metadata.
_METADATA_KEYS = ("metrics", "contract_fingerprint", "onnx_sha256", "created_at")
_TAG_MAX = 63


def bento_name(model: str) -> str:
    """Turn a registry model name into a valid BentoML model name."""
    name = re.sub(r"[^a-z0-9._-]+", "-", model.lower()).strip("._-")[:_TAG_MAX].rstrip("._-")
    if not name:
        raise ValueError(
            f"cannot derive a BentoML model name from {model!r}; pass bento_model_name"
        )
    return name


def bento_metadata(version: ModelVersion) -> dict[str, Any]:
    """Summarize a version's manifest for BentoML metadata."""
    summary = {key: version.manifest[key] for key in _METADATA_KEYS if key in version.manifest}
    return {**summary, "registry_model": version.model, "registry_version": version.version}


def save_to_bentoml(
    version: ModelVersion,
    registry: Registry,
    *,
    bento_model_name: str | None = None,
    labels: dict[str, str] | None = None,
) -> str:
    """Save a registry version into the BentoML model store and return its tag.

    The tag is ``<name>:<registry version>``; saving a version that is already there returns its
    tag without writing anything.
    """
    quiet_telemetry()
    import bentoml
    from bentoml.exceptions import NotFound

    name = bento_model_name or bento_name(version.model)
    tag = f"{name}:{version.version}"
    try:
        existing = bentoml.models.get(tag)
    except NotFound:
        pass
    else:
        _check_same_model(tag, existing.info.metadata, version)
        return tag
    all_labels = {"registry_model": version.model, "registry_version": version.version}
    all_labels |= labels or {}
    with tempfile.TemporaryDirectory(prefix="mlops-bento-") as tmp:
        source = registry.fetch_local(version.model, version.version, Path(tmp))
        with bentoml.models.create(
            tag, labels=all_labels, metadata=bento_metadata(version)
        ) as bento_model:
            for file_name in BENTO_FILES:
                shutil.copyfile(source / file_name, bento_model.path_of(file_name))
    return tag


def _check_same_model(tag: str, metadata: dict[str, Any], version: ModelVersion) -> None:
    """Refuse to reuse a BentoML model that holds a different ONNX file than this version."""
    stored, expected = metadata.get("onnx_sha256"), version.manifest.get("onnx_sha256")
    if stored != expected:
        raise RegistryError(
            f"BentoML model {tag} already exists with onnx_sha256 {stored}, but registry "
            f"{version.model} {version.version} has {expected}; delete it "
            f"(bentoml models delete {tag}) or save under another bento_model_name"
        )
