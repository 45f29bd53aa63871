"""score-batch against a Dask cluster of separate processes: a scheduler and two workers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, cast

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.scoring import score_batch_flow
from mlops.batch_scoring import BatchTarget, list_partitions, score_partition
from mlops.data.simulate import SimulationConfig, simulate
from mlops.settings import DEFAULT_CONTRACT
from tests.support.dask_cluster import dask_cluster, killed_when_busy
from tests.support.models import MODEL, copy_registry

pytestmark = pytest.mark.slow
ROWS = 200


def _simulate(mlops_home: str, days: int) -> str:
    """Promote v2 of the test registry and simulate `days` partitions; return their folder."""
    registry = copy_registry(f"{mlops_home}/registry")
    registry.promote(MODEL, "v2", actor="tests", reason="champion for scoring")
    simulated = f"{mlops_home}/data/simulated"
    simulate(simulated, SimulationConfig(days=days, rows_per_day=ROWS, scenario="stable", seed=4))
    return f"{simulated}/raw"


def _cluster_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "MLOPS_DASK_ADDRESS"}


def _scored_by_partition(flow_run_id: Any) -> dict[str, dict[str, Any]]:
    """Return the rows of the run's `batch-scoring` table artifact by partition, without totals."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    data = next(a.data for a in found if a.key == "batch-scoring")
    rows = cast(list[dict[str, Any]], json.loads(data) if isinstance(data, str) else data)
    return {row["partition"]: row for row in rows if "worker" in row}


def test_score_batch_runs_on_an_external_scheduler_and_uses_both_worker_processes(
    prefect_server: None, mlops_home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _simulate(mlops_home, days=4)

    with dask_cluster(tmp_path / "dask", workers=2, env=_cluster_env()) as cluster:
        monkeypatch.setenv("MLOPS_DASK_ADDRESS", cluster.address)
        monkeypatch.setenv("MLOPS_DASK_WORKERS", "1")  # were a local cluster used, one worker
        # A relative home, as `mlops score` run in a project folder: the workers run elsewhere.
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("MLOPS_HOME", Path(mlops_home).name)
        state = score_batch_flow(model_name=MODEL, return_state=True)
        assert state.is_completed(), f"{state.message}\n{cluster.logs()}"
        scored = _scored_by_partition(state.state_details.flow_run_id)
        used = {row["worker"] for row in scored.values()}
        assert used == set(cluster.joined), f"scored on {used}, cluster's workers {cluster.joined}"
        processes = {cluster.process_of(address).name for address in used}

    assert processes == {"dask-worker-0", "dask-worker-1"}
    assert state.result() == {
        "model": MODEL, "version": "v2", "rows": 4 * ROWS, "valid": 4 * ROWS, "quarantined": 0,
    }  # fmt: skip
    partitions = list_partitions(raw)
    assert sorted(scored) == sorted(p.name for p in partitions) and len(partitions) == 4

    # The same partitions scored in this process give the same predictions, row for row.
    here = BatchTarget(
        registry_url=f"{mlops_home}/registry", model_name=MODEL, version="v2",
        contract_uri=str(DEFAULT_CONTRACT), output_url=str(tmp_path / "here"),
        profiles_url=str(tmp_path / "here-profiles"),
        quarantine_url=str(tmp_path / "here-quarantine"),
    )  # fmt: skip
    for partition in partitions:
        expected = pd.read_parquet(score_partition(partition, here).predictions_uri)
        got = pd.read_parquet(scored[partition.name]["predictions_uri"])
        assert len(got) == ROWS
        pd.testing.assert_frame_equal(got, expected)


def test_a_worker_killed_while_it_holds_a_partition_leaves_the_batch_to_the_other(
    prefect_server: None, mlops_home: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = _simulate(mlops_home, days=4)

    with dask_cluster(tmp_path / "dask", workers=2, env=_cluster_env()) as cluster:
        monkeypatch.setenv("MLOPS_DASK_ADDRESS", cluster.address)
        victim, survivor = sorted(cluster.joined, key=lambda a: cluster.process_of(a).name)
        victim_process = cluster.process_of(victim)
        with killed_when_busy(cluster, victim) as held:
            state = score_batch_flow(model_name=MODEL, return_state=True)
        assert held, f"worker {victim} got no partition to die with"
        assert not victim_process.alive()
        assert state.is_completed(), f"{state.message}\n{cluster.logs()}"

    scored = _scored_by_partition(state.state_details.flow_run_id)
    assert sorted(scored) == sorted(p.name for p in list_partitions(raw))
    assert {row["worker"] for row in scored.values()} == {survivor}
    assert sum(len(pd.read_parquet(row["predictions_uri"])) for row in scored.values()) == 4 * ROWS
