"""promote-model and rollback-model under a real (temporary) Prefect API, on real versions."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bentoml
import pytest

from flows.promotion import promote_model_flow, rollback_model_flow
from mlops.registry.store import Registry
from tasks.promotion import PromotionRefused
from tests.support.artifacts import run_artifacts
from tests.support.models import MODEL

pytestmark = pytest.mark.slow


def _table(data: Any) -> list[dict[str, Any]]:
    return json.loads(data) if isinstance(data, str) else data


def test_promote_then_rollback_moves_the_champion_and_records_why(
    prefect_server: None, registry: Registry
) -> None:
    state = promote_model_flow(
        version="v2", reason="better recall", actor="alice", return_state=True
    )
    result = state.result()

    aliases = registry.aliases(MODEL)
    assert aliases.aliases == {"champion": "v2", "previous": "v1"}
    assert (result["from_version"], result["to_version"]) == ("v1", "v2")
    last = registry.history(MODEL)[-1]
    assert last["event"] == "promoted" and (last["from"], last["to"]) == ("v1", "v2")
    assert (last["actor"], last["reason"], last["revision"]) == ("alice", "better recall", 2)
    assert result["bento_tag"].startswith(f"{MODEL}:v2-")  # v2 plus this registry's suffix
    stored = bentoml.models.get(result["bento_tag"])
    assert stored.info.metadata["onnx_sha256"] == registry.get(MODEL, "v2").manifest["onnx_sha256"]
    assert stored.info.labels["promoted_by"] == "promote-model"
    assert result["reload"].startswith("not requested")

    artifacts = run_artifacts(state.state_details.flow_run_id)
    markdown = artifacts["alias-change"]
    for text in ("| from | v1 |", "| to | **v2** |", "better recall", "| registry revision | 2 |"):
        assert text in markdown
    history = _table(artifacts["registry-history"])
    assert [row["event"] for row in history] == ["promoted", "promoted", "registered", "registered"]

    back = rollback_model_flow(reason="alerts after v2", actor="bob")

    assert registry.aliases(MODEL).aliases == {"champion": "v1", "previous": "v2"}
    assert (back["from_version"], back["to_version"], back["revision"]) == ("v2", "v1", 3)
    last = registry.history(MODEL)[-1]
    assert (last["event"], last["from"], last["to"]) == ("rolled_back", "v2", "v1")
    assert (last["actor"], last["reason"]) == ("bob", "alerts after v2")
    assert back["bento_tag"].startswith(f"{MODEL}:v1-")
    assert bentoml.models.get(back["bento_tag"]).info.metadata["registry_version"] == "v1"


def test_promoting_an_unknown_version_fails_naming_the_versions_that_exist(
    prefect_server: None, registry: Registry
) -> None:
    with pytest.raises(PromotionRefused, match=r"no version 'v9'.*versions: v1, v2"):
        promote_model_flow(version="v9")

    assert registry.aliases(MODEL).aliases == {"champion": "v1"}


def test_a_version_whose_onnx_changed_is_refused_and_the_champion_stays(
    prefect_server: None, registry: Registry
) -> None:
    onnx = Path(registry.get(MODEL, "v2").uri) / "model.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    events = len(registry.history(MODEL))

    with pytest.raises(PromotionRefused, match=r"sha256.*The champion stays v1"):
        promote_model_flow(version="v2", model_name=MODEL)

    assert registry.aliases(MODEL).aliases == {"champion": "v1"}
    assert len(registry.history(MODEL)) == events


def test_rollback_without_a_previous_version_is_refused(
    prefect_server: None, registry: Registry
) -> None:
    with pytest.raises(PromotionRefused, match=r"no alias 'previous'"):
        rollback_model_flow()

    assert registry.aliases(MODEL).aliases == {"champion": "v1"}


class _Recorder(BaseHTTPRequestHandler):
    """Stand-in for the service's admin API: records each request, answers 200."""

    received: list[tuple[str, str, str | None]] = []

    def do_POST(self) -> None:
        self.received.append(("POST", self.path, self.headers.get("Authorization")))
        body = json.dumps({"version": "v2", "changed": True}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_serving() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    """Serve the recorder on a free local port in a thread; stop it after the test."""
    _Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Recorder.received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_promotion_asks_serving_to_reload_with_the_admin_token(
    prefect_server: None,
    registry: Registry,
    fake_serving: tuple[str, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, received = fake_serving
    monkeypatch.setenv("MLOPS_SERVING_URL", url + "/")
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "s3cret")

    result = promote_model_flow(version="v2")

    assert received == [("POST", "/admin/reload", "Bearer s3cret")]
    assert "answered 200" in result["reload"]


def test_serving_that_does_not_answer_is_a_warning_not_a_failure(
    prefect_server: None, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    port = server.server_address[1]
    server.server_close()  # nothing listens on this port any more
    monkeypatch.setenv("MLOPS_SERVING_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "s3cret")

    result = promote_model_flow(version="v2", reason="serving down")

    assert registry.aliases(MODEL).aliases["champion"] == "v2"
    assert "did not answer" in result["reload"] and "next poll" in result["reload"]
