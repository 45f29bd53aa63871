"""Missing, truncated and garbled model files: the service reports them and recovers once fixed."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops.registry.store import Registry
from mlops.settings import get_settings
from serving.observability import service_metrics
from serving.runtime import ModelKeeper
from tests.support.service import MODEL, open_client, served_records

ADMIN = {"Authorization": "Bearer admin-secret"}


def _copy_of_v1(registry: Registry, tmp_path: Path) -> str:
    """Register v1's files again as a new version, and make it the champion."""
    v1 = registry.get(MODEL, "v1")
    source = Path(v1.uri)
    onnx_path = tmp_path / "model.onnx"
    shutil.copyfile(source / "model.onnx", onnx_path)
    version = registry.register(
        MODEL,
        onnx_path=onnx_path,
        manifest=v1.manifest,
        reference_profile=(source / "reference.bin").read_bytes(),
        model_card=(source / "model_card.md").read_text(),
        actor="test",
    ).version
    registry.promote(MODEL, version, actor="test", reason="a champion about to break")
    return version


def _files(registry: Registry, version: str) -> Path:
    return Path(registry.get(MODEL, version).uri)


def _remove_model(registry: Registry, version: str) -> None:
    (_files(registry, version) / "model.onnx").unlink()


def _truncate_manifest(registry: Registry, version: str) -> None:
    manifest = _files(registry, version) / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])


def _garble_aliases(registry: Registry, version: str) -> None:
    (Path(registry.root) / MODEL / "aliases.json").write_text('{"revision": 3, "alias')


BREAKAGES: dict[str, tuple[Callable[[Registry, str], None], str]] = {
    # how the new champion breaks after its promotion: (break it, words of the error)
    "model.onnx missing": (_remove_model, "model.onnx"),
    "manifest truncated": (_truncate_manifest, "manifest"),
    "aliases.json garbled": (_garble_aliases, "aliases"),
}


@pytest.fixture
def registry_env(
    service_env: Path, registry_copy: Registry, monkeypatch: pytest.MonkeyPatch
) -> Registry:
    """Serve a private registry copy; the service reloads only when asked to."""
    monkeypatch.setenv("MLOPS_REGISTRY_URL", registry_copy.root)
    monkeypatch.setenv("MLOPS_RELOAD_INTERVAL_S", "3600")
    return registry_copy


@pytest.mark.parametrize(("breaks", "words"), BREAKAGES.values(), ids=list(BREAKAGES))
def test_a_broken_registry_answers_reload_with_409_and_shows_the_error_while_v1_serves(
    registry_env: Registry, tmp_path: Path, breaks: Callable[[Registry, str], None], words: str
) -> None:
    with open_client() as client:
        broken = _copy_of_v1(registry_env, tmp_path)
        breaks(registry_env, broken)
        reload = client.post("/admin/reload", headers=ADMIN)
        info = client.get("/model")
        answer = client.post("/predict", json={"records": served_records(2)})

    assert reload.status_code == 409, reload.text
    assert words in reload.json()["error"]
    assert info.status_code == 200
    assert info.json()["version"] == "v1"
    assert info.json()["error"] == info.json()["last_reload_error"] == reload.json()["error"]
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "v1"


def test_a_refused_version_is_loaded_once_its_file_is_repaired(
    registry_env: Registry, tmp_path: Path
) -> None:
    with open_client() as client:
        version = _copy_of_v1(registry_env, tmp_path)
        onnx = _files(registry_env, version) / "model.onnx"
        good = onnx.read_bytes()
        onnx.write_bytes(b"garbage " * 64)
        refused = client.post("/admin/reload", headers=ADMIN)
        onnx.write_bytes(good)
        repaired = client.post("/admin/reload", headers=ADMIN)
        info = client.get("/model").json()

    assert refused.status_code == 409
    assert refused.json()["refused_version"] == version
    assert repaired.status_code == 200, repaired.text
    assert repaired.json()["changed"] is True
    assert info["version"] == version
    assert info["error"] is None and info["refused_version"] is None


def _tamper_model(registry: Registry, version: str) -> None:
    (_files(registry, version) / "model.onnx").write_bytes(b"garbage " * 64)


AT_START: dict[str, tuple[Callable[[Registry, str], None], str]] = {
    # how the champion is broken when the service starts: (break it, words of the error)
    "model.onnx tampered": (_tamper_model, "changed after registration"),
    "model.onnx missing": (_remove_model, "model.onnx"),
    "manifest truncated": (_truncate_manifest, "manifest"),
}


@pytest.mark.parametrize(("breaks", "words"), AT_START.values(), ids=list(AT_START))
def test_a_service_started_on_a_corrupt_champion_says_why_and_recovers_once_repaired(
    registry_env: Registry, breaks: Callable[[Registry, str], None], words: str
) -> None:
    folder = _files(registry_env, "v1")
    good = {f.name: f.read_bytes() for f in folder.iterdir()}
    breaks(registry_env, "v1")
    with open_client() as client:
        info = client.get("/model")
        ready = client.get("/readyz")
        predict = client.post("/predict", json={"records": served_records(1)})
        for name, content in good.items():
            (folder / name).write_bytes(content)
        reload = client.post("/admin/reload", headers=ADMIN)
        recovered = client.get("/model")

    assert info.status_code == ready.status_code == predict.status_code == 503
    assert "v1" in info.json()["error"]
    assert words in info.json()["error"]
    assert reload.status_code == 200, reload.text
    assert recovered.status_code == 200
    assert recovered.json()["version"] == "v1"


def test_a_pinned_model_folder_without_its_model_is_reported_not_fatal(
    service_env: Path, serving_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = tmp_path / "pinned"
    shutil.copytree(_files(Registry(str(serving_home / "registry")), "v1"), pinned)
    (pinned / "model.onnx").unlink()
    monkeypatch.setenv("MLOPS_SERVE_MODEL_DIR", str(pinned))

    with open_client() as client:
        info = client.get("/model")

    assert info.status_code == 503
    assert "model.onnx" in info.json()["error"]


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_registry_poll_retries_a_refused_version_after_a_back_off(
    registry_env: Registry, tmp_path: Path
) -> None:
    clock = Clock()
    settings = get_settings(reload_interval_s=1.0)
    keeper: Any = ModelKeeper(settings, service_metrics(), clock=clock)
    keeper.reload()
    version = _copy_of_v1(registry_env, tmp_path)
    onnx = _files(registry_env, version) / "model.onnx"
    good = onnx.read_bytes()
    onnx.write_bytes(b"garbage " * 64)

    first = keeper.reload()
    onnx.write_bytes(good)
    clock.now += 1.0
    too_soon = keeper.reload()
    clock.now += 60.0
    retried = keeper.reload()

    assert first["refused_version"] == version
    assert too_soon["served_version"] == "v1" and too_soon["refused_version"] == version
    assert retried["served_version"] == version
    assert retried["error"] is None
