"""A challenger on trial beside the champion, on a real `bentoml serve`: shadow, canary, the end.

One server serves a private copy of the fixture registry through a shadow of v2, its end, a
canary of v2 at 20%, and that canary's end; then it is stopped and its prediction log read.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pandas as pd
import pytest

from mlops.monitoring.prediction_store import read_prediction_log
from mlops.registry.store import Registry
from mlops.release.rollout import canary_mask
from tests.support.service import MODEL, bentoml_server, metric_value, served_records, server_env

pytestmark = pytest.mark.slow

SHARE = 0.2
CANARY_REQUESTS = 5000
RESENT = 1000  # of those ids, sent again in requests of RESENT_BATCH records
RESENT_BATCH = 100
SHADOW_RECORDS = served_records(24, start=0)


@dataclass(frozen=True)
class RolloutSession:
    """What the server answered through each phase, and what it logged."""

    shadow_model: dict[str, Any]
    shadow_answers: list[dict[str, Any]]
    canary_model: dict[str, Any]
    canary_versions: dict[str, str]  # record id -> the version that answered it
    resent_answers: list[dict[str, Any]]
    canary_statuses: list[int]
    ended_model: dict[str, Any]
    ended_answers: list[dict[str, Any]]
    metrics: str
    log: pd.DataFrame
    document: dict[str, Any]


def _wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.1)


def _rollout(url: str) -> Any:
    return httpx.get(f"{url}/model", timeout=10).json().get("rollout")


def _canary_records() -> list[dict[str, Any]]:
    """Return CANARY_REQUESTS records with distinct ids (the record pool, ids rewritten)."""
    pool = served_records(2000)
    return [
        {**pool[i % len(pool)], "transaction_id": f"tx-20990101-{i:06d}"}
        for i in range(CANARY_REQUESTS)
    ]


def _post_all(url: str, bodies: list[list[dict[str, Any]]]) -> list[httpx.Response]:
    """Post every body (a list of records), 16 at a time, each on a keep-alive connection."""
    with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda r: client.post("/predict", json={"records": r}), bodies))


@pytest.fixture(scope="module")
def session(serving_home: Path, tmp_path_factory: pytest.TempPathFactory) -> RolloutSession:
    """Serve a shadow, then a canary, then neither; stop the server and read its log."""
    tmp = tmp_path_factory.mktemp("rollout-serving")
    shutil.copytree(serving_home / "registry", tmp / "registry")
    registry = Registry(str(tmp / "registry"))
    env = server_env(tmp / "home", tmp / "registry", MLOPS_RELOAD_INTERVAL_S="0.2")
    change = {"actor": "test", "reason": "rollout serving test"}
    with bentoml_server(env, tmp / "server.log") as server:
        url = server.url
        registry.start_rollout(MODEL, "v2", "shadow", **change)
        _wait_for(lambda: (_rollout(url) or {}).get("loaded") is True, "the shadow to load")
        shadow_model = httpx.get(f"{url}/model", timeout=10).json()
        shadow = _post_all(url, [SHADOW_RECORDS[i : i + 3] for i in range(0, 24, 3)])
        registry.end_rollout(MODEL, "cancelled", **change)
        _wait_for(lambda: _rollout(url) is None, "the shadow to be dropped")

        registry.start_rollout(MODEL, "v2", "canary", share=SHARE, **change)
        _wait_for(lambda: (_rollout(url) or {}).get("loaded") is True, "the canary to load")
        canary_model = httpx.get(f"{url}/model", timeout=10).json()
        records = _canary_records()
        answers = _post_all(url, [[r] for r in records])
        versions = {
            a.json()["predictions"][0]["id"]: a.json()["predictions"][0]["model_version"]
            for a in answers
            if a.status_code == 200
        }
        resent = _post_all(
            url, [records[i : i + RESENT_BATCH] for i in range(0, RESENT, RESENT_BATCH)]
        )
        registry.end_rollout(MODEL, "cancelled", **change)
        _wait_for(lambda: _rollout(url) is None, "the canary to be dropped")
        ended_model = httpx.get(f"{url}/model", timeout=10).json()
        ended = _post_all(url, [records[i : i + 5] for i in range(0, 50, 5)])
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        document = httpx.get(f"{url}/docs.json", timeout=10).json()
        assert server.stop() == 0, server.log_tail(3000)
    log = read_prediction_log(str(tmp / "home" / "predictions"), MODEL)
    return RolloutSession(
        shadow_model, [a.json() for a in shadow], canary_model, versions,
        [a.json() for a in resent], [a.status_code for a in answers + resent], ended_model,
        [a.json() for a in ended], metrics, log, document,
    )  # fmt: skip


def test_a_shadow_is_shown_loaded_and_never_answers(session: RolloutSession) -> None:
    assert session.shadow_model["version"] == "v1"
    assert session.shadow_model["rollout"] == {
        "strategy": "shadow", "version": "v2", "share": 0.0, "loaded": True, "error": None
    }  # fmt: skip
    assert {a["model_version"] for a in session.shadow_answers} == {"v1"}
    assert all(p["model_version"] is None for a in session.shadow_answers for p in a["predictions"])


def test_the_shadow_logs_every_served_record_once_per_version(session: RolloutSession) -> None:
    request_ids = {a["request_id"] for a in session.shadow_answers}
    rows = session.log[session.log["request_id"].isin(request_ids)]
    ids = sorted(r["transaction_id"] for r in SHADOW_RECORDS)

    for version in ("v1", "v2"):
        logged = rows[rows["model_version"] == version]
        assert sorted(logged["transaction_id"]) == ids, version
        assert set(logged["request_id"]) == request_ids
    pairs = rows.groupby(["request_id", "transaction_id"])["received_at"].nunique()
    assert (pairs == 1).all()  # both versions' rows carry the champion's time


def test_a_canary_answers_its_share_of_the_ids_every_request_succeeding(
    session: RolloutSession,
) -> None:
    assert session.canary_model["version"] == "v1"
    assert session.canary_model["rollout"] == {
        "strategy": "canary", "version": "v2", "share": SHARE, "loaded": True, "error": None
    }  # fmt: skip
    assert set(session.canary_statuses) == {200}
    assert len(session.canary_versions) == CANARY_REQUESTS
    share = sum(v == "v2" for v in session.canary_versions.values()) / CANARY_REQUESTS
    assert abs(share - SHARE) <= 0.03, share
    ids = list(session.canary_versions)
    routed = dict(zip(ids, canary_mask(ids, SHARE), strict=True))  # as the monitor tells them
    assert all((v == "v2") == routed[i] for i, v in session.canary_versions.items())


def test_an_id_sent_again_meets_the_same_version(session: RolloutSession) -> None:
    seen = [p for a in session.resent_answers for p in a["predictions"]]
    assert len(seen) == RESENT
    assert {a["model_version"] for a in session.resent_answers} == {"v1"}
    assert all(p["model_version"] == session.canary_versions[p["id"]] for p in seen)
    assert {p["model_version"] for p in seen} == {"v1", "v2"}  # one response, both versions


def test_the_canary_log_names_the_version_that_answered_each_record(
    session: RolloutSession,
) -> None:
    rows = session.log[session.log["transaction_id"].isin(session.canary_versions)]
    first = rows.sort_values("received_at").drop_duplicates("transaction_id")
    logged = dict(zip(first["transaction_id"], first["model_version"], strict=True))
    assert logged == session.canary_versions
    served_v2 = sum(v == "v2" for v in session.canary_versions.values())
    assert metric_value(session.metrics, "mlops_predictions_total", version="v2") == (
        served_v2 + sum(1 for a in session.resent_answers for p in a["predictions"]
                        if p["model_version"] == "v2")
    )  # fmt: skip


def test_every_answered_row_is_logged_with_its_answer_time_and_the_shadows_without(
    session: RolloutSession,
) -> None:
    from mlops.release.canary_latency import LatencyBudget, canary_latency

    canary = session.log[session.log["transaction_id"].isin(session.canary_versions)]
    for version in ("v1", "v2"):
        took = canary.loc[canary["model_version"] == version, "served_ms"]
        assert len(took) and (took > 0).all() and (took < 30_000).all(), version
    shadow_ids = {a["request_id"] for a in session.shadow_answers}
    shadow = session.log[session.log["request_id"].isin(shadow_ids)]
    assert (shadow.loc[shadow["model_version"] == "v1", "served_ms"] > 0).all()
    assert shadow.loc[shadow["model_version"] == "v2", "served_ms"].isna().all()  # answered none
    # the monitor's check reads these times: one per request and version, nothing breached
    check = canary_latency(canary, "v2", "v1", LatencyBudget(min_requests=10))
    resent = sum(any(p["model_version"] == "v2" for p in a["predictions"])
                 for a in session.resent_answers)  # fmt: skip
    singles = sum(v == "v2" for v in session.canary_versions.values())
    assert check.canary_requests == singles + resent
    assert check.canary_p95_ms is not None and not check.breach, check.text


def test_after_the_rollout_ends_the_champion_answers_alone(session: RolloutSession) -> None:
    assert session.ended_model["rollout"] is None
    assert {a["model_version"] for a in session.ended_answers} == {"v1"}
    assert all(p["model_version"] is None for a in session.ended_answers for p in a["predictions"])


def test_the_model_answer_with_a_rollout_matches_its_declared_schema(
    session: RolloutSession,
) -> None:
    (operation,) = session.document["paths"]["/model"].values()
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    for answer in (session.shadow_model, session.canary_model, session.ended_model):
        jsonschema.validate(answer, {**schema, "components": session.document["components"]})
    predict = session.document["components"]["schemas"]["Prediction"]["properties"]
    assert "model_version" in predict
