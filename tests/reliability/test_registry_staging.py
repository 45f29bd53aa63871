"""Staging folders left by killed registrations are cleaned; those still being written are not."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from mlops.registry.owner import Owner, this_process
from mlops.registry.staging import STALE_STAGING_S
from mlops.registry.store import Registry

MODEL = "fraud"
# Stages a version under argv[1] the way the registry does, then hangs (to be killed) mid-upload.
WRITER = """
import sys, time, fsspec
from mlops.registry.staging import claim_staging
fs = fsspec.filesystem("file")
claim_staging(fs, sys.argv[1])
with open(sys.argv[1] + "/model.onnx", "wb") as f:
    f.write(b"truncated onnx")
print("staged", flush=True)
time.sleep(120)
"""


def _onnx(path: Path) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def _stage(root: Path, name: str, *, owner: Owner | None, age_s: float = 0.0) -> Path:
    """Leave a staging folder with a partial model, its writer `owner`, last changed age_s ago."""
    folder = root / MODEL / "versions" / f".staging-{name}"
    folder.mkdir(parents=True)
    if owner is not None:
        doc = {"holder": owner.to_dict(), "created_at": time.time() - age_s}
        (folder / ".owner.json").write_text(json.dumps(doc))
    (folder / "model.onnx").write_bytes(b"truncated")
    stamp = time.time() - age_s
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (stamp, stamp))
    return folder


def _writer(folder: Path) -> subprocess.Popen:
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "staged"
    return child


def test_registering_cleans_staging_of_gone_writers_and_keeps_live_ones(tmp_path):
    root = tmp_path / "registry"
    versions = root / MODEL / "versions"
    versions.mkdir(parents=True)
    killed = _writer(versions / ".staging-killed")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    running = _writer(versions / ".staging-running")
    old = STALE_STAGING_S + 60
    exited = dataclasses.replace(this_process(), pid=killed.pid, started=None)
    elsewhere = dataclasses.replace(this_process(), host="other-host")
    gone = [
        versions / ".staging-killed",
        _stage(root, "exited-writer", owner=exited),
        _stage(root, "old-without-owner", owner=None, age_s=old),
        _stage(root, "old-from-another-host", owner=elsewhere, age_s=old),
    ]
    kept = [
        versions / ".staging-running",
        _stage(root, "fresh-without-owner", owner=None),
        _stage(root, "fresh-from-another-host", owner=elsewhere),
        _stage(root, "old-but-its-writer-runs", owner=this_process(), age_s=old),
    ]
    registry = Registry(str(root))

    try:
        version = registry.register(
            MODEL,
            onnx_path=_onnx(tmp_path / "m.onnx"),
            manifest={},
            reference_profile=b"ref",
            model_card="# m",
        )
    finally:
        running.kill()
        running.wait()

    assert [p.name for p in gone if p.exists()] == []
    assert [p.name for p in kept if not p.exists()] == []
    assert sorted(p.name for p in (versions / version.version).iterdir()) == [
        "manifest.json",
        "model.onnx",
        "model_card.md",
        "reference.bin",
    ]
