"""The registry on a real S3 API (moto's server): alias changes stay compare-and-swap.

S3 has no rename and no lock: the registry's lock file and break markers are conditional writes
(`If-None-Match: *`), and these tests fail when they are plain writes.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import threading
import time
import uuid
from pathlib import Path

import fsspec
import onnx
import pytest
from onnx import TensorProto, helper

from mlops.registry.locking import _break_lock, read_lock
from mlops.registry.owner import this_process
from mlops.registry.store import Registry
from tests.support.lock_race import race_for_lock

pytestmark = pytest.mark.slow
MODEL = "fraud"
WORKERS = 8
INCREMENTS = 3


@pytest.fixture
def onnx_path(tmp_path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


def _set_aliases(root: str, worker: int, barrier) -> None:
    """Set an alias INCREMENTS times as `worker-<n>`, each a read-modify-write under the lock."""
    registry = Registry(root, lock_timeout_s=60)
    barrier.wait(timeout=60)  # start together, so the writers really contend
    for _ in range(INCREMENTS):
        registry.set_alias(MODEL, f"by-{worker}", "v1", actor=f"worker-{worker}")


def test_eight_processes_changing_aliases_on_s3_lose_no_update(s3_env, onnx_path):
    root = s3_env.fresh_url("registry")
    registry = Registry(root)
    registry.register(
        MODEL, onnx_path=onnx_path, manifest={}, reference_profile=b"ref", model_card="# m"
    )

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    workers = [
        context.Process(target=_set_aliases, args=(root, i, barrier)) for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * WORKERS

    # A lost update shows as a revision written twice, a missing alias or a missing event.
    total = WORKERS * INCREMENTS
    state = registry.aliases(MODEL)
    assert state.revision == total
    assert sorted(state.aliases) == sorted(f"by-{i}" for i in range(WORKERS))
    changes = [e for e in registry.history(MODEL) if e["event"] == "alias_set"]
    assert sorted(e["revision"] for e in changes) == list(range(1, total + 1))
    actors = sorted(e["actor"] for e in changes)
    assert actors == sorted(f"worker-{i}" for i in range(WORKERS) for _ in range(INCREMENTS))
    # Every write went to the bucket: a lock file was taken and released each time.
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    assert not fs.exists(f"{root}/{MODEL}/.lock".removeprefix("s3://"))


def _write_dead_lock(fs, path: str) -> None:
    """Leave a lock as a process of this host that has exited would have left it."""
    dead = dataclasses.replace(this_process(), pid=2**22 + 7)  # above any pid_max in use here
    doc = {"owner": dead.label(), "acquired_at": time.time(), "token": uuid.uuid4().hex}
    fs.pipe_file(path, json.dumps({**doc, "holder": dead.to_dict()}).encode())


def _break_together(fs, path: str, breakers: int) -> list[bool]:
    """Let `breakers` threads break the stale lock at `path` at once; return what each did."""
    state = read_lock(fs, path)
    assert state is not None and state.stale(time.time())
    barrier = threading.Barrier(breakers)
    broke: list[bool] = []

    def breaker() -> None:
        barrier.wait()
        broke.append(_break_lock(fs, path, state))

    threads = [threading.Thread(target=breaker) for _ in range(breakers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return broke


def test_a_stale_lock_on_s3_is_broken_by_exactly_one_of_two_breakers(s3_env):
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    for _ in range(5):
        path = f"{s3_env.bucket}/locks-{uuid.uuid4().hex[:8]}/.lock"
        _write_dead_lock(fs, path)
        assert sorted(_break_together(fs, path, 2)) == [False, True]
        assert read_lock(fs, path) is None


def test_contenders_for_a_dead_lock_on_s3_never_hold_it_together(s3_env):
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    path = f"{s3_env.bucket}/contended-{uuid.uuid4().hex[:8]}/.lock"
    entered, overlaps = race_for_lock(
        fs, path, rounds=3, contenders=4, before_round=lambda: _write_dead_lock(fs, path),
        timeout_s=30, hold_s=0.01,
    )  # fmt: skip

    assert len(entered) == 3 * 4
    assert max(overlaps) == 1
