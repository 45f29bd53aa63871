"""The admin routes' answers that a generated request cannot reach (no model, admin disabled)
match the schemas the OpenAPI document declares for them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.support.service import open_client

ADMIN = {"Authorization": "Bearer admin-secret"}


def _check_declared(document: dict[str, Any], route: str, answer: Any) -> None:
    """Assert that `answer` has a declared status and a body of that status's declared schema."""
    (operation,) = document["paths"][route].values()
    declared = operation["responses"]
    assert str(answer.status_code) in declared, (route, answer.status_code, sorted(declared))
    schema = declared[str(answer.status_code)]["content"]["application/json"]["schema"]
    jsonschema.validate(answer.json(), {**schema, "components": document["components"]})


def test_without_a_loadable_version_model_and_reload_answers_are_declared(
    service_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_SERVE_REF", "v99")  # no such version: nothing can be loaded
    with open_client() as client:
        document = client.get("/docs.json").json()
        info = client.get("/model")
        reload = client.post("/admin/reload", headers=ADMIN)

    assert (info.status_code, reload.status_code) == (503, 409), (info.text, reload.text)
    assert reload.json()["served_version"] is None
    _check_declared(document, "/model", info)
    _check_declared(document, "/admin/reload", reload)


def test_served_model_and_disabled_or_refused_reload_answers_are_declared(
    service_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_client() as client:
        document = client.get("/docs.json").json()
        answers = [
            client.get("/model"),
            client.post("/admin/reload", headers=ADMIN),
            client.post("/admin/reload"),
        ]
    monkeypatch.delenv("MLOPS_ADMIN_TOKEN")
    with open_client() as client:
        answers.append(client.post("/admin/reload", headers=ADMIN))

    assert [answer.status_code for answer in answers] == [200, 200, 401, 403]
    for route, answer in zip(["/model"] + ["/admin/reload"] * 3, answers, strict=True):
        _check_declared(document, route, answer)
