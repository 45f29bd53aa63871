"""`mlops serve`: relative MLOPS_HOME means what it means for `mlops train`; SIGTERM stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from stack import processes
from stack.cli import absolute_paths
from tests.support.service import MODEL, server_env

pytestmark = pytest.mark.slow


def test_relative_paths_become_absolute_from_the_callers_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = absolute_paths(
        {"MLOPS_HOME": "state", "MLOPS_REGISTRY_URL": "s3://bucket/reg", "PATH": "x",
         "MLOPS_PROFILES_URL": "../profiles", "MLOPS_SERVING_URL": "http://127.0.0.1:3000"},
        ".mlops",
    )  # fmt: skip
    assert env["MLOPS_HOME"] == str(tmp_path / "state")
    assert env["MLOPS_PROFILES_URL"] == str(tmp_path.parent / "profiles")
    assert env["MLOPS_REGISTRY_URL"] == "s3://bucket/reg" and env["PATH"] == "x"
    assert env["MLOPS_SERVING_URL"] == "http://127.0.0.1:3000"
    assert absolute_paths({}, ".mlops")["MLOPS_HOME"] == str(tmp_path / ".mlops")


def test_mlops_serve_finds_a_relative_home_and_stops_on_sigterm_to_its_pid(
    serving_home: Path, tmp_path: Path
) -> None:
    shutil.copytree(serving_home / "registry", tmp_path / "state" / "registry")
    env = server_env(tmp_path / "state", "unused") | {"MLOPS_HOME": "state"}
    del env["MLOPS_REGISTRY_URL"]  # the registry is <home>/registry, home relative to cwd
    port = processes.free_port()
    command = [str(Path(sys.executable).parent / "mlops"), "serve", "--port", str(port)]
    log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 (closed in finally)
    server = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        ready = processes.http_ok(f"http://127.0.0.1:{port}/readyz")
        processes.wait_until(ready, 90, f"mlops serve on {port} to be ready")
        model = httpx.get(f"http://127.0.0.1:{port}/model", timeout=5).json()
        assert (model["model"], model["version"]) == (MODEL, "v1")

        server.send_signal(signal.SIGTERM)  # the pid alone, as `kill -TERM <pid>` does
        assert server.wait(timeout=40) is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _answers(port):
            time.sleep(0.5)
        assert not _answers(port), "bentoml serve still answers after SIGTERM to mlops serve"
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()
    assert "Serving card-fraud v1" in (tmp_path / "serve.log").read_text()


def _answers(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)
        return True
    except httpx.HTTPError:
        return False
