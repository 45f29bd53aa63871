"""Hot reload on a real `bentoml serve`: promotion under load; a broken champion is refused."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlops.registry.store import Registry
from tests.support.service import MODEL, bentoml_server, metric_value, served_records, server_env

pytestmark = pytest.mark.slow

CLIENTS = 3
AFTER_SWITCH = 15  # answers each client must get from v2 before the load stops


def _wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.05)


def _send_until_stopped(url: str, records: list[dict], stop: threading.Event, out: list) -> None:
    """Post records back to back; append (status, model_version or error) for every request."""
    with httpx.Client(base_url=url, timeout=10) as client:
        while not stop.is_set():
            try:
                response = client.post("/predict", json={"records": records})
                version = response.json().get("model_version") if response.is_success else None
                out.append((response.status_code, version or response.text[:200]))
            except Exception as exc:  # the thread must record failures, never die on them
                out.append((None, repr(exc)))


def _versions_after_switch(answers: list[tuple[Any, str]]) -> int:
    return sum(1 for _, version in answers if version == "v2")


def test_promotion_under_load_switches_to_v2_without_failed_requests(
    registry_copy: Registry, tmp_path: Path
) -> None:
    env = server_env(tmp_path / "home", registry_copy.root, MLOPS_RELOAD_INTERVAL_S="0.2")
    answers: list[list[tuple[Any, str]]] = [[] for _ in range(CLIENTS)]
    stop = threading.Event()
    with bentoml_server(env, tmp_path / "server.log") as server:
        threads = [
            threading.Thread(
                target=_send_until_stopped,
                args=(server.url, served_records(8, start=8 * i), stop, answers[i]),
                name=f"load-{i}",
            )
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        try:
            _wait_for(lambda: all(len(a) >= 5 for a in answers), 30, "answers from v1")
            registry_copy.promote(MODEL, "v2", actor="test", reason="hot reload under load")
            _wait_for(
                lambda: all(_versions_after_switch(a) >= AFTER_SWITCH for a in answers),
                30,
                "every client to get answers from v2",
            )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
        assert not any(thread.is_alive() for thread in threads)
        info = httpx.get(f"{server.url}/model", timeout=10).json()
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text

    for client_answers in answers:
        failed = [a for a in client_answers if a[0] != 200]
        assert not failed, failed[:5]
        versions = [version for _, version in client_answers]
        switch = versions.index("v2")
        assert switch > 0
        assert set(versions[:switch]) == {"v1"}
        assert set(versions[switch:]) == {"v2"}, "a client went back to v1 after seeing v2"
    assert info["version"] == "v2"
    assert metric_value(metrics, "mlops_model_reloads_total", outcome="loaded") == 2
    assert metric_value(metrics, "mlops_model_info", version="v1", device="cpu") == 0
    assert metric_value(metrics, "mlops_model_info", version="v2", device="cpu") == 1


def _register_copy_of_v1(
    registry: Registry, tmp_path: Path, onnx: bytes | None = None, **manifest_changes: str
) -> str:
    """Register v1's files again as a new version, optionally with other ONNX bytes."""
    source = Path(registry.get(MODEL, "v1").uri)
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(onnx if onnx is not None else (source / "model.onnx").read_bytes())
    return registry.register(
        MODEL,
        onnx_path=onnx_path,
        manifest={**registry.get(MODEL, "v1").manifest, **manifest_changes},
        reference_profile=(source / "reference.bin").read_bytes(),
        model_card=(source / "model_card.md").read_text(),
        actor="test",
    ).version


def _tampered(registry: Registry, tmp_path: Path) -> str:
    version = _register_copy_of_v1(registry, tmp_path)
    (Path(registry.get(MODEL, version).uri) / "model.onnx").write_bytes(b"garbage " * 64)
    return version


def _unloadable(registry: Registry, tmp_path: Path) -> str:
    return _register_copy_of_v1(registry, tmp_path, onnx=b"not an onnx graph")


def _other_contract(registry: Registry, tmp_path: Path) -> str:
    return _register_copy_of_v1(registry, tmp_path, contract_fingerprint="0" * 64)


BROKEN = {
    # how the version is broken: (make it, words of the error /model reports)
    "tampered after registration": (_tampered, "the file changed after registration"),
    "not loadable by onnxruntime": (_unloadable, "onnxruntime cannot load"),
    "trained on another contract": (_other_contract, "was trained on contract"),
}


@pytest.mark.parametrize(("make_broken", "words"), BROKEN.values(), ids=list(BROKEN))
def test_a_broken_champion_is_refused_and_the_old_version_keeps_serving(
    registry_copy: Registry,
    tmp_path: Path,
    make_broken: Callable[[Registry, Path], str],
    words: str,
) -> None:
    env = server_env(tmp_path / "home", registry_copy.root, MLOPS_RELOAD_INTERVAL_S="0.2")
    with bentoml_server(env, tmp_path / "server.log") as server:
        model = f"{server.url}/model"
        broken = make_broken(registry_copy, tmp_path)
        registry_copy.promote(MODEL, broken, actor="test", reason="a broken champion")
        _wait_for(
            lambda: httpx.get(model, timeout=10).json()["refused_version"] == broken,
            15,
            f"{broken} to be refused",
        )
        time.sleep(1.0)  # several reload intervals: a refused version waits 5 s for a retry
        refused = httpx.get(model, timeout=10).json()
        answer = httpx.post(
            f"{server.url}/predict", json={"records": served_records(2)}, timeout=10
        )
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text

        registry_copy.promote(MODEL, "v2", actor="test", reason="a good champion again")
        _wait_for(lambda: httpx.get(model, timeout=10).json()["version"] == "v2", 15, "v2")
        recovered = httpx.get(model, timeout=10).json()

    assert refused["version"] == refused["served_version"] == "v1"
    assert refused["refused_version"] == broken
    assert broken in refused["last_reload_error"]
    assert words in refused["last_reload_error"]
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "v1"
    assert metric_value(metrics, "mlops_model_reloads_total", outcome="refused") == 1
    assert metric_value(metrics, "mlops_model_reloads_total", outcome="loaded") == 1
    assert recovered["refused_version"] is None
    assert recovered["last_reload_error"] is None
