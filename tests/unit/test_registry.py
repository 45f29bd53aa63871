"""Tests for the model registry: immutable versions, verified reads, aliases under CAS."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import fsspec
import onnx
import pytest
from onnx import TensorProto, helper

from mlops.registry.locking import STALE_LOCK_S
from mlops.registry.store import (
    AliasNotSetError,
    ConcurrentUpdateError,
    IntegrityError,
    Registry,
    RegistryError,
    VersionNotFoundError,
)

FIXED_TIME = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WORKERS, INCREMENTS = 8, 10


@pytest.fixture
def onnx_path(tmp_path: Path) -> Path:
    """Write a tiny Identity ONNX model."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.fixture
def memory_root():
    """Give a fresh memory:// root and clean it afterwards."""
    root = f"memory://registry-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture(params=["local", "memory"])
def registry(request, tmp_path: Path, memory_root: str) -> Registry:
    """Give a registry on a local folder and on memory://."""
    root = str(tmp_path / "registry") if request.param == "local" else memory_root
    return Registry(root, clock=lambda: FIXED_TIME)


def _register(registry: Registry, onnx_path: Path, model: str = "fraud", **manifest):
    return registry.register(
        model,
        onnx_path=onnx_path,
        manifest={"metrics": {"auc": 0.9}, **manifest},
        reference_profile=b"reference-bytes",
        model_card="# Fraud model",
    )


def _put(registry: Registry, relative: str, data: bytes) -> None:
    """Write a file under the registry root, as another (crashed) writer would have."""
    path = f"{registry._base}/{relative}"
    registry._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    registry._fs.pipe_file(path, data)


def _tamper(registry: Registry, model: str, version: str) -> None:
    fs, path = fsspec.core.url_to_fs(registry.get(model, version).uri)
    fs.pipe_file(f"{path}/model.onnx", b"not the registered model")


def test_register_then_read_back_returns_the_same_files(registry, onnx_path):
    version = _register(registry, onnx_path)

    assert version.version == "v1"
    assert registry.get("fraud", "v1") == version
    assert registry.read_onnx("fraud", "v1") == onnx_path.read_bytes()
    assert registry.read_reference_profile("fraud", "v1") == b"reference-bytes"
    manifest = version.manifest
    assert manifest["metrics"] == {"auc": 0.9}
    assert manifest["created_at"] == FIXED_TIME.isoformat()
    assert manifest["onnx_sha256"] == hashlib.sha256(onnx_path.read_bytes()).hexdigest()


def test_fetch_local_gives_a_folder_with_every_file(registry, onnx_path, tmp_path):
    _register(registry, onnx_path)

    folder = registry.fetch_local("fraud", "v1", tmp_path / "fetched")

    assert (folder / "model.onnx").read_bytes() == onnx_path.read_bytes()
    assert (folder / "model_card.md").read_text() == "# Fraud model"
    assert json.loads((folder / "manifest.json").read_text())["version"] == "v1"


def test_fetch_local_on_a_local_registry_returns_the_version_folder(tmp_path, onnx_path):
    registry = Registry(str(tmp_path / "registry"))
    version = _register(registry, onnx_path)

    assert registry.fetch_local("fraud", "v1") == Path(version.uri)


def test_tampered_onnx_is_refused_naming_expected_and_actual_hash(registry, onnx_path):
    version = _register(registry, onnx_path)
    _tamper(registry, "fraud", "v1")
    actual = hashlib.sha256(b"not the registered model").hexdigest()

    with pytest.raises(IntegrityError, match=version.manifest["onnx_sha256"]) as err:
        registry.read_onnx("fraud", "v1")
    assert actual in str(err.value)
    with pytest.raises(IntegrityError):
        registry.fetch_local("fraud", "v1")


def test_versions_are_numbered_and_ordered_numerically_past_v9(registry, onnx_path):
    for _ in range(11):
        _register(registry, onnx_path)

    names = [v.version for v in registry.list_versions("fraud")]

    assert names == [f"v{i}" for i in range(1, 12)]
    assert registry.get("fraud", "v10").manifest["version"] == "v10"


def _fail_when(original, suffix: str):
    """Wrap a two-path fs/os call so it fails when its second path ends with suffix."""

    def wrapper(first, second, *args, **kwargs):
        if str(second).endswith(suffix):
            raise OSError("injected failure")
        return original(first, second, *args, **kwargs)

    return wrapper


