"""Every store on a real S3 API (moto's server): MLOPS_HOME=s3://bucket/prefix, no code options.

The flows, serving's loader and the Dask workers reach the bucket through the usual AWS
variables alone (tests.support.s3_server), as they would reach a team's object store.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pandas as pd
import pytest

from flows.parameters import GateSpec
from flows.scoring import score_batch_flow
from flows.training import train_model_flow
from mlops.batch_scoring import list_partitions
from mlops.data.simulate import SimulationConfig, simulate
from mlops.inference.model import load_from_registry
from mlops.registry.store import Registry
from mlops.training.train import TrainParams
from tests.support.dask_cluster import dask_cluster
from tests.support.models import MODEL, registry_template

pytestmark = pytest.mark.slow
FAST = TrainParams(max_epochs=4, patience=2, refit=False)
ROWS = 200


def _bucket() -> fsspec.AbstractFileSystem:
    """Return an S3 file system with no listing cache, built from the environment alone."""
    return fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False)


def _keys(home: str) -> list[str]:
    """Return every key under `home`, relative to it."""
    root = home.removeprefix("s3://")
    return sorted(p.removeprefix(f"{root}/") for p in _bucket().find(root))


def test_train_model_on_s3_writes_every_store_to_the_bucket_and_serving_loads_it(
    prefect_server: None, s3_home: str
) -> None:
    simulate(
        f"{s3_home}/data/simulated",
        SimulationConfig(days=10, rows_per_day=800, scenario="stable", seed=7),
    )

    # The floor only keeps a small, fast model from failing a test of where files go.
    result = train_model_flow(training=FAST, gate=GateSpec(floor=0.5))

    assert result["promoted"] and result["version"] == "v1", result
    keys = _keys(s3_home)
    version = "registry/card-fraud/versions/v1"
    for name in ("model.onnx", "manifest.json", "reference.bin", "model_card.md"):
        assert f"{version}/{name}" in keys
    assert {"registry/card-fraud/aliases.json", "registry/card-fraud/history.jsonl"} <= set(keys)
    assert not [k for k in keys if ".staging-" in k or ".tmp-" in k or k.endswith(".lock")]
    assert any(k.startswith("data/simulated/raw/") for k in keys)

    # Serving's loader reads the champion from the bucket, checksum verified, and it answers.
    registry = Registry(f"{s3_home}/registry")
    assert registry.aliases("card-fraud").aliases["champion"] == "v1"
    loaded = load_from_registry(registry, "card-fraud", "champion", prefer_gpu=False)
    assert loaded.version == "v1"
    raw = list_partitions(f"{s3_home}/data/simulated/raw")[0]
    with _bucket().open(raw.uri.removeprefix("s3://"), "rb") as fh:
        rows = pd.read_parquet(fh).head(5)
    assert len(loaded.predict(rows)) == 5


def _upload_template_registry(s3_home: str) -> Registry:
    """Copy the session's trained registry (MODEL v1, v2) into the bucket; champion v2."""
    _bucket().put(registry_template(), f"{s3_home.removeprefix('s3://')}/registry", recursive=True)
    registry = Registry(f"{s3_home}/registry")
    registry.promote(MODEL, "v2", actor="tests", reason="champion for scoring")
    return registry


def test_score_batch_on_a_dask_cluster_reads_and_writes_the_bucket(
    prefect_server: None, s3_home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _upload_template_registry(s3_home)
    simulated = f"{s3_home}/data/simulated"
    simulate(simulated, SimulationConfig(days=3, rows_per_day=ROWS, scenario="stable", seed=4))
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_DASK_ADDRESS"}  # AWS_* included

    with dask_cluster(tmp_path / "dask", workers=2, env=env) as cluster:
        monkeypatch.setenv("MLOPS_DASK_ADDRESS", cluster.address)
        state = score_batch_flow(model_name=MODEL, return_state=True)
        assert state.is_completed(), f"{state.message}\n{cluster.logs()}"

    assert state.result() == {
        "model": MODEL, "version": "v2", "rows": 3 * ROWS, "valid": 3 * ROWS, "quarantined": 0,
    }  # fmt: skip
    assert len(list_partitions(f"{simulated}/raw")) == 3
    keys = _keys(s3_home)
    scores = [k for k in keys if k.startswith(f"predictions-batch/{MODEL}/")]
    assert len(scores) == 3, keys
    assert len([k for k in keys if k.startswith(f"profiles/{MODEL}/v2/batch-")]) == 3, keys
    fs = _bucket()
    root = s3_home.removeprefix("s3://")
    frames = [pd.read_parquet(fs.open(f"{root}/{key}", "rb")) for key in scores]
    assert sum(len(frame) for frame in frames) == 3 * ROWS
