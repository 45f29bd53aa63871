"""Say which process holds a lock or writes a staging folder, and whether it still runs.

A process is named by its host, its pid and its start time. Pids only compare within one pid
space (one boot of one kernel, one pid namespace), so a holder also records that space; a holder
in another space is on "another host" here, whatever its host name, and its liveness is unknown.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Owner:
    """A process: host name, pid space, pid and start time (clock ticks since boot, if known)."""

    host: str
    pid: int
    pid_space: str | None = None
    started: int | None = None

    def label(self) -> str:
        """Return `host:pid`, as messages show a holder."""
        return f"{self.host}:{self.pid}"

    def to_dict(self) -> dict[str, Any]:
        """Return the fields as JSON-safe values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, doc: Any) -> Owner | None:
        """Read an owner written by `to_dict`; None when `doc` is not one."""
        try:
            pid = int(doc["pid"])
            started = doc.get("started")
            space = doc.get("pid_space")
            return cls(
                str(doc["host"]),
                pid,
                None if space is None else str(space),
                None if started is None else int(started),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            return None


def this_process() -> Owner:
    """Return the owner record of the running process."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, _pid_space(), _start_ticks(pid))


def is_alive(owner: Owner) -> bool | None:
    """Tell whether an owner still runs: True, False, or None when this host cannot tell."""
    if owner.host != socket.gethostname() or owner.pid_space != _pid_space():
        return None
    if owner.pid <= 0:
        return False
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs, as another user
    state, started = _proc_stat(owner.pid)
    if state == "Z":  # killed, not yet reaped by its parent
        return False
    # A pid the kernel gave to a newer process after the owner died: the start times differ.
    return not (owner.started is not None and started is not None and started != owner.started)


@functools.cache
def _pid_space() -> str | None:
    """Return this boot's id and pid namespace (Linux); None where the system has neither."""
    parts = []
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as f:
        parts.append(f.read().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return "/".join(parts) or None


def _start_ticks(pid: int) -> int | None:
    """Return when a process started, in clock ticks since boot (Linux); None if unknown."""
    return _proc_stat(pid)[1]


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """Return a process's state letter and start time from /proc; (None, None) if unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None, None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None, None
