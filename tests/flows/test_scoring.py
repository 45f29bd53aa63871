"""score-batch under a real (temporary) Prefect API, on a local Dask cluster of two processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

from flows.scoring import score_batch_flow
from mlops.batch_scoring import BatchTarget, list_partitions, score_partition
from mlops.data.simulate import SimulationConfig, simulate
from mlops.data.sources import DataSourceError
from mlops.monitoring.profile import profile_from_bytes, profile_summary
from tasks.scoring import BatchTaskRunner
from tests.support.models import MODEL, copy_registry

pytestmark = pytest.mark.slow
BAD_DAY = "date=2026-01-02"
OUTPUTS = ["prediction", "probability_0", "probability_1"]


def _simulate_with_a_bad_csv(home: str) -> tuple[str, list[str]]:
    """Simulate 3 days x 300 rows; turn day 2 into a CSV with 4 rows breaking the contract."""
    simulated = f"{home}/data/simulated"
    simulate(simulated, SimulationConfig(days=3, rows_per_day=300, scenario="stable", seed=9))
    day = Path(f"{simulated}/raw/{BAD_DAY}")
    frame = pd.read_parquet(day / "part-000.parquet").astype({"hour": object})
    frame.loc[[3, 4], "amount"] = -5.0  # below the contract's min
    frame.loc[10, "channel"] = "carrier-pigeon"  # not an allowed value
    frame.loc[20, "hour"] = "noon"  # not an integer
    frame.to_csv(day / "part-000.csv", index=False)
    (day / "part-000.parquet").unlink()
    return f"{simulated}/raw", frame.loc[[3, 4, 10, 20], "transaction_id"].tolist()


def _summary(flow_run_id: Any) -> list[dict[str, Any]]:
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    data = next(a.data for a in found if a.key == "batch-scoring")
    return json.loads(data) if isinstance(data, str) else data


def test_score_batch_scores_every_valid_row_on_dask_and_quarantines_the_rest(
    prefect_server: None, mlops_home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DASK_WORKERS", "2")
    monkeypatch.delenv("MLOPS_DASK_ADDRESS", raising=False)
    registry = copy_registry(f"{mlops_home}/registry")
    registry.promote(MODEL, "v2", actor="tests", reason="champion for scoring")
    raw, bad_ids = _simulate_with_a_bad_csv(mlops_home)

    state = score_batch_flow(model_name=MODEL, return_state=True)
    result = state.result()

    assert result == {"model": MODEL, "version": "v2", "rows": 900, "valid": 896, "quarantined": 4}
    written = sorted(Path(f"{mlops_home}/predictions-batch/{MODEL}").glob("*.parquet"))
    assert [p.stem for p in written] == [f"date=2026-01-0{d}_part-000" for d in (1, 2, 3)]
    predictions = pd.concat([pd.read_parquet(p) for p in written], ignore_index=True)
    assert list(predictions.columns) == ["transaction_id", "timestamp", *OUTPUTS, "model_version"]
    assert len(predictions) == 896 and predictions["transaction_id"].is_unique
    assert not set(bad_ids) & set(predictions["transaction_id"])
    assert set(predictions["model_version"]) == {"v2"}
    assert np.allclose(predictions[OUTPUTS[1:]].sum(axis=1), 1.0, atol=1e-5)

    quarantine = f"{mlops_home}/data/quarantine/card-fraud/score-{BAD_DAY}_part-000.parquet"
    quarantined = pd.read_parquet(quarantine)
    assert sorted(quarantined["transaction_id"]) == sorted(bad_ids)
    reasons = " ".join(quarantined["_reason"])
    assert "amount" in reasons and "channel" in reasons and "hour" in reasons

    profiles = sorted(Path(f"{mlops_home}/profiles/{MODEL}/v2").glob("batch-*.bin"))
    assert len(profiles) == 3
    bad_profile = next(p for p in profiles if BAD_DAY in p.name)
    counts = profile_summary(profile_from_bytes(bad_profile.read_bytes()))["count"]
    assert counts["amount"] == 300 and counts["prediction"] == 296

    summary = _summary(state.state_details.flow_run_id)
    by_partition = {row["partition"]: row for row in summary}
    bad = by_partition[f"{BAD_DAY}_part-000"]
    assert (bad["rows"], bad["valid"], bad["quarantined"]) == (300, 296, 4)
    assert bad["quarantine_uri"] == quarantine
    workers = {row["worker"] for row in summary if "worker" in row}
    assert workers and all(w.startswith("tcp://127.0.0.1:") for w in workers)
    assert summary[-1]["rows"] == 900 and summary[-1]["quarantined"] == 4

    # The same partition scored in this process gives the same predictions.
    again = BatchTarget(
        registry_url=registry.root, model_name=MODEL, version="v2",
        contract_uri=str(Path(__file__).parents[2] / "contracts" / "card_fraud.yaml"),
        output_url=f"{mlops_home}/sequential", profiles_url=f"{mlops_home}/sequential-profiles",
        quarantine_url=f"{mlops_home}/sequential-quarantine",
    )  # fmt: skip
    for partition in list_partitions(raw):
        report = score_partition(partition, again)
        expected = pd.read_parquet(report.predictions_uri)
        got = pd.read_parquet(by_partition[partition.name]["predictions_uri"])
        pd.testing.assert_frame_equal(got, expected)


def test_partitions_are_named_by_relative_path_and_selected_by_name_or_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for day in ("date=2026-01-01", "date=2026-01-02"):
        (tmp_path / "raw" / day).mkdir(parents=True)
        pd.DataFrame({"a": [1]}).to_csv(tmp_path / "raw" / day / "part-000.csv", index=False)
    monkeypatch.chdir(tmp_path)

    names = [p.name for p in list_partitions("raw")]
    chosen = list_partitions("./raw/", ["date=2026-01-02"])

    assert names == ["date=2026-01-01_part-000", "date=2026-01-02_part-000"]
    assert [p.name for p in chosen] == ["date=2026-01-02_part-000"]
    with pytest.raises(DataSourceError, match=r"date=2026-01-09.*date=2026-01-01_part-000"):
        list_partitions("raw", ["date=2026-01-09"])
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "raw" / "date=2026-01-01" / "part-000.parquet")
    with pytest.raises(DataSourceError, match=r"share partition names.*date=2026-01-01_part-000"):
        list_partitions("raw")


def test_a_partition_that_breaks_the_contract_fails_the_run_after_the_others_are_scored(
    prefect_server: None, mlops_home: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_DASK_WORKERS", "2")
    registry = copy_registry(f"{mlops_home}/registry")
    registry.promote(MODEL, "v1", actor="tests", reason="champion for scoring")
    data = Path(mlops_home) / "incoming"
    simulate(str(data / "sim"), SimulationConfig(days=1, rows_per_day=50, scenario="stable"))
    good = pd.read_parquet(next((data / "sim" / "raw").rglob("*.parquet")))
    good.to_parquet(data / "good.parquet")
    good.drop(columns=["amount"]).to_csv(data / "no-amount.csv", index=False)

    with pytest.raises(RuntimeError, match=r"1 of 2 partitions failed: no-amount: .*'amount'"):
        score_batch_flow(
            data_uri=str(data), model_name=MODEL, output_uri=f"{mlops_home}/out",
            partitions=["good.parquet", "no-amount"],
        )  # fmt: skip

    assert len(pd.read_parquet(f"{mlops_home}/out/{MODEL}/good.parquet")) == 50
    assert not Path(f"{mlops_home}/out/{MODEL}/no-amount.parquet").exists()


def test_a_partition_without_valid_rows_writes_empty_predictions_and_a_profile(
    tmp_path: Path,
) -> None:
    registry = copy_registry(str(tmp_path / "registry"))
    simulate(str(tmp_path / "sim"), SimulationConfig(days=1, rows_per_day=20, scenario="stable"))
    frame = pd.read_parquet(next((tmp_path / "sim" / "raw").rglob("*.parquet")))
    frame.assign(amount=-1.0).to_parquet(tmp_path / "all-bad.parquet")
    target = BatchTarget(
        registry_url=registry.root, model_name=MODEL, version="v1",
        contract_uri=str(Path(__file__).parents[2] / "contracts" / "card_fraud.yaml"),
        output_url=str(tmp_path / "out"), profiles_url=str(tmp_path / "profiles"),
        quarantine_url=str(tmp_path / "quarantine"),
    )  # fmt: skip

    (partition,) = list_partitions(str(tmp_path / "all-bad.parquet"))
    report = score_partition(partition, target)

    assert (report.rows, report.valid, report.quarantined) == (20, 0, 20)
    written = pd.read_parquet(report.predictions_uri)
    assert len(written) == 0
    assert list(written.columns) == ["transaction_id", "timestamp", *OUTPUTS, "model_version"]
    counts = profile_summary(profile_from_bytes(Path(report.profile_uri).read_bytes()))["count"]
    assert counts["amount"] == 20 and "prediction" not in counts.index


def test_the_task_runner_picks_its_cluster_from_the_settings_when_a_run_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLOPS_DASK_ADDRESS", "tcp://scheduler.example:8786")
    with BatchTaskRunner().duplicate() as remote:  # the client connects lazily: nothing dials
        assert (remote.address, remote.cluster_kwargs) == ("tcp://scheduler.example:8786", {})

    monkeypatch.delenv("MLOPS_DASK_ADDRESS")
    monkeypatch.setenv("MLOPS_DASK_WORKERS", "3")
    with BatchTaskRunner().duplicate() as local:
        assert local.address is None
        assert local.cluster_kwargs["n_workers"] == 3
        assert local.cluster_kwargs["threads_per_worker"] == 1