def test_a_failure_while_staging_leaves_no_visible_version(registry, onnx_path, monkeypatch):
    real_pipe = registry._fs.pipe_file

    def failing_pipe(path, *args, **kwargs):
        if path.endswith("manifest.json"):
            raise OSError("injected failure")
        return real_pipe(path, *args, **kwargs)

    monkeypatch.setattr(registry._fs, "pipe_file", failing_pipe)
    with pytest.raises(OSError, match="injected"):
        _register(registry, onnx_path)
    monkeypatch.undo()

    assert registry.list_versions("fraud") == []
    assert _register(registry, onnx_path).version == "v1"
    assert [e["event"] for e in registry.history("fraud")] == ["registered"]


def test_a_failure_while_publishing_leaves_no_visible_version(registry, onnx_path, monkeypatch):
    if registry._local:
        monkeypatch.setattr(os, "rename", _fail_when(os.rename, "v1"))
    else:
        monkeypatch.setattr(registry._fs, "copy", _fail_when(registry._fs.copy, "manifest.json"))
    with pytest.raises(OSError, match="injected"):
        _register(registry, onnx_path)
    monkeypatch.undo()

    assert registry.list_versions("fraud") == []
    assert not registry._fs.exists(f"{registry._base}/fraud/versions/v1")
    assert _register(registry, onnx_path).version == "v1"


def test_a_crash_mid_publish_is_invisible_and_its_number_is_skipped(registry, onnx_path):
    # What a killed process leaves behind: a staging folder and a version folder without manifest.
    _register(registry, onnx_path)
    _put(registry, "fraud/versions/.staging-dead/model.onnx", b"partial")
    _put(registry, "fraud/versions/v2/model.onnx", b"partial")

    assert [v.version for v in registry.list_versions("fraud")] == ["v1"]
    with pytest.raises(VersionNotFoundError, match="versions: v1"):
        registry.get("fraud", "v2")
    assert _register(registry, onnx_path).version == "v3"


def test_unknown_version_error_lists_existing_versions(registry, onnx_path):
    _register(registry, onnx_path)
    _register(registry, onnx_path)

    with pytest.raises(VersionNotFoundError, match=r"no version 'v7'.*versions: v1, v2"):
        registry.get("fraud", "v7")
    with pytest.raises(VersionNotFoundError, match="none yet"):
        registry.get("other", "v1")


def test_unknown_alias_error_lists_aliases_that_are_set(registry, onnx_path):
    _register(registry, onnx_path)
    registry.set_alias("fraud", "challenger", "v1")

    with pytest.raises(AliasNotSetError, match=r"no alias 'champion'.*challenger=v1"):
        registry.get("fraud", "champion")


def test_invalid_names_are_refused(registry, onnx_path):
    with pytest.raises(RegistryError, match="invalid model name"):
        _register(registry, onnx_path, model="../escape")
    _register(registry, onnx_path)
    with pytest.raises(RegistryError, match="looks like a version"):
        registry.set_alias("fraud", "v2", "v1")


def test_aliases_start_empty_and_each_change_bumps_the_revision(registry, onnx_path):
    assert registry.aliases("fraud").revision == 0
    assert registry.aliases("fraud").aliases == {}
    _register(registry, onnx_path)

    first = registry.set_alias("fraud", "challenger", "v1", actor="ci", reason="new")
    second = registry.set_alias("fraud", "shadow", "challenger")

    assert (first.revision, second.revision) == (1, 2)
    assert registry.aliases("fraud") == second
    assert second.aliases == {"challenger": "v1", "shadow": "v1"}
    assert registry.get("fraud", "shadow").version == "v1"


def test_a_stale_expected_revision_is_refused(registry, onnx_path):
    _register(registry, onnx_path)
    state = registry.set_alias("fraud", "champion", "v1")

    with pytest.raises(ConcurrentUpdateError, match="revision 1, not 0"):
        registry.set_alias("fraud", "champion", "v1", expected_revision=0)
    registry.set_alias("fraud", "champion", "v1", expected_revision=state.revision)


