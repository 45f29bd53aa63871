"""Cross-process locks and atomic replaces on any fsspec file system."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

STALE_LOCK_S = 300.0
# Threads of one process queue on these before racing for the lock file (memory:// needs it).
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


class ConcurrentUpdateError(Exception):
    """Another writer changed the state first, or held the lock too long."""


@contextlib.contextmanager
def file_lock(fs: AbstractFileSystem, path: str, *, key: str, timeout_s: float) -> Iterator[None]:
    """Hold an exclusive lock file at `path` (and a per-process thread lock keyed by `key`)."""
    with _THREAD_LOCKS_GUARD:
        thread_lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    if not thread_lock.acquire(timeout=timeout_s):
        raise ConcurrentUpdateError(
            f"timed out after {timeout_s}s waiting for {key} in this process"
        )
    try:
        _acquire_lock_file(fs, path, key, timeout_s)
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)
    finally:
        thread_lock.release()


def write_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Replace a file in one step: readers see the old content or the new, never a mix."""
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    fs.pipe_file(tmp, data)
    try:
        if isinstance(fs, LocalFileSystem):
            os.replace(tmp, path)
        else:
            fs.mv(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            fs.rm(tmp)
        raise


def _acquire_lock_file(fs: AbstractFileSystem, path: str, key: str, timeout_s: float) -> None:
    """Create the lock file exclusively, retrying until the timeout; break stale locks."""
    owner = {"owner": f"{socket.gethostname()}:{os.getpid()}", "acquired_at": time.time()}
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        try:
            with fs.open(path, "xb") as f:
                f.write(json.dumps(owner).encode())
            return
        except FileExistsError:
            pass
        holder, since = _read_lock_file(fs, path)
        if holder is None:
            continue  # released meanwhile: try again at once
        if time.time() - since > STALE_LOCK_S:
            # A holder that crashed never releases; STALE_LOCK_S is far above any hold time.
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)
            continue
        if time.monotonic() >= deadline:
            held = datetime.fromtimestamp(since, UTC).isoformat()
            raise ConcurrentUpdateError(
                f"could not lock {key} within {timeout_s}s: held by {holder} since {held}; "
                f"a lock older than {STALE_LOCK_S:.0f}s is broken automatically"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _read_lock_file(fs: AbstractFileSystem, path: str) -> tuple[str | None, float]:
    """Return who holds a lock file and since when (epoch seconds); None when it is gone."""
    try:
        doc = json.loads(fs.cat_file(path))
        return str(doc["owner"]), float(doc["acquired_at"])
    except FileNotFoundError:
        return None, 0.0
    except (ValueError, KeyError, TypeError):
        # Just created and not yet written, or left empty by a crash: judge by its mtime.
        with contextlib.suppress(Exception):
            return "unknown", fs.modified(path).timestamp()
        return "unknown", time.time()
