"""Registry locks after crashes: a dead holder's lock is broken at once, a live one is honoured."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import fsspec
import onnx
import pytest
from onnx import TensorProto, helper

from mlops.registry.locking import STALE_LOCK_S
from mlops.registry.owner import this_process
from mlops.registry.store import ConcurrentUpdateError, Registry
from tests.support.lock_race import race_for_lock

MODEL = "fraud"
# Holds the registry lock of MODEL under argv[1] until killed.
HOLDER = """
import sys, time, fsspec
from mlops.registry.locking import file_lock
with file_lock(fsspec.filesystem("file"), sys.argv[1], key="holder", timeout_s=10):
    print("locked", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def onnx_path(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _register(registry: Registry, onnx_path: Path):
    return registry.register(
        MODEL, onnx_path=onnx_path, manifest={}, reference_profile=b"ref", model_card="# m"
    )


def _lock_path(root: Path) -> Path:
    return root / MODEL / ".lock"


def _hold_lock(root: Path) -> subprocess.Popen:
    """Start a process that takes the model's lock; return once it holds it."""
    _lock_path(root).parent.mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(_lock_path(root))], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "locked"
    return child


def _exited_pid() -> int:
    """Return the pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_a_lock_left_by_a_killed_process_is_broken_at_once(tmp_path, onnx_path, reaped):
    root = tmp_path / "registry"
    holder = _hold_lock(root)
    holder.send_signal(signal.SIGKILL)
    if reaped:
        holder.wait()
    else:  # killed but not yet reaped by its parent: still in the process table
        time.sleep(0.3)
    registry = Registry(str(root), lock_timeout_s=2.0)

    started = time.monotonic()
    try:
        assert _register(registry, onnx_path).version == "v1"
    finally:
        holder.wait()
    assert time.monotonic() - started < 2.0
    assert not _lock_path(root).exists()


def test_a_lock_held_by_a_running_process_is_honoured_and_named(tmp_path, onnx_path):
    root = tmp_path / "registry"
    holder = _hold_lock(root)
    registry = Registry(str(root), lock_timeout_s=0.5)
    try:
        with pytest.raises(ConcurrentUpdateError) as info:
            registry.check_lock(MODEL)  # what train-model asks before it trains
        with pytest.raises(ConcurrentUpdateError):
            _register(registry, onnx_path)
    finally:
        holder.kill()
        holder.wait()

    message = str(info.value)
    assert f":{holder.pid}" in message
    assert "still running" in message
    assert registry.list_versions(MODEL) == []


def test_a_running_holder_keeps_its_lock_however_old(tmp_path, onnx_path):
    root = tmp_path / "registry"
    _write_lock(root, holder=this_process(), acquired_at=time.time() - STALE_LOCK_S - 60)

    with pytest.raises(ConcurrentUpdateError, match="kept while it runs"):
        _register(Registry(str(root), lock_timeout_s=0.3), onnx_path)
    assert _lock_path(root).exists()


def test_check_lock_breaks_a_dead_holders_lock_before_any_work(tmp_path):
    root = tmp_path / "registry"
    _write_lock(root, holder=dataclasses.replace(this_process(), pid=_exited_pid()))

    Registry(str(root), lock_timeout_s=0.5).check_lock(MODEL)

    assert not _lock_path(root).exists()


@pytest.mark.parametrize("kind", ["another host", "older release"])
def test_a_lock_that_cannot_be_checked_is_honoured_until_the_stale_age(tmp_path, onnx_path, kind):
    root = tmp_path / "registry"
    elsewhere = dataclasses.replace(this_process(), host="other-host", pid=4242)
    holder = elsewhere if kind == "another host" else None
    registry = Registry(str(root), lock_timeout_s=0.3)

    _write_lock(root, holder=holder, acquired_at=time.time() - 10)
    with pytest.raises(ConcurrentUpdateError) as info:
        _register(registry, onnx_path)
    assert "other-host:4242" in str(info.value)
    assert "broken automatically at" in str(info.value)
    if kind == "another host":
        assert "another host" in str(info.value)

    _write_lock(root, holder=holder, acquired_at=time.time() - STALE_LOCK_S - 1)
    assert _register(registry, onnx_path).version == "v1"


def test_breakers_of_one_dead_lock_never_hold_it_together(tmp_path):
    path = tmp_path / "registry" / MODEL / ".lock"
    fs = fsspec.filesystem("file")
    dead = dataclasses.replace(this_process(), pid=_exited_pid())
    entered, overlaps = race_for_lock(
        fs, str(path), rounds=15, contenders=6,
        before_round=lambda: _write_lock(tmp_path / "registry", holder=dead),
        timeout_s=10, hold_s=0.005,
    )  # fmt: skip

    assert len(entered) == 15 * 6
    assert max(overlaps) == 1


def _write_lock(root: Path, *, holder, acquired_at: float | None = None) -> None:
    """Write a lock file as a holder would have left it (None: the format without a holder)."""
    path = _lock_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    doc: dict = {"owner": "other-host:4242", "acquired_at": acquired_at or time.time()}
    if holder is not None:
        doc |= {"owner": holder.label(), "token": uuid.uuid4().hex, "holder": holder.to_dict()}
    path.write_text(json.dumps(doc))
