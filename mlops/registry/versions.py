"""Publish immutable model versions and read them back verified.

Versions are ``v1``, ``v2``, ... and are never overwritten: a version is written into a staging
folder and published under the model's lock, its manifest last.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

from mlops.registry.staging import OWNER_FILE, STAGING_PREFIX, abandoned_staging, claim_staging
from mlops.registry.storage import (
    VERSION_RE,
    AliasNotSetError,
    IntegrityError,
    ModelVersion,
    RegistryError,
    RegistryStorage,
    VersionNotFoundError,
    check_name,
    dumps_json,
    format_aliases,
)

# manifest.json comes last: a version becomes visible only once it is complete.
VERSION_FILES = ("model.onnx", "reference.bin", "model_card.md", "manifest.json")
log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class VersionStore(RegistryStorage):
    """Register, list and read the immutable versions of models."""

    def register(
        self,
        model: str,
        *,
        onnx_path: str | Path,
        manifest: dict[str, Any],
        reference_profile: bytes,
        model_card: str,
        actor: str = "unknown",
    ) -> ModelVersion:
        """Publish a new immutable version of a model and return it."""
        check_name(model, "model name")
        if not Path(onnx_path).is_file():
            raise RegistryError(f"cannot register {model!r}: ONNX file {onnx_path} does not exist")
        dumps_json(manifest, what="manifest")
        digest = file_sha256(onnx_path)
        self._clean_staging_quietly(model)
        staging = f"{self._model_dir(model)}/versions/{STAGING_PREFIX}{uuid.uuid4().hex}"
        try:
            claim_staging(self._fs, staging)
            self._fs.put_file(str(onnx_path), f"{staging}/model.onnx")
            self._fs.pipe_file(f"{staging}/reference.bin", bytes(reference_profile))
            self._fs.pipe_file(f"{staging}/model_card.md", model_card.encode())
            with self._locked(model):
                version = f"v{self._last_number(model) + 1}"
                full = {**manifest, "version": version}
                full |= {"created_at": self._clock().isoformat(), "onnx_sha256": digest}
                self._fs.pipe_file(f"{staging}/manifest.json", dumps_json(full, what="manifest"))
                self._publish(staging, self._version_dir(model, version))
                event = {"from": None, "to": version, "revision": self.aliases(model).revision}
                self._append_history(model, "registered", actor, "", event)
        finally:
            self._remove_quietly(staging)
        return ModelVersion(model, version, self._uri(self._version_dir(model, version)), full)

    def clean_staging(self, model: str) -> list[str]:
        """Remove the staging folders of writers that are gone; return their URIs.

        A folder whose writer still runs on this host is kept, whatever its age; see
        ``mlops.registry.staging`` for how a writer elsewhere is judged gone.
        """
        check_name(model, "model name")
        removed = []
        for folder in abandoned_staging(self._fs, f"{self._model_dir(model)}/versions"):
            self._remove_quietly(folder)
            removed.append(self._uri(folder))
        return removed

    def list_versions(self, model: str) -> list[ModelVersion]:
        """List the complete versions of a model, oldest first."""
        check_name(model, "model name")
        return [self._load(model, version) for version in self._complete_versions(model)]

    def get(self, model: str, version_or_alias: str) -> ModelVersion:
        """Return a version given its name ("v3") or an alias ("champion")."""
        check_name(model, "model name")
        if VERSION_RE.match(version_or_alias):
            return self._load(model, version_or_alias)
        state = self.aliases(model)
        version = state.aliases.get(version_or_alias)
        if version is None:
            raise AliasNotSetError(
                f"model {model!r} has no alias {version_or_alias!r}; "
                f"aliases set: {format_aliases(state.aliases)}"
            )
        return self._load(model, version)

    def read_onnx(self, model: str, version: str) -> bytes:
        """Return the ONNX bytes of a version after checking them against its manifest."""
        found = self.get(model, version)
        data = self._fs.cat_file(f"{self._version_dir(model, found.version)}/model.onnx")
        _verify(found, hashlib.sha256(data).hexdigest())
        return bytes(data)

    def fetch_local(self, model: str, version: str, dest_dir: Path | None = None) -> Path:
        """Return a local folder holding the verified files of a version.

        On a local registry without ``dest_dir`` this is the version folder itself; otherwise the
        files are copied into ``dest_dir`` (a new temporary folder when not given).
        """
        found = self.get(model, version)
        source = self._version_dir(model, found.version)
        if self._local and dest_dir is None:
            _verify(found, file_sha256(f"{source}/model.onnx"))
            return Path(source)
        dest = Path(dest_dir or tempfile.mkdtemp(prefix=f"mlops-{model}-{found.version}-"))
        dest.mkdir(parents=True, exist_ok=True)
        for name in VERSION_FILES:
            self._fs.get_file(f"{source}/{name}", str(dest / name))
        _verify(found, file_sha256(dest / "model.onnx"))
        return dest

    def read_reference_profile(self, model: str, version: str) -> bytes:
        """Return the reference profile bytes stored with a version."""
        found = self.get(model, version)
        return bytes(self._fs.cat_file(f"{self._version_dir(model, found.version)}/reference.bin"))

    def _publish(self, staging: str, final: str) -> None:
        """Move a complete staging folder to its version folder; the caller holds the lock."""
        if self._fs.exists(final):
            raise RegistryError(f"{self._uri(final)} already exists; versions are never rewritten")
        if self._local:
            os.remove(f"{staging}/{OWNER_FILE}")  # a version folder holds the version's files only
            os.rename(staging, final)
            return
        try:
            for name in VERSION_FILES:
                self._fs.copy(f"{staging}/{name}", f"{final}/{name}")
        except BaseException:
            self._remove_quietly(final)
            raise

    def _clean_staging_quietly(self, model: str) -> None:
        """Clean abandoned staging folders; a failure here must not stop a registration."""
        try:
            removed = self.clean_staging(model)
        except Exception as exc:
            log.warning("could not clean the staging folders of %s: %r", model, exc)
            return
        if removed:
            log.info("removed %d abandoned staging folder(s): %s", len(removed), removed)

    def _last_number(self, model: str) -> int:
        """Return the highest version number in use, complete or not (0 when none)."""
        versions = f"{self._model_dir(model)}/versions"
        self._fs.invalidate_cache(versions)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(versions, detail=False)]
        except FileNotFoundError:
            return 0
        return max((int(m.group(1)) for n in names if (m := VERSION_RE.match(n))), default=0)

    def _complete_versions(self, model: str) -> list[str]:
        """Return the names of versions that have a manifest, in numeric order."""
        versions = f"{self._model_dir(model)}/versions"
        self._fs.invalidate_cache(versions)
        found = self._fs.glob(f"{versions}/v*/manifest.json")
        names = [p.rstrip("/").rsplit("/", 2)[-2] for p in found]
        return sorted((n for n in names if VERSION_RE.match(n)), key=lambda n: int(n[1:]))

    def _load(self, model: str, version: str) -> ModelVersion:
        """Read a version's manifest, or explain which versions exist."""
        path = self._version_dir(model, version)
        try:
            manifest = json.loads(self._fs.cat_file(f"{path}/manifest.json"))
        except FileNotFoundError:
            existing = ", ".join(self._complete_versions(model)) or "none yet"
            raise VersionNotFoundError(
                f"model {model!r} has no version {version!r} in {self.root}; versions: {existing}"
            ) from None
        return ModelVersion(model, version, self._uri(path), manifest)


def _verify(found: ModelVersion, actual: str) -> None:
    """Raise IntegrityError when a model file's sha256 differs from its manifest."""
    expected = found.manifest.get("onnx_sha256")
    if actual != expected:
        raise IntegrityError(
            f"{found.model} {found.version}: model.onnx at {found.uri} has sha256 {actual}, "
            f"but its manifest expects {expected}; the file changed after registration"
        )
