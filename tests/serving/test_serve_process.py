"""A real `bentoml serve` process: clients, /metrics, and what it logged once stopped (SIGTERM)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bentoml
import httpx
import pytest

from mlops.monitoring.prediction_store import read_prediction_log, read_window_profiles
from mlops.monitoring.profile import profile_summary
from tests.support.service import MODEL, bentoml_server, metric_value, served_records, server_env

pytestmark = pytest.mark.slow

SYNC_RECORDS = served_records(5, start=0)
RAW_RECORDS = served_records(7, start=5)
SERVED_IDS = [r["transaction_id"] for r in SYNC_RECORDS + RAW_RECORDS]


@dataclass(frozen=True)
class ServedSession:
    """What one server run answered, exposed and left behind."""

    home: Path
    sync_answer: Any
    raw_answer: httpx.Response
    bad_answer: httpx.Response
    metrics: str
    exit_code: int
    log: str
    started: datetime


@pytest.fixture(scope="module")
def served(serving_home: Path, tmp_path_factory: pytest.TempPathFactory) -> ServedSession:
    """Serve the fixture registry's champion, call it with both clients, then SIGTERM it."""
    tmp = tmp_path_factory.mktemp("serve-process")
    env = server_env(tmp / "home", serving_home / "registry")
    started = datetime.now(UTC)
    with bentoml_server(env, tmp / "server.log") as server:
        with bentoml.SyncHTTPClient(server.url, timeout=30) as client:
            sync_answer = client.predict(records=SYNC_RECORDS)
        raw_answer = httpx.post(f"{server.url}/predict", json={"records": RAW_RECORDS}, timeout=30)
        bad_answer = httpx.post(f"{server.url}/predict", json={"records": []}, timeout=30)
        metrics = httpx.get(f"{server.url}/metrics", timeout=30).text
        exit_code = server.stop()
        log = server.log_tail(20_000)
    return ServedSession(
        tmp / "home", sync_answer, raw_answer, bad_answer, metrics, exit_code, log, started
    )


def test_sync_client_gets_a_prediction_per_record(served: ServedSession) -> None:
    answer = served.sync_answer
    assert isinstance(answer, dict), type(answer)  # the client returns the parsed JSON body
    assert answer["model_version"] == "v1"
    assert [p["id"] for p in answer["predictions"]] == [r["transaction_id"] for r in SYNC_RECORDS]
    for p in answer["predictions"]:
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


def test_raw_http_gets_json_predictions_and_a_request_id_header(served: ServedSession) -> None:
    response = served.raw_answer
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers.get("x-bentoml-request-id")
    body = response.json()
    assert body["model_version"] == "v1"
    assert [p["id"] for p in body["predictions"]] == [r["transaction_id"] for r in RAW_RECORDS]


def test_bad_input_gets_400_from_the_real_server(served: ServedSession) -> None:
    assert served.bad_answer.status_code == 400
    assert served.bad_answer.json()["detail"][0]["loc"] == ["records"]


def test_metrics_expose_bentoml_requests_and_served_counts(served: ServedSession) -> None:
    text = served.metrics
    labels = {
        "endpoint": "/predict",
        "service_name": "mlops_prediction",
        "service_version": "not available",
        "runner_name": "mlops_prediction",
    }
    total = "bentoml_service_request_total"
    assert metric_value(text, total, **labels, http_response_code="200") == 2
    assert metric_value(text, total, **labels, http_response_code="400") == 1
    assert metric_value(text, total, **labels, http_response_code="500") == 0
    assert metric_value(text, "mlops_predictions_total", version="v1") == len(SERVED_IDS)
    assert metric_value(text, "mlops_rejected_requests_total", reason="invalid_input") == 1
    assert metric_value(text, "mlops_model_reloads_total", outcome="loaded") == 1
    assert metric_value(text, "mlops_model_info", version="v1", device="cpu") == 1


def test_sigterm_stops_the_server_after_its_shutdown_hook(served: ServedSession) -> None:
    assert served.exit_code == 0, served.log[-3000:]
    assert "Completed cleanup hook: shutdown" in served.log


def test_prediction_log_holds_exactly_the_served_rows(served: ServedSession) -> None:
    log = read_prediction_log(str(served.home / "predictions"), MODEL)

    assert len(log) == len(SERVED_IDS)
    assert sorted(log["transaction_id"]) == sorted(SERVED_IDS)
    assert set(log["model_version"]) == {"v1"}
    request_ids = {served.sync_answer["request_id"], served.raw_answer.json()["request_id"]}
    assert set(log["request_id"]) == request_ids
    assert (log["received_at"] >= served.started).all()


def test_profiles_of_v1_count_the_served_rows(served: ServedSession) -> None:
    now = datetime.now(UTC)
    day = timedelta(days=1)
    view = read_window_profiles(  # 300 s: the service's default profile window
        str(served.home / "profiles"), MODEL, "v1", now - day, now + day, 300
    )

    assert view is not None, list((served.home / "profiles").rglob("*"))
    summary = profile_summary(view)
    assert {"amount", "merchant_id", "channel", "prediction"} <= set(summary.index)
    assert (summary["count"] == len(SERVED_IDS)).all(), summary["count"]
