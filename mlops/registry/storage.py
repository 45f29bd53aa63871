"""Lay out a model registry on any fsspec URL: its errors, records, paths, lock and history.

Layout under the registry root (a local path or an fsspec URL)::

    <root>/<model>/versions/<version>/model.onnx
    <root>/<model>/versions/<version>/reference.bin    whylogs reference profile
    <root>/<model>/versions/<version>/model_card.md
    <root>/<model>/versions/<version>/manifest.json    written last: no manifest, no version
    <root>/<model>/versions/.staging-<uuid>/           being written; never listed; its
                                                       .owner.json names the writer
    <root>/<model>/aliases.json     {"revision": int, "aliases": {"champion": "v3", ...},
                                     "updated_at": iso}
    <root>/<model>/history.jsonl    one JSON line per event: registered, alias_set, promoted,
                                    rolled_back (time, actor, reason, from, to, revision)
    <root>/<model>/.lock            held while publishing a version or changing aliases; names
                                    its holder (host, pid, start time) and a token

Versions (``mlops.registry.versions``) and aliases (``mlops.registry.aliases``) build on
`RegistryStorage`; ``mlops.registry.store.Registry`` joins them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from mlops.registry.locking import file_lock, write_atomic

VERSION_RE = re.compile(r"^v([1-9][0-9]*)$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    rollout: dict[str, Any] | None = field(default=None, hash=False)  # a shadow or canary on trial


def utc_now() -> datetime:
    """Return the current time in UTC."""
    return datetime.now(UTC)


class RegistryStorage(ABC):
    """Hold the file system, paths, lock and history that versions and aliases share."""

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

    @property
    def location(self) -> str:
        """Return the absolute URL of the registry root (a resolved path when local)."""
        return (
            os.path.realpath(self._base) if self._local else self._fs.unstrip_protocol(self._base)
        )

    def check_lock(self, model: str) -> None:
        """Take and release the model's lock, to find out before costly work that ends in a write.

        A stale lock (its holder on this host has exited, or it is older than the stale age) is
        broken now; a lock still held raises ConcurrentUpdateError naming the holder.
        """
        check_name(model, "model name")
        with self._locked(model):
            pass

    # Each half of the registry needs one method of the other: versions resolve aliases, and
    # aliases point at versions. Declared here so that neither module imports the other.
    @abstractmethod
    def get(self, model: str, version_or_alias: str) -> ModelVersion:
        """Return a version given its name ("v3") or an alias ("champion")."""

    @abstractmethod
    def aliases(self, model: str) -> AliasState:
        """Return the current aliases of a model (revision 0 and none when never set)."""

    def _append_history(
        self, model: str, event: str, actor: str, reason: str, details: dict[str, Any]
    ) -> None:
        """Add one event line to the model's history; the caller holds the lock."""
        record = {"event": event, "time": self._clock().isoformat(), "actor": actor}
        line = dumps_json({**record, "reason": reason, **details}, "history event") + b"\n"
        path = f"{self._model_dir(model)}/history.jsonl"
        if self._local:
            with open(path, "ab") as f:
                f.write(line)
            return
        # Read, not exists(): s3fs answers exists() from its listing cache, which misses a file
        # another process wrote since, and a stale "no" would overwrite the history so far.
        try:
            existing = self._fs.cat_file(path)
        except FileNotFoundError:
            existing = b""
        self._write_atomic(path, existing + line)

    def _write_atomic(self, path: str, data: bytes) -> None:
        """Replace a file in one step: readers see the old content or the new, never a mix."""
        write_atomic(self._fs, path, data)

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


def check_name(name: str, what: str) -> None:
    """Reject names that are not a single safe path segment."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise RegistryError(
            f"invalid {what} {name!r}: use letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )


def dumps_json(doc: Any, what: str) -> bytes:
    """Encode a document as JSON, or say which document cannot be encoded."""
    try:
        return json.dumps(doc, sort_keys=True).encode()
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} is not JSON-serializable: {exc}") from exc


def format_aliases(aliases: dict[str, str]) -> str:
    """Render aliases as `name=version, ...` for messages ("none" when there are none)."""
    return ", ".join(f"{k}={v}" for k, v in sorted(aliases.items())) or "none"
