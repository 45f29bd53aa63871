"""Train across several devices: a Lightning DDP process group launched with torchrun.

Lightning's DDP re-runs the current command in every rank; inside a flow run that would be the
whole flow. So the fit runs as its own process group: the parent writes the encoded arrays and
the fitted preprocessing to a job directory, `torchrun` starts one process per device running
`python -m mlops.training.rank <job dir>` (`mlops.training.rank`), and rank 0 writes the trained
weights back.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

TIMEOUT_S = 6 * 3600.0  # a whole process group that runs longer than this is stopped
Arrays = tuple[np.ndarray, ...]  # numeric, categorical, target[, row weights]


class DistributedTrainingError(RuntimeError):
    """A rank of a distributed fit failed, or the process group did not finish in time."""


@dataclass
class DistributedFit:
    """What rank 0 reports of a distributed fit: the trained weights and the run's figures."""

    state: dict[str, torch.Tensor]
    world_size: int
    device: str  # rank 0's device, described
    epochs: int
    best_epoch: int = -1
    best_val_loss: float = float("inf")
    history: list[dict[str, float]] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)  # ranks that reported having run

    def describe(self, strategy: str = "ddp") -> str:
        """Return e.g. "2 x cpu (ddp)"."""
        return f"{self.world_size} x {self.device} ({strategy})"


def fit_in_process_group(
    task: str,
    prep: Any,
    params: Any,
    train: Arrays,
    val: Arrays | None,
    *,
    epochs: int | None = None,
    timeout_s: float = TIMEOUT_S,
) -> DistributedFit:
    """Fit on `params.devices` devices with torchrun and return rank 0's result.

    `prep` (the fitted `Preprocessor`) and `params` (the `TrainParams`) go to every rank as they
    are, so all of them build the same network. `val` None (a refit) trains exactly `epochs`
    epochs without validation. The job directory is removed afterwards, whatever happened.
    """
    job = Path(tempfile.mkdtemp(prefix="mlops-ddp-"))
    try:
        with open(job / "job.pkl", "wb") as f:
            pickle.dump({"task": task, "prep": prep, "params": params, "epochs": epochs}, f)
        named = {f"train_{i}": a for i, a in enumerate(train)}
        named |= {f"val_{i}": a for i, a in enumerate(val or ())}
        np.savez(job / "arrays.npz", **named)  # type: ignore[arg-type]
        _launch(job, params.devices, timeout_s)
        fit = DistributedFit(**torch.load(job / "result.pt", weights_only=False))
        fit.ranks = sorted(int(p.stem.split("-")[1]) for p in job.glob("rank-*.ok"))
        return fit
    finally:
        shutil.rmtree(job, ignore_errors=True)


def _launch(job: Path, devices: int, timeout_s: float) -> None:
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={devices}", "-m", "mlops.training.rank", str(job),
    ]  # fmt: skip
    root = str(Path(__file__).resolve().parents[2])  # so every rank imports this checkout
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
    }
    with open(job / "launcher.log", "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)  # fmt: skip
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop(process)
            raise DistributedTrainingError(
                f"distributed training on {devices} devices did not finish in {timeout_s:.0f} s"
                f"; launcher log:\n{_tail(job / 'launcher.log')}"
            ) from None
        except BaseException:  # e.g. the flow run is cancelled: take the ranks down with it
            _stop(process)
            raise
    if code != 0 or not (job / "result.pt").exists():
        raise DistributedTrainingError(_failure(job, devices, code))


def _stop(process: subprocess.Popen[bytes], grace_s: float = 30.0) -> None:
    """Stop torchrun and its ranks, and wait until none of them runs.

    torchrun starts each rank in a session of its own, so signalling torchrun's group does not
    reach them, and a torchrun killed before it stopped them would leave them running: the ranks
    are found first (torchrun's descendants), asked to stop with torchrun, and whatever is left
    after `grace_s` is killed.
    """
    ranks = _descendants(process.pid)
    for pid in (process.pid, *ranks):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)  # each is the leader of its own group
    deadline = time.monotonic() + grace_s
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=grace_s)
    while any(_running(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [pid for pid in ranks if _running(pid)]
    for pid in ([process.pid] if process.poll() is None else []) + left:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
    process.wait()
    while any(_running(pid) for pid in ranks) and time.monotonic() < deadline + 5:
        time.sleep(0.05)


def _descendants(root: int) -> list[int]:
    """Return the pids of `root`'s children, their children and so on (Linux; else none)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue  # gone while we looked
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _running(pid: int) -> bool:
    """Tell whether `pid` still runs (a zombie only waits to be reaped: it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _failure(job: Path, devices: int, code: int) -> str:
    # The first to fail: torchrun then stops the others, which may log their own tracebacks.
    errors = sorted(job.glob("rank-*.error"), key=lambda p: p.stat().st_mtime_ns)
    if errors:
        rank = errors[0].stem.split("-")[1]
        return (
            f"distributed training failed in rank {rank} of {devices} (torchrun exit {code}); "
            f"rank {rank}'s log ends:\n{_tail(errors[0])}"
        )
    return (
        f"distributed training on {devices} devices failed (torchrun exit {code}); "
        f"launcher log ends:\n{_tail(job / 'launcher.log')}"
    )


def _tail(path: Path, lines: int = 30) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
