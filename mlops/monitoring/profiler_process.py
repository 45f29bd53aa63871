"""Profile served rows with whylogs in a child process, off the serving process's GIL.

whylogs holds the GIL for tens to hundreds of milliseconds a call, which stalls a server's event
loop. `ProfilerProcess` runs a `PredictionWriter` for the window profiles in a child
(``python -m mlops.monitoring.profiler_child``), fed length-prefixed pickles over its stdin and
answering on its stdout; the caller blocks on a pipe, which releases the GIL. The child keeps its
windows in memory between calls, as the writer does in process.

Each child writes its window files under its own writer id (the caller's, plus ``-p1``, ``-p2``
after a restart), so a restarted child never overwrites its predecessor's files. A chunk counts as
profiled once the child has answered for it: a child that dies before answering is replaced and
the new one gets the chunks again. A child killed after writing a window file but before answering
would count that file's new rows twice; the gap is the time it takes to write the files.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.monitoring.profiler_child import HEADER as _HEADER
from mlops.monitoring.profiler_child import dumps as _dumps

if TYPE_CHECKING:
    from mlops.monitoring.prediction_writer import Chunk

__all__ = ["ProfilerDied", "ProfilerProcess"]

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding `mlops`


class ProfilerDied(RuntimeError):
    """The child process died, closed its pipe or did not answer in time."""


class ProfilerProcess:
    """Own one child process that profiles chunks of served rows into window profiles."""

    def __init__(
        self,
        *,
        profiles_url: str,
        window_seconds: int,
        storage_options: dict[str, Any] | None,
        model_name: str,
        writer_id: str,
        reply_timeout_s: float = 120.0,
        start_timeout_s: float = 120.0,
    ) -> None:
        """reply_timeout_s: longest wait for an answer; start_timeout_s: for a new child to load."""
        self.writer_id = writer_id
        self.reply_timeout_s, self.start_timeout_s = reply_timeout_s, start_timeout_s
        self._config = {
            "predictions_url": profiles_url,  # unused: the child writes profiles only
            "profiles_url": profiles_url,
            "window_seconds": window_seconds,
            "storage_options": storage_options,
            "model_name": model_name,
        }
        self.generation = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._ready = False  # the child said it has loaded whylogs
        self._lock = threading.Lock()  # one exchange with the child at a time

    @property
    def pid(self) -> int | None:
        """Return the pid of the running child; None when none runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        """Start the child unless one runs; it loads whylogs while the caller goes on."""
        with self._lock:
            try:
                self._ensure_child([])
            except (ProfilerDied, OSError):
                self._kill()  # the first profile write tries again and reports why

    def write_profiles(self, chunks: list[Chunk], errors: list[str]) -> int:
        """Profile the chunks not profiled yet in the child; return how many files it wrote.

        A child that died or stopped answering is replaced (once a call) and the new one gets
        the chunks not acknowledged; those still not acknowledged keep `profiled` False.
        """
        pending = [c for c in chunks if not c.profiled]
        if not pending:  # idle flushes need no round trip
            return 0
        with self._lock:
            for attempt in (1, 2):
                try:
                    self._ensure_child(errors)
                    return self._profile(pending, errors)
                except (ProfilerDied, OSError, pickle.PickleError) as exc:
                    if self._child is not None:  # a child that closed its pipe is exiting
                        with contextlib.suppress(subprocess.TimeoutExpired):
                            self._child.wait(0.5)
                    retry = "starting another" if attempt == 1 else "the rows wait for next time"
                    errors.append(f"profiler process {self._name()} failed: {exc}; {retry}")
                    self._kill()
        return 0

    def close(self, timeout_s: float = 5.0) -> list[str]:
        """Ask the child to write what it holds and exit; kill it after timeout_s; return errors."""
        errors: list[str] = []
        if not self._lock.acquire(timeout=timeout_s):  # a flush stuck in an exchange
            busy = f"profiler process {self._name()} was still busy after {timeout_s:.1f}s"
            self._kill()
            return [f"{busy}; killed it"]
        try:
            child = self._child
            if child is None or child.poll() is not None or not self._ready:
                self._kill()  # a child not ready yet was sent no rows: it holds nothing
                return errors
            try:
                deadline = time.monotonic() + timeout_s
                self._send(("close", None), deadline)
                _, _, child_errors, _ = self._receive(deadline)
                errors.extend(child_errors)
                child.wait(max(0.0, deadline - time.monotonic()))
            except (ProfilerDied, OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"profiler process {self._name()} did not close: {exc}; killed it")
            self._kill()
            return errors
        finally:
            self._lock.release()

    def _profile(self, chunks: list[Chunk], errors: list[str]) -> int:
        """Send chunks, wait for the answer and mark the chunks the child profiled."""
        # One pickle a chunk: other threads get the GIL between them, not after all the rows.
        rows = [_dumps((c.version, c.received_at, c.features, c.outputs)) for c in chunks]
        self._await_ready(time.monotonic() + self.start_timeout_s)
        deadline = time.monotonic() + self.reply_timeout_s
        self._send(("profile", rows), deadline)
        _, written, child_errors, profiled = self._receive(deadline)
        errors.extend(child_errors)
        for chunk, done in zip(chunks, profiled, strict=True):
            chunk.profiled = chunk.profiled or done
        return int(written)

    def _await_ready(self, deadline: float) -> None:
        """Wait for a new child to say it is ready, so that its start has a deadline of its own."""
        if not self._ready:
            self._receive(deadline)
            self._ready = True

    def _ensure_child(self, errors: list[str]) -> None:
        """Start a child if none runs; report one that died since the last call."""
        if self._child is not None and self._child.poll() is not None:
            errors.append(f"profiler process {self._name()} died; starting another")
            self._kill()
        if self._child is None:
            self._spawn()

    def _spawn(self) -> None:
        """Start the next generation of the child and send it its writer's settings."""
        self.generation += 1
        path = os.environ.get("PYTHONPATH")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, path]))}
        self._child = subprocess.Popen(
            [sys.executable, "-m", "mlops.monitoring.profiler_child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            env=env,
        )  # stderr: the parent's, so that the child's errors show
        assert self._child.stdin is not None
        os.set_blocking(self._child.stdin.fileno(), False)  # writes wait in select, with a deadline
        config = {**self._config, "writer_id": f"{self.writer_id}-p{self.generation}"}
        self._ready = False
        self._send(("init", config), time.monotonic() + self.start_timeout_s)

    def _kill(self) -> None:
        """Kill the child (if it still runs) and reap it."""
        child, self._child = self._child, None
        if child is None:
            return
        if child.poll() is None:
            child.kill()
        child.wait()
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()

    def _name(self) -> str:
        child = self._child
        if child is None:
            return f"{self.writer_id}-p{self.generation}"
        code = child.poll()
        state = "running" if code is None else f"exit code {code}"
        return f"{self.writer_id}-p{self.generation} (pid {child.pid}, {state})"

    def _send(self, message: tuple[str, Any], deadline: float) -> None:
        """Write one framed message to the child's stdin before the deadline."""
        assert self._child is not None and self._child.stdin is not None
        data = _dumps(message)
        fd = self._child.stdin.fileno()
        for part in (memoryview(_HEADER.pack(len(data))), memoryview(data)):
            while part:
                _wait_for(fd, deadline, writing=True)
                try:
                    part = part[os.write(fd, part) :]
                except BrokenPipeError as exc:
                    raise ProfilerDied("its stdin pipe is broken") from exc

    def _receive(self, deadline: float) -> Any:
        """Read one framed message from the child's stdout before the deadline."""
        assert self._child is not None and self._child.stdout is not None
        fd = self._child.stdout.fileno()
        (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size, deadline))
        return pickle.loads(_read_exactly(fd, size, deadline))


def _wait_for(fd: int, deadline: float, *, writing: bool) -> None:
    """Wait until fd can be written (or read); raise ProfilerDied at the deadline.

    poll, not select: a busy server's descriptors pass select's limit of 1024.
    """
    poller = select.poll()
    poller.register(fd, select.POLLOUT if writing else select.POLLIN)
    if not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
        raise ProfilerDied(
            "timed out " + ("writing to it" if writing else "waiting for its answer")
        )


def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
    """Read size bytes from a pipe, waiting at most until the deadline."""
    parts, left = [], size
    while left:
        _wait_for(fd, deadline, writing=False)
        data = os.read(fd, min(left, 1 << 20))
        if not data:
            raise ProfilerDied("its stdout pipe closed (EOF)")
        parts.append(data)
        left -= len(data)
    return b"".join(parts)
