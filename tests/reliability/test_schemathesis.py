"""Schemathesis against a real `bentoml serve`: every operation its OpenAPI document declares
answers generated requests, with and without tokens, without a server error and as declared.

The run is schemathesis' own engine (what `st run` drives): examples, coverage (boundary values,
missing headers, undeclared methods) and fuzzing phases, in positive and negative modes, every
request sent over HTTP to the live server.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.engine import Status, events

from tests.reliability.conftest import ADMIN_TOKEN, API_TOKEN, LiveServer

pytestmark = pytest.mark.slow

# Each holds for every answer, with or without a token: nothing is relaxed for the service.
CHECKS = (
    "not_a_server_error",
    "response_schema_conformance",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "negative_data_rejection",  # e.g. a number accepted where the contract wants a date-time
    "positive_data_acceptance",  # e.g. a request the document allows refused anyway
    "missing_required_header",
    "unsupported_method",
)
SERVED_OPERATIONS = {
    "POST /predict",
    "GET /model",
    "POST /admin/reload",
    "GET /livez",
    "GET /readyz",
    "GET /healthz",
    "GET /metrics",
}
EXAMPLES_PER_OPERATION = 50  # per operation, phase and mode: ~300 requests a run, ~10 s
SEED = 20260101


@dataclass
class RunOutcome:
    """What one schemathesis run did, and every failure it found."""

    operations: set[str] = field(default_factory=set)
    answers: Counter[tuple[str, int | None]] = field(default_factory=Counter)  # (operation, status)
    # (operation, kind of failure) -> each failure's text and the request that reproduces it
    failures: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def add_failure(self, operation: str, kind: str, details: str) -> None:
        """Record one failing request of `operation`."""
        self.failures.setdefault((operation, kind), []).append(details)

    def report(self) -> str:
        """Return each kind of failure with its count and its first example."""
        return "\n\n".join(
            f"{operation}: {kind} ({len(found)} requests), e.g.\n{found[0]}"
            for (operation, kind), found in self.failures.items()
        )


def run_config(tokens: dict[str, Any] | None) -> dict[str, Any]:
    """Return a bounded, deterministic run of CHECKS; `tokens`: settings adding their headers."""
    return {
        "seed": SEED,
        # One thread: Python 3.11 can fail `ast.parse` run in two threads at once (CPython
        # gh-106905, "AST constructor recursion depth mismatch"), which the workers would do.
        "workers": 1,
        "continue-on-failure": True,
        "request-timeout": 30,
        "generation": {
            "mode": "all",
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "no-shrink": True,
            "database": "none",
        },
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        **(tokens or {}),
    }


def run_schemathesis(server: LiveServer, config: dict[str, Any]) -> RunOutcome:
    """Load the live server's OpenAPI document and run schemathesis against that server."""
    schema = schemathesis.openapi.from_url(
        f"{server.url}/docs.json", config=schemathesis.Config.from_dict(config)
    )
    outcome = RunOutcome()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished) and event.status != Status.SKIP:
            recorder = event.recorder
            outcome.operations.add(recorder.label)
            for interaction in recorder.interactions.values():
                status = interaction.response.status_code if interaction.response else None
                outcome.answers[(recorder.label, status)] += 1
            for check in (check for checks in recorder.checks.values() for check in checks):
                if (info := check.failure_info) is not None:
                    details = f"{info.failure}\n{info.code_sample}"
                    outcome.add_failure(recorder.label, info.failure.title, details)
        elif isinstance(event, events.NonFatalError):
            outcome.add_failure(event.label, "error in the run", repr(event.value))
        elif isinstance(event, events.FatalError):
            raise event.exception
        elif isinstance(event, events.EngineFinished):
            for failure in event.failures:
                outcome.add_failure(failure.operation or "run", failure.title, str(failure))
    return outcome


def with_tokens() -> dict[str, Any]:
    """Return run settings that send the API token, and the admin token to /admin/reload."""
    return {
        "headers": {"Authorization": f"Bearer {API_TOKEN}"},
        "operations": [
            {"include-path": "/admin/reload", "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}}
        ],
    }


@pytest.mark.parametrize("tokens", [True, False], ids=["with-tokens", "without-tokens"])
def test_generated_requests_get_no_server_error_and_answers_that_match_the_document(
    live_server: LiveServer, tokens: bool
) -> None:
    # With the tokens, requests reach validation, the model and a reload; without them (or with
    # a generated Authorization header) they are refused, and the refusals must be declared too.
    outcome = run_schemathesis(live_server, run_config(with_tokens() if tokens else None))

    assert not outcome.failures, outcome.report()
    assert outcome.operations == SERVED_OPERATIONS
    answers = outcome.answers
    if tokens:  # predictions, contract violations and a reload: each path was taken
        assert answers["POST /predict", 200] >= 20, answers
        assert answers["POST /predict", 400] >= 20, answers
        assert answers["POST /admin/reload", 200] >= 1, answers
    else:
        assert answers["POST /predict", 401] >= 20, answers
        assert answers["POST /admin/reload", 401] >= 1, answers
        assert answers["POST /predict", 200] == 0, answers


def test_a_predict_without_a_body_is_refused_and_the_document_says_the_body_is_required(
    live_server: LiveServer,
) -> None:
    # Fuzzing sends a body-less POST only now and then: pin this one down.
    document = httpx.get(f"{live_server.url}/docs.json", timeout=10).json()
    empty = httpx.post(f"{live_server.url}/predict", headers=live_server.auth, timeout=10)

    assert document["paths"]["/predict"]["post"]["requestBody"]["required"] is True
    assert empty.status_code == 415, empty.text
