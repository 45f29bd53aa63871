"""Registries of two MLOPS_HOMEs share one BentoML model store without clashing."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from mlops.registry.store import Registry
from mlops.settings import TELEMETRY_OPT_OUTS, Settings
from serving.bento_store import save_to_bentoml

MODEL = "card-fraud"


@contextmanager
def _bentoml_home(home: Path, models: Path, monkeypatch: pytest.MonkeyPatch):
    """Point BENTOML_HOME and BentoML's model store at `home` and `models`."""
    monkeypatch.setenv("BENTOML_HOME", str(home))
    for key, value in TELEMETRY_OPT_OUTS.items():
        monkeypatch.setenv(key, value)
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.models.model import ModelStore

    # BentoML reads its home once per process: override the memoized home and store.
    with (
        BentoMLContainer.bentoml_home.patch(str(home)),
        BentoMLContainer.model_store.patch(ModelStore(str(models))),
    ):
        yield


def _register(home: Path, op: str) -> tuple[Registry, object]:
    """Register v1 of MODEL (an ONNX graph of one `op`) in the registry of MLOPS_HOME `home`."""
    home.mkdir(parents=True)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node(op, ["x"], ["y"])], op, [x], [y])
    onnx.save(helper.make_model(graph), str(home / "model.onnx"))
    registry = Registry(Settings(home=str(home)).registry)
    version = registry.register(
        MODEL, onnx_path=home / "model.onnx", manifest={}, reference_profile=b"r", model_card="m"
    )
    return registry, version


def test_two_homes_save_their_v1_under_distinct_tags(tmp_path, monkeypatch):
    import bentoml

    first, first_v1 = _register(tmp_path / "home-a", "Identity")
    second, second_v1 = _register(tmp_path / "home-b", "Neg")
    assert first_v1.version == second_v1.version == "v1"
    bento = tmp_path / "bentoml"
    (bento / "models").mkdir(parents=True)

    with _bentoml_home(bento, bento / "models", monkeypatch):
        tag_a = save_to_bentoml(first_v1, first)
        tag_b = save_to_bentoml(second_v1, second)
        again = save_to_bentoml(second_v1, second)
        stored = {tag: bentoml.models.get(tag) for tag in (tag_a, tag_b)}

    assert tag_a != tag_b
    assert again == tag_b
    for tag, registry in ((tag_a, first), (tag_b, second)):
        assert tag.startswith(f"{MODEL}:v1-")
        model_file = Path(stored[tag].path_of("model.onnx")).read_bytes()
        assert model_file == registry.read_onnx(MODEL, "v1")
        assert stored[tag].info.metadata["registry"] == registry.location


def test_a_store_that_cannot_take_the_model_is_reported_not_raised(tmp_path, monkeypatch):
    from serving.bento_store import try_save_to_bentoml

    registry, version = _register(tmp_path / "home", "Identity")
    bento = tmp_path / "bentoml"
    bento.mkdir()
    (bento / "models").write_text("a file where the model store should be")

    with _bentoml_home(bento, bento / "models", monkeypatch):
        saved = try_save_to_bentoml(version, registry)

    assert saved.tag is None
    assert "NotADirectoryError" in str(saved.error)
    assert "Not saved to the BentoML model store" in saved.describe()
