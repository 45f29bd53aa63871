"""A real Dask cluster for tests: a `dask scheduler` and `dask worker` processes from the CLI.

Each process runs in a session of its own with its output in a log file (stack.processes), so
that the block's end stops it and every descendant (a worker's nanny starts the worker process).
They run outside the checkout, as on another machine: workers import the project as installed.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from stack import processes, proctree


@dataclass
class DaskCluster:
    """The scheduler's address, its processes, and the workers that had joined when it started."""

    address: str
    scheduler: processes.Child
    workers: list[processes.Child]
    joined: dict[str, int] = field(default_factory=dict)  # worker address -> its pid

    def children(self) -> list[processes.Child]:
        """Return the scheduler and worker processes."""
        return [self.scheduler, *self.workers]

    def process_of(self, address: str) -> processes.Child:
        """Return the `dask worker` process that started the worker at `address`."""
        pid = self.joined[address]
        return next(c for c in self.workers if pid in proctree.descendants(c.process.pid))

    def logs(self) -> str:
        """Return the end of every process's log, each under its name."""
        return "\n".join(f"--- {c.name}:\n{c.log_tail(3000)}" for c in self.children())


def dask_command(*args: str) -> list[str]:
    """Return a command of the `dask` CLI installed next to this Python."""
    return [str(Path(sys.executable).parent / "dask"), *args]


def scheduler_command(scheduler_file: Path) -> list[str]:
    """Return the command of a scheduler on a free port of 127.0.0.1, without dashboard."""
    return dask_command(
        "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
        "--scheduler-file", str(scheduler_file),
    )  # fmt: skip


def worker_command(scheduler_file: Path, local_directory: Path, name: str) -> list[str]:
    """Return the command of one single-threaded worker process (under its nanny)."""
    return dask_command(
        "worker", "--scheduler-file", str(scheduler_file), "--name", name,
        "--host", "127.0.0.1", "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
        "--local-directory", str(local_directory),
    )  # fmt: skip


@contextmanager
def dask_cluster(
    directory: Path, workers: int = 2, *, env: dict[str, str], ready_timeout_s: float = 60
) -> Iterator[DaskCluster]:
    """Run a scheduler on 127.0.0.1 and `workers` single-threaded workers until the block ends.

    The block starts once the scheduler counts every worker; logs go to `directory`. At its end
    each process gets SIGTERM, then SIGKILL after 10 s, workers first.
    """
    directory.mkdir(parents=True, exist_ok=True)
    scheduler_file = directory / "scheduler.json"
    with ExitStack() as stack:
        scheduler = stack.enter_context(
            processes.running(
                "dask-scheduler", scheduler_command(scheduler_file),
                log_path=directory / "scheduler.log", env=env, cwd=directory,
                ready=lambda: _scheduler_address(scheduler_file) is not None,
                ready_timeout_s=ready_timeout_s, stop_timeout_s=10,
            )
        )  # fmt: skip
        cluster = DaskCluster(str(_scheduler_address(scheduler_file)), scheduler, [])
        for i in range(workers):
            name = f"worker-{i}"
            worker = processes.running(
                f"dask-{name}", worker_command(scheduler_file, directory / name, name),
                log_path=directory / f"{name}.log", env=env, cwd=directory, stop_timeout_s=10,
            )  # fmt: skip
            cluster.workers.append(stack.enter_context(worker))
        cluster.joined = wait_for_workers(cluster, workers, ready_timeout_s)
        yield cluster


def worker_pids(address: str) -> dict[str, int]:
    """Return the process id of each worker connected to the scheduler, by worker address."""
    from distributed import Client

    # Not the default client: the flow's task runner must find its cluster on its own.
    with Client(address, set_as_default=False, timeout=10) as client:
        return dict(client.run(os.getpid))


def wait_for_workers(cluster: DaskCluster, count: int, timeout_s: float) -> dict[str, int]:
    """Wait until the scheduler counts `count` workers; return their addresses and pids."""
    deadline = time.monotonic() + timeout_s
    while True:
        exited = [c.name for c in cluster.children() if not c.alive()]
        if exited:
            raise processes.StackError(f"{exited} exited:\n{cluster.logs()}")
        found = worker_pids(cluster.address)
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise processes.StackError(
                f"{len(found)} of {count} Dask workers joined {cluster.address} "
                f"in {timeout_s:.0f} s:\n{cluster.logs()}"
            )
        time.sleep(0.5)


def _scheduler_address(scheduler_file: Path) -> str | None:
    try:
        return str(json.loads(scheduler_file.read_text())["address"])
    except (OSError, ValueError, KeyError):
        return None


@contextmanager
def killed_when_busy(cluster: DaskCluster, address: str) -> Iterator[list[str]]:
    """Kill the worker at `address` and its nanny (SIGKILL) once the scheduler gives it a task.

    The list yielded receives the keys the worker held when it was killed (none: never killed).
    """
    victim = cluster.process_of(address)
    held: list[str] = []
    done = threading.Event()

    def watch() -> None:
        from distributed import Client

        with Client(cluster.address, set_as_default=False, timeout=10) as client:
            while not done.wait(0.02):
                keys = client.processing(workers=[address]).get(address)
                if keys:
                    proctree.signal_group(victim.process.pid, signal.SIGKILL)
                    held.extend(str(key) for key in keys)
                    return

    watcher = threading.Thread(target=watch, name=f"kill-{victim.name}", daemon=True)
    watcher.start()
    try:
        yield held
    finally:
        done.set()
        watcher.join(15)
