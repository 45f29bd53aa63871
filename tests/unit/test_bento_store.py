"""Tests for saving registry versions into a temporary BentoML model store."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import onnx
import pytest
from onnx import TensorProto, helper

from mlops.registry.store import Registry, RegistryError
from mlops.settings import TELEMETRY_OPT_OUTS
from serving.bento_store import bento_name, bento_version, save_to_bentoml


@pytest.fixture
def bento_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Point BentoML's home and model store at a temporary folder, with tracking off."""
    home = tmp_path / "bentoml"
    monkeypatch.setenv("BENTOML_HOME", str(home))
    for key, value in TELEMETRY_OPT_OUTS.items():
        monkeypatch.setenv(key, value)
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore
    from bentoml._internal.utils.analytics.usage_stats import do_not_track

    do_not_track.cache_clear()  # it caches the environment variable on first use
    # The container memoizes home and store on first use: override both for this test.
    (home / "models").mkdir(parents=True)
    with (
        BentoMLContainer.bentoml_home.patch(str(home)),
        BentoMLContainer.model_store.patch(ModelStore(str(home / "models"))),
    ):
        yield home


def _onnx_file(path: Path, op: str = "Identity") -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def _register(registry: Registry, onnx_path: Path, model: str = "fraud"):
    return registry.register(
        model,
        onnx_path=onnx_path,
        manifest={"metrics": {"auc": 0.91}, "contract_fingerprint": "abc123"},
        reference_profile=b"ref",
        model_card="# Fraud model",
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "registry"))


def test_save_puts_files_metadata_and_labels_in_the_store(bento_home, registry, tmp_path):
    import bentoml

    version = _register(registry, _onnx_file(tmp_path / "m.onnx"))

    tag = save_to_bentoml(version, registry, labels={"team": "risk"})

    assert tag == f"fraud:{bento_version(version, registry.location)}"
    assert tag.startswith("fraud:v1-")
    stored = bentoml.models.get(tag)
    assert Path(stored.path).is_relative_to(bento_home)
    model_bytes = Path(stored.path_of("model.onnx")).read_bytes()
    assert model_bytes == registry.read_onnx("fraud", "v1")
    assert Path(stored.path_of("model_card.md")).read_text() == "# Fraud model"
    assert Path(stored.path_of("manifest.json")).is_file()
    metadata = stored.info.metadata
    assert metadata["onnx_sha256"] == version.manifest["onnx_sha256"]
    assert metadata["metrics"] == {"auc": 0.91}
    assert metadata["contract_fingerprint"] == "abc123"
    assert metadata["registry"] == registry.location
    assert stored.info.labels == {
        "registry_model": "fraud",
        "registry_version": "v1",
        "team": "risk",
    }


def test_saving_the_same_version_twice_returns_the_existing_tag(bento_home, registry, tmp_path):
    import bentoml

    version = _register(registry, _onnx_file(tmp_path / "m.onnx"))

    first = save_to_bentoml(version, registry)
    second = save_to_bentoml(version, registry)

    assert first == second
    assert [str(m.tag) for m in bentoml.models.list()] == [first]


def test_a_tag_holding_another_model_is_refused(bento_home, registry, tmp_path):
    import bentoml

    version = _register(registry, _onnx_file(tmp_path / "m.onnx"))
    tag = f"fraud:{bento_version(version, registry.location)}"
    with bentoml.models.create(tag, metadata={"onnx_sha256": "something-else"}):
        pass

    with pytest.raises(RegistryError, match="already exists with onnx_sha256 something-else"):
        save_to_bentoml(version, registry)


def test_a_remote_registry_version_can_be_saved(bento_home, tmp_path):
    root = f"memory://bento-{uuid.uuid4().hex}"
    registry = Registry(root)
    try:
        version = _register(registry, _onnx_file(tmp_path / "m.onnx"), model="Fraud_EU")

        tag = save_to_bentoml(version, registry, bento_model_name="fraud-eu-onnx")
    finally:
        fsspec.filesystem("memory").rm(root, recursive=True)

    assert tag.startswith("fraud-eu-onnx:v1-")


def test_registry_names_become_valid_bento_names():
    assert bento_name("Fraud Model/EU") == "fraud-model-eu"
    assert bento_name("_card.fraud_") == "card.fraud"
    with pytest.raises(ValueError, match="bento_model_name"):
        bento_name("__")
