"""Helpers of the serving tests: trained versions, request records, metrics and a real server."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.simulate import SimulationConfig, labelled_rows
from mlops.registry.store import ModelVersion, Registry
from mlops.release.build import train_and_register
from mlops.settings import DEFAULT_CONTRACT, REPO_ROOT, TELEMETRY_OPT_OUTS
from mlops.training.train import TrainParams
from stack import processes

MODEL = "card-fraud"


def simulated_rows(days: int = 8, rows_per_day: int = 1000, seed: int = 11) -> pd.DataFrame:
    """Return labelled simulator rows (features, id, timestamp and target)."""
    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=seed)
    return labelled_rows(config)


def register_trained(
    registry: Registry, contract: Contract, rows: pd.DataFrame, workdir: Path, *, seed: int
) -> ModelVersion:
    """Train a small model and register it as train-model does (no alias, no promotion)."""
    return train_and_register(
        registry, MODEL, contract, rows, TrainParams(max_epochs=2, seed=seed),
        actor="tests", reason="serving tests' fixture", data_uri="test",
        workdir=workdir / f"model-{seed}",
    ).version  # fmt: skip


@functools.cache
def fixture_serving_home(basetemp: Path) -> Path:
    """Return an MLOPS_HOME whose registry holds v1 (champion) and v2 (registered, not promoted).

    Trained once per test session (keyed by its base temporary folder): every test folder that
    serves the fixture registry shares it instead of training its own.
    """
    home = basetemp / "serving-home"
    registry = Registry(str(home / "registry"))
    contract = load_contract(DEFAULT_CONTRACT)
    rows = simulated_rows()
    first = register_trained(registry, contract, rows, basetemp / "serving-export", seed=1)
    register_trained(registry, contract, rows, basetemp / "serving-export", seed=2)
    registry.promote(MODEL, first.version, actor="test", reason="fixture")
    return home


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


def server_env(home: Path, registry_url: str | Path, **extra: str) -> dict[str, str]:
    """Return the environment of a served process: every store under `home`, no telemetry."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    return env | {
        "MLOPS_HOME": str(home),
        "MLOPS_REGISTRY_URL": str(registry_url),
        "MLOPS_LOG_FLUSH_S": "0.5",
        "MLOPS_PREFER_GPU": "false",
        "BENTOML_HOME": str(home / "bentoml"),
        **TELEMETRY_OPT_OUTS,
        **extra,
    }


def bentoml_server(
    env: dict[str, str],
    log_path: Path,
    *,
    ready_timeout_s: float = 90,
    target: str = "serving.service:PredictionService",
    cwd: Path = REPO_ROOT,
) -> AbstractContextManager[processes.Child]:
    """Run `bentoml serve <target>` (the service, or a built Bento's tag) until the block ends.

    The block starts once /readyz answers; `stop()` (SIGTERM, SIGKILL after 30 s) gives the code.
    """
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(Path(sys.executable).parent / "bentoml"), "serve", target,
        "--host", "127.0.0.1", "--port", str(port),
    ]  # fmt: skip
    return processes.running(
        "bentoml-serve", command, log_path=log_path, env=env, cwd=cwd, url=url,
        ready=processes.http_ok(f"{url}/readyz"), ready_timeout_s=ready_timeout_s,
        stop_timeout_s=30,
    )  # fmt: skip
