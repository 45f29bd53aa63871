"""A real `bentoml serve` under hostile input: auth before parsing, body limit, media types,
bounded metrics, quiet logs and an OpenAPI document that matches the answers."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest

from tests.reliability.conftest import LiveServer
from tests.support.service import served_records

pytestmark = pytest.mark.slow

HUGE = 50_000_000  # bytes a client announces; the test sends only the first few KB of them
SERVED_ROUTES = {
    "/predict",
    "/model",
    "/admin/reload",
    "/livez",
    "/readyz",
    "/healthz",
    "/",
    "/docs.json",
}


def _post(server: LiveServer, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{server.url}/predict", content=content, headers=headers, timeout=30)


def _json_post(server: LiveServer, body: Any, **headers: str) -> httpx.Response:
    return _post(server, body, {"Content-Type": "application/json", **headers})


def _send_partly(
    server: LiveServer, headers: dict[str, str], first_bytes: bytes, timeout_s: float = 5
) -> tuple[int, dict[str, str], bytes]:
    """POST /predict announcing a body, send only its first bytes, and read the answer."""
    url = urlsplit(server.url)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout_s)
    try:
        connection.putrequest("POST", "/predict")
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(first_bytes)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _send_chunked(server: LiveServer, headers: dict[str, str], total: int) -> httpx.Response:
    """POST /predict a chunked body (no Content-Length) of `total` bytes of a JSON string."""
    chunk = b"x" * 65_536

    def body() -> Any:
        yield b'{"records": "'
        for start in range(0, total, len(chunk)):
            yield chunk[: min(len(chunk), total - start)]
        yield b'"}'

    return httpx.post(f"{server.url}/predict", content=body(), headers=headers, timeout=30)


# -- authentication comes first ---------------------------------------------------------------


def test_without_a_token_an_invalid_body_gets_401_and_no_validation_details(
    live_server: LiveServer,
) -> None:
    malformed = _json_post(live_server, b'{"records": [{"amount": 4')
    wrong_type = _post(live_server, b"--x\r\n", {"Content-Type": "multipart/form-data; boundary=x"})
    wrong_token = _json_post(live_server, {"records": []}, Authorization="Bearer nope")

    for refused in (malformed, wrong_type, wrong_token):
        assert refused.status_code == 401, refused.text
        assert refused.headers["www-authenticate"] == "Bearer"
        assert set(refused.json()) == {"error"}
        assert "bearer token" in refused.json()["error"]


def test_without_a_token_a_huge_body_is_refused_before_it_is_sent(
    live_server: LiveServer,
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(HUGE)}
    started = time.monotonic()

    status, _, body = _send_partly(live_server, headers, b'{"records": [' + b" " * 4096)

    assert status == 401, body
    assert time.monotonic() - started < 2


# -- the body limit -----------------------------------------------------------------------------


def test_an_announced_body_over_the_limit_gets_413_naming_it_before_it_is_sent(
    live_server: LiveServer,
) -> None:
    headers = {"Content-Type": "application/json", "Content-Length": str(HUGE), **live_server.auth}

    status, response_headers, body = _send_partly(live_server, headers, b'{"records": [')

    assert status == 413, body
    assert response_headers["content-type"].startswith("application/json")
    answer = json.loads(body)
    limit = answer["max_body_bytes"]
    assert 100_000 <= limit < HUGE
    assert str(limit) in answer["error"]


def test_a_chunked_body_over_the_limit_gets_413(live_server: LiveServer) -> None:
    headers = {"Content-Type": "application/json", **live_server.auth}
    announced = _send_partly(live_server, {**headers, "Content-Length": str(HUGE)}, b"{")
    max_body_bytes = json.loads(announced[2])["max_body_bytes"]  # the limit the server reports

    refused = _send_chunked(live_server, headers, max_body_bytes + 1)
    served = _json_post(live_server, {"records": served_records(3)}, **live_server.auth)

    assert refused.status_code == 413, refused.text[:500]
    assert refused.json()["max_body_bytes"] == max_body_bytes
    assert served.status_code == 200, served.text


# -- media types --------------------------------------------------------------------------------

NOT_JSON = {
    "multipart": "multipart/form-data; boundary=x",
    "text": "text/plain",
    "form": "application/x-www-form-urlencoded",
    "missing": None,
}


@pytest.mark.parametrize("content_type", NOT_JSON.values(), ids=list(NOT_JSON))
def test_a_body_that_is_not_declared_json_gets_415_naming_the_expected_type(
    live_server: LiveServer, content_type: str | None
) -> None:
    body = json.dumps({"records": served_records(2)}).encode()
    headers = {**live_server.auth} | ({"Content-Type": content_type} if content_type else {})

    refused = _post(live_server, body, headers)
    with_charset = _post(
        live_server, body, {**live_server.auth, "Content-Type": "application/json; charset=utf-8"}
    )

    assert refused.status_code == 415, refused.text
    assert "application/json" in refused.json()["error"]
    assert with_charset.status_code == 200, with_charset.text


# -- bounded metrics ----------------------------------------------------------------------------


def _endpoints(metrics: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        sample.labels["endpoint"]
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if family.name.startswith("bentoml_service_request") and "endpoint" in sample.labels
    }


def test_requests_to_unknown_paths_do_not_grow_the_metrics(live_server: LiveServer) -> None:
    def probe_unknown_paths(count: int) -> None:
        with httpx.Client(base_url=live_server.url, timeout=10) as client:
            for i in range(count):
                path = ["/", "/predict/", "/static_content/", "/model/"][i % 4] + uuid.uuid4().hex
                client.request(["GET", "POST", "PUT", "DELETE"][i % 4], path)

    probe_unknown_paths(8)  # the series of unknown paths exist from here on
    before = httpx.get(f"{live_server.url}/metrics", timeout=10).text
    probe_unknown_paths(300)
    after = httpx.get(f"{live_server.url}/metrics", timeout=10).text

    assert len(after) - len(before) < 1_000, (len(before), len(after))
    unknown = _endpoints(after) - SERVED_ROUTES - {"/metrics"}
    assert len(unknown) <= 1, sorted(unknown)[:5]


# -- logs ---------------------------------------------------------------------------------------


def test_a_refused_record_leaves_neither_its_values_nor_a_traceback_in_the_log(
    live_server: LiveServer,
) -> None:
    records = served_records(2)
    records[1] = {**records[1], "amount": "SECRET-12345", "merchant_id": "SECRET-67890"}
    start = len(live_server.log())

    refused = _json_post(live_server, {"records": records}, **live_server.auth)
    time.sleep(0.5)  # the access log line is written after the answer
    log = live_server.log()[start:]

    assert refused.status_code == 400, refused.text
    fields = {tuple(error["loc"]) for error in refused.json()["detail"]}
    assert fields == {("records", 1, "amount"), ("records", 1, "merchant_id")}
    assert "SECRET-" not in refused.text
    assert "/predict" in log, log  # the request was logged...
    assert "SECRET-" not in log  # ...without the values it was refused for
    assert "Traceback" not in log
    assert "ERROR" not in log


# -- contract of the answers --------------------------------------------------------------------


def test_numbers_are_refused_where_the_contract_wants_a_date_time(
    live_server: LiveServer,
) -> None:
    def with_timestamp(value: Any) -> httpx.Response:
        records = served_records(2)
        records[1] = {**records[1], "timestamp": value}
        return _json_post(live_server, {"records": records}, **live_server.auth)

    for number in (0, 1_700_000_000, 1.5, "1700000000"):
        refused = with_timestamp(number)
        assert refused.status_code == 400, (number, refused.text)
        assert [e["loc"] for e in refused.json()["detail"]] == [["records", 1, "timestamp"]]
    assert with_timestamp("2026-01-01T14:23:05.123456").status_code == 200
    assert with_timestamp("2026-01-01T14:23:05Z").status_code == 200


def test_every_error_answer_of_predict_matches_its_declared_schema(
    live_server: LiveServer,
) -> None:
    document = httpx.get(f"{live_server.url}/docs.json", timeout=10).json()
    declared = document["paths"]["/predict"]["post"]["responses"]
    auth = live_server.auth
    answers = {
        400: _json_post(live_server, {"records": [{"amount": "x"}]}, **auth),
        401: _json_post(live_server, {"records": []}),
        413: _send_partly(
            live_server,
            {"Content-Type": "application/json", "Content-Length": str(HUGE), **auth},
            b"{",
        )[2],
        415: _post(live_server, b"{}", {"Content-Type": "text/plain", **auth}),
    }

    for status, answer in answers.items():
        body = json.loads(answer) if isinstance(answer, bytes) else answer.json()
        schema = declared[str(status)]["content"]["application/json"]["schema"]
        jsonschema.validate(body, {**schema, "components": document["components"]})
    assert "503" in declared
    invalid = declared["400"]["content"]["application/json"]["schema"]
    with pytest.raises(jsonschema.ValidationError):  # the declared 400 is not just any object
        jsonschema.validate({"error": "x", "detail": "x"}, {**invalid, **document})
