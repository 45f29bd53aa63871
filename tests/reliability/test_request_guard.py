"""The request guard on its own: a body streaming past the limit is left unread."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from mlops.settings import get_settings
from serving.guard import RequestGuard

CHUNK = 65_536


def _scope(**headers: str) -> dict[str, Any]:
    raw = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": "http", "method": "POST", "path": "/predict", "root_path": "", "headers": raw}


async def _never_called(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("a refused request reached the service")


def _run(guard: RequestGuard, scope: dict[str, Any]) -> tuple[list[dict], int]:
    """Run the guard on an endless chunked body; return what it sent and how much it read."""
    sent: list[dict] = []
    read = 0

    async def receive() -> dict:
        nonlocal read
        read += CHUNK
        return {"type": "http.request", "body": b" " * CHUNK, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(guard(scope, receive, send))
    return sent, read


def test_an_endless_body_is_refused_once_it_passes_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MLOPS_API_TOKEN", raising=False)
    monkeypatch.setenv("MLOPS_MAX_BODY_BYTES", "200000")

    sent, read = _run(RequestGuard(_never_called), _scope(content_type="application/json"))

    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    assert b'"max_body_bytes":200000' in sent[1]["body"]
    assert 200_000 < read <= 200_000 + CHUNK


def test_a_request_without_the_token_is_refused_before_its_body_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_API_TOKEN", "api-secret")

    sent, read = _run(RequestGuard(_never_called), _scope(content_type="application/json"))

    assert sent[0]["status"] == 401
    assert read == 0


def test_the_default_body_limit_allows_4_kib_per_record_and_a_set_limit_wins() -> None:
    assert get_settings(max_records=10).body_limit == 40_960
    assert get_settings(max_records=10, max_body_bytes=1000).body_limit == 1000


def test_other_methods_pass_to_the_router_unread_so_that_it_answers_405(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_API_TOKEN", "api-secret")
    reached: list[str] = []

    async def router(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["method"])

    for method in ("GET", "PUT", "TRACE"):
        sent, read = _run(RequestGuard(router), {**_scope(), "method": method})
        assert (sent, read) == ([], 0)
    assert reached == ["GET", "PUT", "TRACE"]
