"""Keep immutable model versions and atomically updated aliases on any fsspec URL.

Layout under the registry root (a local path or an fsspec URL)::

    <root>/<model>/versions/<version>/model.onnx
    <root>/<model>/versions/<version>/reference.bin    whylogs reference profile
    <root>/<model>/versions/<version>/model_card.md
    <root>/<model>/versions/<version>/manifest.json    written last: no manifest, no version
    <root>/<model>/versions/.staging-<uuid>/           being written; never listed
    <root>/<model>/aliases.json     {"revision": int, "aliases": {"champion": "v3", ...},
                                     "updated_at": iso}
    <root>/<model>/history.jsonl    one JSON line per event: registered, alias_set, promoted,
                                    rolled_back (time, actor, reason, from, to, revision)
    <root>/<model>/.lock            held while publishing a version or changing aliases

Versions are ``v1``, ``v2``, ... and are never overwritten. Every alias change is a
compare-and-swap on ``revision`` under the model's lock, written through a temporary file and an
atomic replace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from mlops.registry.locking import ConcurrentUpdateError, file_lock, write_atomic

__all__ = [
    "AliasNotSetError",
    "AliasState",
    "ConcurrentUpdateError",
    "IntegrityError",
    "ModelVersion",
    "Registry",
    "RegistryError",
    "VersionNotFoundError",
]

# manifest.json comes last: a version becomes visible only once it is complete.
VERSION_FILES = ("model.onnx", "reference.bin", "model_card.md", "manifest.json")
_VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

AliasChange = Callable[[dict[str, str]], tuple[dict[str, str], dict[str, Any]]]


class RegistryError(Exception):
    """A registry operation failed."""


class VersionNotFoundError(RegistryError, LookupError):
    """The requested model version does not exist."""


class AliasNotSetError(RegistryError, LookupError):
    """The requested alias points at no version."""


class IntegrityError(RegistryError):
    """A stored file does not match the checksum in its manifest."""


@dataclass(frozen=True)
class ModelVersion:
    """One immutable registered version of a model."""

    model: str
    version: str
    uri: str
    manifest: dict[str, Any] = field(hash=False)


@dataclass(frozen=True)
class AliasState:
    """The aliases of a model and the revision they were written at."""

    revision: int = 0
    aliases: dict[str, str] = field(default_factory=dict, hash=False)
    updated_at: str | None = None


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


def file_sha256(path: str | Path) -> str:
    """Return the hex sha256 of a local file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Registry:
    """Store model versions and their aliases under one root URL."""

    def __init__(
        self,
        root: str,
        *,
        storage_options: dict[str, Any] | None = None,
        clock: Callable[[], datetime] = utc_now,
        lock_timeout_s: float = 30.0,
    ) -> None:
        self.root = root
        self._fs: AbstractFileSystem
        self._fs, base = url_to_fs(root, **(storage_options or {}))
        self._base = base.rstrip("/")
        self._local = isinstance(self._fs, LocalFileSystem)
        self._clock = clock
        self._lock_timeout_s = lock_timeout_s

    # -- versions ---------------------------------------------------------------------------

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
        _check_name(model, "model name")
        if not Path(onnx_path).is_file():
            raise RegistryError(f"cannot register {model!r}: ONNX file {onnx_path} does not exist")
        _dumps(manifest, what="manifest")
        digest = file_sha256(onnx_path)
        staging = f"{self._model_dir(model)}/versions/.staging-{uuid.uuid4().hex}"
        try:
            self._fs.makedirs(staging, exist_ok=True)
            self._fs.put_file(str(onnx_path), f"{staging}/model.onnx")
            self._fs.pipe_file(f"{staging}/reference.bin", bytes(reference_profile))
            self._fs.pipe_file(f"{staging}/model_card.md", model_card.encode())
            with self._locked(model):
                version = f"v{self._last_number(model) + 1}"
                full = {**manifest, "version": version}
                full |= {"created_at": self._clock().isoformat(), "onnx_sha256": digest}
                self._fs.pipe_file(f"{staging}/manifest.json", _dumps(full, what="manifest"))
                self._publish(staging, self._version_dir(model, version))
                event = {"from": None, "to": version, "revision": self.aliases(model).revision}
                self._append_history(model, "registered", actor, "", event)
        finally:
            self._remove_quietly(staging)
        return ModelVersion(model, version, self._uri(self._version_dir(model, version)), full)

    def list_versions(self, model: str) -> list[ModelVersion]:
        """List the complete versions of a model, oldest first."""
        _check_name(model, "model name")
        return [self._load(model, version) for version in self._complete_versions(model)]

    def get(self, model: str, version_or_alias: str) -> ModelVersion:
        """Return a version given its name ("v3") or an alias ("champion")."""
        _check_name(model, "model name")
        if _VERSION_RE.match(version_or_alias):
            return self._load(model, version_or_alias)
        state = self.aliases(model)
        version = state.aliases.get(version_or_alias)
        if version is None:
            raise AliasNotSetError(
                f"model {model!r} has no alias {version_or_alias!r}; "
                f"aliases set: {_format_aliases(state.aliases)}"
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

    # -- aliases and history ----------------------------------------------------------------

    def aliases(self, model: str) -> AliasState:
        """Return the current aliases of a model (revision 0 and none when never set)."""
        _check_name(model, "model name")
        path = f"{self._model_dir(model)}/aliases.json"
        try:
            doc = json.loads(self._fs.cat_file(path))
            return AliasState(int(doc["revision"]), dict(doc["aliases"]), doc.get("updated_at"))
        except FileNotFoundError:
            return AliasState()
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"{self._uri(path)} is not a valid aliases file: {exc!r}") from exc

    def set_alias(
        self,
        model: str,
        alias: str,
        version: str,
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
        reason: str = "",
    ) -> AliasState:
        """Point an alias at a version (or at what another alias points to)."""
        _check_name(alias, "alias")
        if _VERSION_RE.match(alias):
            raise RegistryError(f"alias {alias!r} looks like a version name; choose another name")
        target = self.get(model, version).version

        def change(current: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
            details = {"alias": alias, "from": current.get(alias), "to": target}
            return {**current, alias: target}, details

        return self._update(model, "alias_set", change, expected_revision, actor, reason)

    def promote(
        self,
        model: str,
        version: str,
        *,
        expected_revision: int | None = None,
        actor: str,
        reason: str,
    ) -> AliasState:
        """Make a version the champion; the old champion becomes previous."""
        target = self.get(model, version).version

        def change(current: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
            champion = current.get("champion")
            if champion == target:
                raise RegistryError(f"{model} {target} is already the champion; nothing to promote")
            new = {k: v for k, v in current.items() if (k, v) != ("challenger", target)}
            new["champion"] = target
            if champion is not None:
                new["previous"] = champion
            return new, {"from": champion, "to": target}

        return self._update(model, "promoted", change, expected_revision, actor, reason)

    def rollback(
        self, model: str, *, expected_revision: int | None = None, actor: str, reason: str
    ) -> AliasState:
        """Make the previous champion the champion again; the current one becomes previous."""

        def change(current: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
            previous, champion = current.get("previous"), current.get("champion")
            if previous is None:
                raise AliasNotSetError(
                    f"cannot roll back {model!r}: no 'previous' version is set "
                    f"(aliases set: {_format_aliases(current)}); promote a version first"
                )
            new = {**current, "champion": previous}
            if champion is None:
                del new["previous"]
            else:
                new["previous"] = champion
            return new, {"from": champion, "to": previous}

        return self._update(model, "rolled_back", change, expected_revision, actor, reason)

    def history(self, model: str) -> list[dict[str, Any]]:
        """Return the events of a model, oldest first."""
        _check_name(model, "model name")
        try:
            text = self._fs.cat_file(f"{self._model_dir(model)}/history.jsonl").decode()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    # -- internals ---------------------------------------------------------------------------

    def _update(
        self,
        model: str,
        event: str,
        change: AliasChange,
        expected_revision: int | None,
        actor: str,
        reason: str,
    ) -> AliasState:
        """Apply an alias change as a compare-and-swap on the revision, under the lock."""
        with self._locked(model):
            current = self.aliases(model)
            if expected_revision is not None and expected_revision != current.revision:
                raise ConcurrentUpdateError(
                    f"aliases of {model!r} are at revision {current.revision}, not "
                    f"{expected_revision}: someone changed them since you read them "
                    f"({_format_aliases(current.aliases)}); re-read and retry"
                )
            mapping, details = change(dict(current.aliases))
            state = AliasState(current.revision + 1, mapping, self._clock().isoformat())
            doc = {"revision": state.revision, "aliases": mapping, "updated_at": state.updated_at}
            self._write_atomic(f"{self._model_dir(model)}/aliases.json", _dumps(doc, "aliases"))
            self._append_history(
                model, event, actor, reason, {**details, "revision": state.revision}
            )
        return state

    def _append_history(
        self, model: str, event: str, actor: str, reason: str, details: dict[str, Any]
    ) -> None:
        """Add one event line to the model's history; the caller holds the lock."""
        record = {"event": event, "time": self._clock().isoformat(), "actor": actor}
        line = _dumps({**record, "reason": reason, **details}, "history event") + b"\n"
        path = f"{self._model_dir(model)}/history.jsonl"
        if self._local:
            with open(path, "ab") as f:
                f.write(line)
            return
        existing = self._fs.cat_file(path) if self._fs.exists(path) else b""
        self._write_atomic(path, existing + line)

    def _write_atomic(self, path: str, data: bytes) -> None:
        """Replace a file in one step: readers see the old content or the new, never a mix."""
        write_atomic(self._fs, path, data)

    def _publish(self, staging: str, final: str) -> None:
        """Move a complete staging folder to its version folder; the caller holds the lock."""
        if self._fs.exists(final):
            raise RegistryError(f"{self._uri(final)} already exists; versions are never rewritten")
        if self._local:
            os.rename(staging, final)
            return
        try:
            for name in VERSION_FILES:
                self._fs.copy(f"{staging}/{name}", f"{final}/{name}")
        except BaseException:
            self._remove_quietly(final)
            raise

    def _last_number(self, model: str) -> int:
        """Return the highest version number in use, complete or not (0 when none)."""
        versions = f"{self._model_dir(model)}/versions"
        self._fs.invalidate_cache(versions)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self._fs.ls(versions, detail=False)]
        except FileNotFoundError:
            return 0
        return max((int(m.group(1)) for n in names if (m := _VERSION_RE.match(n))), default=0)

    def _complete_versions(self, model: str) -> list[str]:
        """Return the names of versions that have a manifest, in numeric order."""
        versions = f"{self._model_dir(model)}/versions"
        self._fs.invalidate_cache(versions)
        found = self._fs.glob(f"{versions}/v*/manifest.json")
        names = [p.rstrip("/").rsplit("/", 2)[-2] for p in found]
        return sorted((n for n in names if _VERSION_RE.match(n)), key=lambda n: int(n[1:]))

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

    def _locked(self, model: str) -> contextlib.AbstractContextManager[None]:
        """Hold the model's lock: first among this process's threads, then the lock file."""
        path = f"{self._model_dir(model)}/.lock"
        self._fs.makedirs(self._model_dir(model), exist_ok=True)
        return file_lock(self._fs, path, key=self._uri(path), timeout_s=self._lock_timeout_s)

    def _remove_quietly(self, path: str) -> None:
        """Remove a file or folder if it is there."""
        with contextlib.suppress(FileNotFoundError):
            self._fs.rm(path, recursive=True)

    def _model_dir(self, model: str) -> str:
        return f"{self._base}/{model}"

    def _version_dir(self, model: str, version: str) -> str:
        return f"{self._model_dir(model)}/versions/{version}"

    def _uri(self, path: str) -> str:
        return path if self._local else self._fs.unstrip_protocol(path)


def _verify(found: ModelVersion, actual: str) -> None:
    """Raise IntegrityError when a model file's sha256 differs from its manifest."""
    expected = found.manifest.get("onnx_sha256")
    if actual != expected:
        raise IntegrityError(
            f"{found.model} {found.version}: model.onnx at {found.uri} has sha256 {actual}, "
            f"but its manifest expects {expected}; the file changed after registration"
        )


def _check_name(name: str, what: str) -> None:
    """Reject names that are not a single safe path segment."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def _dumps(doc: Any, what: str) -> bytes:
    """Encode a document as JSON, or say which document cannot be encoded."""
    try:
        return json.dumps(doc, sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} is not JSON-serializable: {exc}") from exc


def _format_aliases(aliases: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(aliases.items())) or "none"
