"""The prediction API in process: answers, contract errors, auth, model info and readiness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlops.registry.store import Registry
from tests.support.service import MODEL, counter_value, open_client, served_records

BAD_INDEX = 1  # the bad record sits between two good ones: errors must point at it


def _predict_raw(client: Any, body: str | bytes) -> Any:
    return client.post("/predict", content=body, headers={"content-type": "application/json"})


def _metrics() -> Any:
    from serving.observability import service_metrics

    return service_metrics()


def _one_error(response: Any) -> dict[str, Any]:
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert len(body["detail"]) == 1, body
    return body["detail"][0]


# -- answers ----------------------------------------------------------------------------------


def test_predict_answers_every_record_in_request_order(client: Any) -> None:
    records = served_records(6)
    response = client.post("/predict", json={"records": records})

    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"request_id", "model_version", "predictions"}
    assert len(body["request_id"]) == 32
    assert body["model_version"] == "v1"
    predictions = body["predictions"]
    assert [p["id"] for p in predictions] == [r["transaction_id"] for r in records]
    threshold = client.get("/model").json()["decision_threshold"]
    for p in predictions:
        assert set(p["probabilities"]) == {"0", "1"}
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert p["prediction"] == int(p["probabilities"]["1"] >= threshold)


def test_each_request_gets_its_own_request_id(client: Any) -> None:
    records = served_records(1)
    ids = {
        client.post("/predict", json={"records": records}).json()["request_id"] for _ in range(3)
    }
    assert len(ids) == 3


def test_records_without_id_or_timestamp_and_with_a_nullable_null_are_served(client: Any) -> None:
    record = {
        k: v for k, v in served_records(1)[0].items() if k not in ("transaction_id", "timestamp")
    }
    response = client.post(
        "/predict", json={"records": [{**record, "distance_from_home_km": None}]}
    )

    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["id"] is None


def test_unseen_merchant_is_served_and_counted_as_out_of_vocabulary(client: Any) -> None:
    oov = _metrics().oov
    before = counter_value(oov, feature="merchant_id")
    records = [{**r, "merchant_id": "mer-99999"} for r in served_records(3)]

    response = client.post("/predict", json={"records": records})

    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 3
    assert counter_value(oov, feature="merchant_id") - before == 3


# -- contract errors: one record at a time --------------------------------------------------

RECORD_ERRORS = {
    # case: (change to the record, field, pydantic error type, words of the message)
    "string for amount": ({"amount": "42.5"}, "amount", "float_type", "valid number"),
    "boolean for amount": ({"amount": True}, "amount", "float_type", "valid number"),
    "number for channel": ({"channel": 3}, "channel", "literal_error", "'online'"),
    "number for merchant_id": ({"merchant_id": 48213}, "merchant_id", "string_type", "string"),
    "string for card_present": ({"card_present": "yes"}, "card_present", "bool_type", "boolean"),
    "float for hour": ({"hour": 14.5}, "hour", "int_type", "valid integer"),
    "missing customer_age": ({"customer_age": ...}, "customer_age", "missing", "Field required"),
    "null amount": ({"amount": None}, "amount", "float_type", "valid number"),
    "null channel": ({"channel": None}, "channel", "literal_error", "'online'"),
    "amount above max": ({"amount": 100_000.5}, "amount", "less_than_equal", "100000"),
    "amount below min": ({"amount": 0}, "amount", "greater_than_equal", "0.01"),
    "customer_age below min": ({"customer_age": 17}, "customer_age", "greater_than_equal", "18"),
    "channel not allowed": ({"channel": "carrier-pigeon"}, "channel", "literal_error", "'atm'"),
    "merchant_id pattern": ({"merchant_id": "shop-1"}, "merchant_id", "string_pattern_mismatch",
                            "^mer-[0-9]{5}$"),
    "unknown field": ({"loyalty_tier": "gold"}, "loyalty_tier", "extra_forbidden", "not permitted"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("change", "field", "kind", "words"), RECORD_ERRORS.values(), ids=list(RECORD_ERRORS)
)
def test_a_record_breaking_the_contract_is_refused_naming_index_field_and_problem(
    client: Any, change: dict[str, Any], field: str, kind: str, words: str
) -> None:
    metrics = _metrics()
    rejected = counter_value(metrics.rejected, reason="invalid_input")
    predicted = counter_value(metrics.predictions, version="v1")
    records = served_records(3)
    bad = {k: v for k, v in {**records[BAD_INDEX], **change}.items() if v is not ...}
    records[BAD_INDEX] = bad

    response = client.post("/predict", json={"records": records})

    error = _one_error(response)
    assert response.status_code == 400
    assert error["loc"] == ["records", BAD_INDEX, field]
    assert error["type"] == kind
    assert words in error["msg"]
    assert counter_value(metrics.rejected, reason="invalid_input") == rejected + 1
    assert counter_value(metrics.predictions, version="v1") == predicted  # none of the batch


NON_FINITE = {
    "NaN amount": ("amount", float("nan"), "NaN"),
    "Infinity distance": ("distance_from_home_km", float("inf"), "Infinity"),
    "-Infinity amount": ("amount", float("-inf"), "-Infinity"),
}


@pytest.mark.parametrize(("field", "value", "literal"), NON_FINITE.values(), ids=list(NON_FINITE))
def test_non_finite_numbers_are_refused(
    client: Any, field: str, value: float, literal: str
) -> None:
    records = served_records(3)
    records[BAD_INDEX] = {**records[BAD_INDEX], field: value}
    body = json.dumps({"records": records})  # Python writes NaN / Infinity literals
    assert f'"{field}": {literal}' in body

    error = _one_error(_predict_raw(client, body))

    assert error["loc"] == ["records", BAD_INDEX, field]
    assert error["type"] == "finite_number"
    assert "finite number" in error["msg"]


# -- contract errors: the request as a whole ------------------------------------------------


def test_malformed_json_is_refused(client: Any) -> None:
    response = _predict_raw(client, b'{"records": [{"amount": 4')
    error = _one_error(response)
    assert response.status_code == 400
    assert error["type"] == "json_invalid"
    assert "Invalid JSON" in error["msg"]


def test_a_body_without_records_is_refused(client: Any) -> None:
    error = _one_error(client.post("/predict", json={"rows": served_records(1)}))
    assert error["loc"] == ["records"]
    assert error["type"] == "missing"


def test_an_empty_batch_is_refused(client: Any) -> None:
    error = _one_error(client.post("/predict", json={"records": []}))
    assert error["loc"] == ["records"]
    assert error["type"] == "too_short"
    assert "at least 1 item" in error["msg"]


def test_a_batch_over_max_records_is_refused(client: Any) -> None:
    records = served_records(1025)  # max_records is fixed at import: the default 1024
    response = client.post("/predict", json={"records": records})
    error = _one_error(response)
    assert response.status_code == 400
    assert error["loc"] == ["records"]
    assert error["type"] == "too_long"
    assert "at most 1024 items" in error["msg"]


# -- tokens -----------------------------------------------------------------------------------


def test_predict_requires_the_bearer_token_when_one_is_set(
    service_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_API_TOKEN", "api-secret")
    unauthorized = _metrics().rejected
    before = counter_value(unauthorized, reason="unauthorized")
    body = {"records": served_records(2)}
    with open_client() as client:
        missing = client.post("/predict", json=body)
        wrong = client.post("/predict", json=body, headers={"Authorization": "Bearer nope"})
        right = client.post("/predict", json=body, headers={"Authorization": "Bearer api-secret"})

    for refused in (missing, wrong):
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in refused.json()["error"]
    assert right.status_code == 200, right.text
    assert right.json()["model_version"] == "v1"
    assert counter_value(unauthorized, reason="unauthorized") == before + 2


def test_admin_reload_is_disabled_without_an_admin_token(
    service_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_ADMIN_TOKEN")
    with open_client() as client:
        response = client.post("/admin/reload", headers={"Authorization": "Bearer admin-secret"})
    assert response.status_code == 403
    assert "MLOPS_ADMIN_TOKEN" in response.json()["error"]


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_tokens_count_as_unset_and_never_accept_an_empty_bearer(
    blank: str, service_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", blank)
    monkeypatch.setenv("MLOPS_API_TOKEN", blank)
    empty_bearer = {"Authorization": f"Bearer {blank}"}
    with open_client() as client:
        reload = client.post("/admin/reload", headers=empty_bearer)
        bare = client.post("/admin/reload", headers={"Authorization": "Bearer"})
        predict = client.post("/predict", json={"records": served_records(1)})

    assert reload.status_code == bare.status_code == 403
    assert "MLOPS_ADMIN_TOKEN" in reload.json()["error"]
    assert predict.status_code == 200, predict.text  # as with no MLOPS_API_TOKEN at all


def test_admin_reload_refuses_a_wrong_token_and_accepts_the_right_one(client: Any) -> None:
    wrong = client.post("/admin/reload", headers={"Authorization": "Bearer nope"})
    missing = client.post("/admin/reload")
    right = client.post("/admin/reload", headers={"Authorization": "Bearer admin-secret"})

    assert wrong.status_code == missing.status_code == 401
    assert right.status_code == 200, right.text
    assert right.json()["served_version"] == "v1"
    assert right.json()["changed"] is False


# -- model info and readiness -----------------------------------------------------------------


def test_model_info_shows_version_device_and_manifest_summary(
    client: Any, serving_home: Path
) -> None:
    manifest = Registry(str(serving_home / "registry")).get(MODEL, "v1").manifest

    response = client.get("/model")

    assert response.status_code == 200
    info = response.json()
    assert info["model"] == MODEL
    assert info["version"] == info["served_version"] == "v1"
    assert info["device"] == "cpu"
    assert info["providers"][0] == "CPUExecutionProvider"
    assert info["task"] == "binary"
    assert info["classes"] == [0, 1]
    assert info["onnx_sha256"] == manifest["onnx_sha256"]
    assert info["contract_fingerprint"] == manifest["contract_fingerprint"]
    assert [i["name"] for i in info["inputs"]] == [i["name"] for i in manifest["inputs"]]
    assert info["refused_version"] is None
    assert info["last_reload_error"] is None


def test_service_is_live_and_ready_with_a_model(client: Any) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_without_a_model_the_service_is_not_ready_and_predict_says_so(
    service_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-registry"
    empty.mkdir()
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(empty))
    with open_client() as client:
        live = client.get("/livez")
        ready = client.get("/readyz")
        predict = client.post("/predict", json={"records": served_records(1)})
        info = client.get("/model")

    assert live.status_code == 200
    assert ready.status_code == 503
    assert predict.status_code == 503
    assert predict.json() == {"error": "no model loaded yet"}
    assert info.status_code == 503
    assert info.json()["served_version"] is None
