"""Cross-process locks and atomic replaces on any fsspec file system.

A lock file names its holder (host, pid space, pid, start time) and a token. A lock whose holder
ran on this host and has exited is broken at once, and one whose holder still runs here is kept;
any other lock (held on another host, or written by an older release without a holder record) is
broken once it is `STALE_LOCK_S` old. Breaking is
a compare-and-delete: a breaker must first create `<lock>.broken-<token>` exclusively, so of two
processes breaking the same lock only one deletes it, and never a lock taken after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from fsspec import AbstractFileSystem
from fsspec.implementations.local import LocalFileSystem

from mlops.registry.owner import Owner, is_alive, this_process

STALE_LOCK_S = 300.0
# Breaking takes milliseconds: a break marker this old was left by a breaker that died midway.
ABANDONED_BREAK_S = 30.0
# Object stores whose single upload (PUT) replaces a whole object in one step.
_OBJECT_STORES = {"s3", "s3a", "gs", "gcs", "abfs", "az"}
# Threads of one process queue on these before racing for the lock file (memory:// needs it).
_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()
log = logging.getLogger(__name__)


class ConcurrentUpdateError(Exception):
    """Another writer changed the state first, or held the lock too long."""


@dataclass(frozen=True)
class LockState:
    """What a lock file says: its token, its holder, since when, and whether the holder runs."""

    token: str
    label: str
    since: float
    holder: Owner | None = None
    alive: bool | None = None

    def stale(self, now: float) -> bool:
        """Tell whether the lock may be broken: its holder has exited, or it is too old.

        A holder known to run on this host (pid and start time match) keeps its lock, however old.
        """
        if self.alive is False:
            return True
        return not self._verified_alive() and now - self.since > STALE_LOCK_S

    def _verified_alive(self) -> bool:
        return bool(self.alive) and self.holder is not None and self.holder.started is not None

    def describe(self) -> str:
        """Say who holds the lock, since when, and when it will be broken."""
        since = datetime.fromtimestamp(self.since, UTC).isoformat(timespec="seconds")
        breaks = datetime.fromtimestamp(self.since + STALE_LOCK_S, UTC).isoformat(
            timespec="seconds"
        )
        if self._verified_alive():
            pid = self.holder.pid if self.holder is not None else "?"
            return (
                f"held since {since} by {self.label}, a process on this host that is still "
                f"running; the lock is kept while it runs (stop pid {pid} if it hangs)"
            )
        if self.holder is None:
            who = f"{self.label} (a lock without a holder record)"
        elif self.alive:
            who = f"{self.label}, a process on this host that is still running"
        elif self.alive is False:
            return f"held by {self.label} since {since}; it has exited (stale)"
        else:
            who = f"{self.label}, on another host, whose process cannot be checked here"
        return (
            f"held by {who}, since {since}; it is broken automatically at {breaks} "
            f"({STALE_LOCK_S:.0f}s after it was taken)"
        )


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
        token = _acquire_lock_file(fs, path, key, timeout_s)
        try:
            yield
        finally:
            _release_lock_file(fs, path, token)
    finally:
        thread_lock.release()


def read_lock(fs: AbstractFileSystem, path: str) -> LockState | None:
    """Return the state of a lock file; None when there is none."""
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        since = float(doc["acquired_at"])
    except (ValueError, KeyError, TypeError):
        # Just created and not yet written, or left empty by a crash: judge by its mtime.
        since = time.time()
        with contextlib.suppress(Exception):
            since = fs.modified(path).timestamp()
        return LockState(_content_token(raw, since), "unknown", since)
    label = str(doc.get("owner", "unknown"))
    holder = Owner.from_dict(doc.get("holder"))
    token = doc.get("token") if isinstance(doc.get("token"), str) else None
    if holder is None or token is None:  # written by an older release: honour until stale
        return LockState(_content_token(raw, since), label, since)
    return LockState(token, label, since, holder, is_alive(holder))


def write_atomic(fs: AbstractFileSystem, path: str, data: bytes) -> None:
    """Replace a file in one step: readers see the old content or the new, never a mix."""
    if _puts_whole_objects(fs):
        fs.pipe_file(path, data)
        return
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


def _puts_whole_objects(fs: AbstractFileSystem) -> bool:
    """Tell whether `fs` is an object store, where one upload replaces an object atomically.

    There a temporary file and a move buys nothing: the move is a copy (atomic the same way)
    and a delete, three more requests.
    """
    protocols = {fs.protocol} if isinstance(fs.protocol, str) else set(fs.protocol)
    return bool(protocols & _OBJECT_STORES)


def _acquire_lock_file(fs: AbstractFileSystem, path: str, key: str, timeout_s: float) -> str:
    """Create the lock file exclusively, retrying until the timeout; break stale locks."""
    me = this_process()
    token = uuid.uuid4().hex
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        doc = {"owner": me.label(), "acquired_at": time.time(), "token": token}
        try:
            with fs.open(path, "xb") as f:
                f.write(json.dumps({**doc, "holder": me.to_dict()}).encode())
            return token
        except FileExistsError:
            pass
        state = read_lock(fs, path)
        if state is None:
            continue  # released meanwhile: try again at once
        if state.stale(time.time()) and _break_lock(fs, path, state):
            continue
        if time.monotonic() >= deadline:
            raise ConcurrentUpdateError(
                f"could not lock {key} within {timeout_s}s: {state.describe()}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def _break_lock(fs: AbstractFileSystem, path: str, state: LockState) -> bool:
    """Delete a stale lock unless another breaker claimed it first (compare-and-delete).

    Return whether this call broke it; False while another breaker is at it.
    """
    marker = f"{path}.broken-{state.token}"
    try:
        with fs.open(marker, "xb") as f:
            f.write(json.dumps({"by": this_process().label(), "at": time.time()}).encode())
    except FileExistsError:
        if not _older_than(fs, marker, ABANDONED_BREAK_S):
            return False  # another process breaks (or broke) this very lock
    now = read_lock(fs, path)
    if now is not None and now.token == state.token:
        log.warning("breaking the lock %s: %s", path, state.describe())
        with contextlib.suppress(FileNotFoundError):
            fs.rm(path)
    _remove_old_markers(fs, path)
    return True


def _release_lock_file(fs: AbstractFileSystem, path: str, token: str) -> None:
    """Delete the lock file if it is still ours; a lock taken over meanwhile stays."""
    state = read_lock(fs, path)
    if state is None:
        return
    if state.token != token:
        log.warning("the lock %s was broken while held; leaving %s", path, state.describe())
        return
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path)


def _remove_old_markers(fs: AbstractFileSystem, path: str) -> None:
    """Forget break markers old enough that no breaker can still be acting on them."""
    with contextlib.suppress(Exception):
        for marker in fs.glob(f"{path}.broken-*"):
            if _older_than(fs, marker, 2 * STALE_LOCK_S):
                with contextlib.suppress(FileNotFoundError):
                    fs.rm(marker)


def _older_than(fs: AbstractFileSystem, path: str, seconds: float) -> bool:
    """Tell whether a file was last modified more than `seconds` ago (False when unknown)."""
    try:
        return time.time() - fs.modified(path).timestamp() > seconds
    except Exception:
        return False


def _content_token(raw: bytes, since: float) -> str:
    """Name a lock file without a token by its content and time, for compare-and-delete."""
    return hashlib.sha256(raw + repr(since).encode()).hexdigest()[:32]