def test_promote_moves_champion_to_previous_and_clears_challenger(registry, onnx_path):
    for _ in range(2):
        _register(registry, onnx_path)
    registry.promote("fraud", "v1", actor="alice", reason="first")
    registry.set_alias("fraud", "challenger", "v2")

    state = registry.promote("fraud", "challenger", actor="bob", reason="better auc")

    assert state.aliases == {"champion": "v2", "previous": "v1"}
    last = registry.history("fraud")[-1]
    assert last["event"] == "promoted"
    assert (last["from"], last["to"], last["actor"], last["reason"]) == (
        "v1",
        "v2",
        "bob",
        "better auc",
    )
    assert last["revision"] == state.revision
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote("fraud", "v2", actor="bob", reason="again")


def test_rollback_swaps_champion_and_previous(registry, onnx_path):
    for _ in range(2):
        _register(registry, onnx_path)
    registry.promote("fraud", "v1", actor="a", reason="r")
    registry.promote("fraud", "v2", actor="a", reason="r")

    state = registry.rollback("fraud", actor="oncall", reason="latency regression")

    assert state.aliases == {"champion": "v1", "previous": "v2"}
    events = [(e["event"], e["from"], e["to"]) for e in registry.history("fraud")]
    assert events == [
        ("registered", None, "v1"),
        ("registered", None, "v2"),
        ("promoted", None, "v1"),
        ("promoted", "v1", "v2"),
        ("rolled_back", "v2", "v1"),
    ]


def test_rollback_without_previous_says_what_is_set(registry, onnx_path):
    _register(registry, onnx_path)
    registry.promote("fraud", "v1", actor="a", reason="r")

    with pytest.raises(AliasNotSetError, match=r"no 'previous'.*champion=v1"):
        registry.rollback("fraud", actor="a", reason="r")


def _increment_aliases(registry: Registry, worker: int) -> int:
    """Change the aliases INCREMENTS times, retrying on conflicts; return the conflicts seen."""
    done = conflicts = 0
    while done < INCREMENTS:
        revision = registry.aliases("fraud").revision
        try:
            registry.set_alias(
                "fraud", "champion", "v1", expected_revision=revision, actor=f"worker-{worker}"
            )
        except ConcurrentUpdateError:
            conflicts += 1
            continue
        done += 1
    return conflicts


def _process_worker(root: str, worker: int, barrier) -> None:
    barrier.wait(timeout=60)  # start together, so the writers really contend
    _increment_aliases(Registry(root), worker)


def _assert_no_lost_update(registry: Registry) -> None:
    total = WORKERS * INCREMENTS
    assert registry.aliases("fraud").revision == total
    changes = [e for e in registry.history("fraud") if e["event"] == "alias_set"]
    assert sorted(e["revision"] for e in changes) == list(range(1, total + 1))


def test_concurrent_threads_never_lose_an_alias_update(registry, onnx_path):
    _register(registry, onnx_path)
    threads = [
        threading.Thread(target=_increment_aliases, args=(registry, i)) for i in range(WORKERS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    _assert_no_lost_update(registry)


def test_concurrent_processes_never_lose_an_alias_update(tmp_path, onnx_path):
    root = str(tmp_path / "registry")
    registry = Registry(root)
    _register(registry, onnx_path)

    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(WORKERS)
    workers = [
        context.Process(target=_process_worker, args=(root, i, barrier)) for i in range(WORKERS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [w.exitcode for w in workers] == [0] * WORKERS

    _assert_no_lost_update(registry)


def test_a_stale_lock_is_broken(registry, onnx_path):
    stale = {"owner": "crashed-host:1", "acquired_at": time.time() - STALE_LOCK_S - 1}
    _put(registry, "fraud/.lock", json.dumps(stale).encode())

    assert _register(registry, onnx_path).version == "v1"


def test_a_held_lock_times_out_naming_its_owner(tmp_path, onnx_path):
    registry = Registry(str(tmp_path / "registry"), lock_timeout_s=0.2)
    _register(registry, onnx_path)
    held = {"owner": "busy-host:42", "acquired_at": time.time()}
    (tmp_path / "registry" / "fraud" / ".lock").write_text(json.dumps(held))

    with pytest.raises(ConcurrentUpdateError, match="busy-host:42"):
        registry.promote("fraud", "v1", actor="a", reason="r")
