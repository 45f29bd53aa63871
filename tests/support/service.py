"""Helpers of the serving tests: trained versions, request records, metrics and a real server."""

from __future__ import annotations

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlops.contract.spec import Contract
from mlops.data.simulate import SimulationConfig, generate_day
from mlops.monitoring.profile import profile_frame, profile_to_bytes
from mlops.registry.store import ModelVersion, Registry
from mlops.release.card import build_manifest, render_model_card
from mlops.release.export import export_onnx
from mlops.release.verify import verify_export
from mlops.settings import REPO_ROOT
from mlops.training.train import TrainParams, split_by_time, train_model

MODEL = "card-fraud"


def simulated_rows(days: int = 8, rows_per_day: int = 1000, seed: int = 11) -> pd.DataFrame:
    """Return labelled simulator rows (features, id, timestamp and target)."""
    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=seed)
    frames = []
    for day in range(days):
        features, labels = generate_day(config, day)
        frames.append(features.merge(labels[["transaction_id", "is_fraud"]], on="transaction_id"))
    return pd.concat(frames, ignore_index=True)


def register_trained(
    registry: Registry, contract: Contract, rows: pd.DataFrame, workdir: Path, *, seed: int
) -> ModelVersion:
    """Train a small model, export, verify and register it (no promotion)."""
    splits = split_by_time(rows)
    model = train_model(splits, contract, TrainParams(max_epochs=2, seed=seed))
    path = export_onnx(model, contract, workdir / f"model-{seed}.onnx")
    report = verify_export(path, model, contract, splits.holdout)
    manifest = build_manifest(
        model=model, contract=contract, data={"uri": "test"}, metrics={}, slice_metrics=[],
        verification=report.to_dict(), flow_run_id=None,
    )  # fmt: skip
    reference = profile_to_bytes(profile_frame(splits.train[list(contract.feature_names)]))
    return registry.register(
        MODEL, onnx_path=path, manifest=manifest, reference_profile=reference,
        model_card=render_model_card(manifest),
    )  # fmt: skip


@functools.lru_cache(maxsize=1)
def _record_pool() -> str:
    rows = simulated_rows(days=1, rows_per_day=2000, seed=23).drop(columns=["is_fraud"])
    return rows.to_json(orient="records", date_format="iso")


def served_records(count: int, start: int = 0) -> list[dict[str, Any]]:
    """Return JSON-ready request records (simulator rows without the label), with unique ids."""
    pool = json.loads(_record_pool())
    assert start + count <= len(pool), "ask the pool for fewer records"
    return pool[start : start + count]


@functools.cache
def _service_app() -> Any:
    # Built once: each app registers BentoML's request metrics, and twice is an error. Every
    # lifespan creates a new service instance, which reads the MLOPS_* environment again.
    from serving.service import PredictionService

    return PredictionService.to_asgi()


@contextmanager
def open_client() -> Iterator[Any]:
    """Run the service in process with the current MLOPS_* environment; yield a TestClient."""
    from starlette.testclient import TestClient

    with TestClient(_service_app()) as test_client:
        yield test_client


def counter_value(counter: Any, **labels: str) -> float:
    """Return an in-process prometheus counter's value for the given labels (0 if unseen)."""
    for family in counter.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels == labels:
                return float(sample.value)
    return 0.0


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """Return a sample of a /metrics text by full sample name and exact labels (None if absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return None


# -- a real `bentoml serve` process -----------------------------------------------------------


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(home: Path, registry_url: str | Path, **extra: str) -> dict[str, str]:
    """Return the environment of a served process: every store under `home`, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    return env | {
        "MLOPS_HOME": str(home),
        "MLOPS_REGISTRY_URL": str(registry_url),
        "MLOPS_LOG_FLUSH_S": "0.5",
        "MLOPS_PREFER_GPU": "false",
        "BENTOML_HOME": str(home / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "WHYLOGS_NO_ANALYTICS": "1",
        **extra,
    }


@dataclass
class BentoServer:
    """A `bentoml serve` subprocess in its own process group, logging to a file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        """Return the end of the server's output, for assertion messages."""
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float) -> None:
        """Poll /readyz until it answers 200; fail early if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                code = self.process.returncode
                pytest.fail(f"bentoml serve exited with {code}:\n{self.log_tail()}")
            with suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        pytest.fail(f"bentoml serve not ready after {timeout_s}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30) -> int:
        """Stop gracefully with SIGTERM; kill its process group if it does not exit in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        with suppress(ProcessLookupError):  # a worker outliving its arbiter
            os.killpg(self.process.pid, signal.SIGKILL)
        return int(self.process.returncode)


@contextmanager
def bentoml_server(
    env: dict[str, str],
    log_path: Path,
    *,
    ready_timeout_s: float = 90,
    target: str = "serving.service:PredictionService",
    cwd: Path = REPO_ROOT,
) -> Iterator[BentoServer]:
    """Run `bentoml serve <target>` (the service, or a built Bento's tag); stop it after."""
    port = free_port()
    command = [
        str(Path(sys.executable).parent / "bentoml"), "serve", target,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    server = BentoServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        server.wait_ready(ready_timeout_s)
        yield server
    finally:
        server.stop()
