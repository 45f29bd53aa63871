"""monitor-model on traffic replayed from the simulator: stable, shifted, concept-drifted days."""

from __future__ import annotations

import html
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.monitoring import monitor_model_flow
from flows.parameters import MonitorThresholds, MonitorWindow
from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, generate_day, labelled_rows, simulate
from mlops.inference.model import load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.registry.store import Registry
from mlops.release.build import train_and_register
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams
from tests.support.prefect_events import read_events

pytestmark = pytest.mark.slow
MODEL = "card-fraud"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
CONFIG = SimulationConfig(days=30, rows_per_day=5000, seed=3)  # default timeline
RELAXED = MonitorThresholds(cooldown_hours=0, min_new_rows=100, min_labelled_rows=300)
ARTIFACTS_SHOWN = ("drift-report", "monitoring-summary", "loop-chart")


@pytest.fixture(scope="module")
def champion_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Train v1 on the stable two weeks and make it champion; simulate labels for 24 days."""
    home = tmp_path_factory.mktemp("monitoring")
    simulate(str(home / "sim"), CONFIG)
    train_and_register(
        Registry(str(home / "registry")), MODEL, load_contract(DEFAULT_CONTRACT),
        labelled_rows(CONFIG, days=14), TrainParams(max_epochs=6, seed=1),
        actor="test", reason="fixture", data_uri="sim", promote=True,
    )  # fmt: skip
    return home


def _serve_day(home: Path, day: int, at: datetime) -> None:
    """Log a simulated day as the service would: features, outputs, version, time served."""
    registry = Registry(str(home / "registry"))
    model = load_from_registry(registry, MODEL, prefer_gpu=False)
    features, _ = generate_day(CONFIG, day)
    valid = features[features["channel"].isin(["online", "pos", "contactless", "atm"])]
    valid = valid.dropna(subset=["merchant_category"])
    valid = valid[valid["customer_age"] >= 18]
    logger = PredictionLogger(
        LogSettings(str(home / "mlops" / "profiles"), str(home / "mlops" / "predictions")),
        model_name=MODEL,
        clock=lambda: at,
    )
    for chunk in range(0, len(valid), 500):
        rows = valid.iloc[chunk : chunk + 500].reset_index(drop=True)
        logger.record(
            request_id=f"r{day}-{chunk}",
            model_version=model.version,
            features=rows,
            outputs=output_frame(model.predict(rows), model.manifest),
            received_at=at,
        )
    assert logger.flush().ok


def _monitor(
    home: Path,
    monkeypatch: pytest.MonkeyPatch,
    hour: int,
    *,
    labels: bool = True,
    thresholds: MonitorThresholds = RELAXED,
) -> dict:
    monkeypatch.setenv("MLOPS_HOME", str(home / "mlops"))
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(home / "registry"))
    window = MonitorWindow(start=T0 + timedelta(hours=hour), end=T0 + timedelta(hours=hour + 1))
    labels_uri = str(home / "sim" / "labels") if labels else None
    return monitor_model_flow(window=window, thresholds=thresholds, labels_uri=labels_uri)


def _latest_artifact(key: str) -> Any:
    """Return the newest artifact with this key."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no {key} artifact"
    return found[0]


def test_monitoring_reports_the_covariate_shift_and_retrains_on_it_only_without_labels(
    prefect_server: None, champion_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for hour, day in enumerate((12, 13, 14, 15)):
        _serve_day(champion_home, day, T0 + timedelta(hours=hour, minutes=10))
    results = [_monitor(champion_home, monkeypatch, hour) for hour in range(4)]
    # each window took the one profile window served in it; the loop chart shows all four
    assert results[0]["profile_windows"] == [(T0 + timedelta(minutes=10)).isoformat()]
    page = (champion_home / "mlops" / "reports" / MODEL / "loop.html").read_text()
    assert page.count("<tr>") == 1 + 4 and html.escape(results[3]["explanation"]) in page
    assert (champion_home / "mlops" / "reports" / MODEL / "loop.svg").exists()

    # the shift drifts the spending columns, but the labels show no loss: drift only explains
    assert [r["retrain"] for r in results] == [False, False, False, False], [
        r["explanation"] for r in results
    ]
    shifted = results[3]
    assert shifted["evidence"] == "labels" and "drift" in shifted["triggers"]
    assert "amount" in shifted["drifted_features"]
    assert shifted["explanation"].endswith("which alone is not evidence of harm")
    assert not shifted["event_emitted"]
    assert (
        Path(shifted["drift_report"].removeprefix("file://"))
        .read_text()
        .startswith("<!DOCTYPE html>")
    )
    # the UI shows the report itself, verdict first, with its chart; no link to a file anywhere
    report, summary, chart = (_latest_artifact(k) for k in ARTIFACTS_SHOWN)
    assert report.type == "markdown" and report.data.startswith("## "), report.data[:200]
    assert "amount" in report.data.splitlines()[0] and "| drifted | amount |" in report.data
    for artifact in (report, summary, chart):
        assert "](data:image/svg+xml;base64," in artifact.data, artifact.key
        assert "](file://" not in artifact.data, artifact.key
    # without labels (and without the estimate) drift is the evidence left: it retrains
    blind = _monitor(
        champion_home, monkeypatch, 3, labels=False,
        thresholds=MonitorThresholds(
            cooldown_hours=0, min_new_rows=100, min_labelled_rows=300, use_estimate=False
        ),
    )  # fmt: skip
    assert blind["retrain"] and blind["reason"] == "drift", blind["explanation"]
    assert blind["event_emitted"]
    events = read_events("mlops.model.drift-detected")
    assert any(e.resource.id == f"mlops.model.{MODEL}" for e in events)


def test_monitoring_detects_the_concept_drift_through_labelled_performance(
    prefect_server: None, champion_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for day in (20, 21, 22, 23):
        _serve_day(champion_home, day, T0 + timedelta(hours=10, minutes=5 + day))
    result = _monitor(champion_home, monkeypatch, 10)

    live = next(p for p in result["performance"] if p["version"] == "v1")
    assert live["labelled_rows"] >= 300
    assert live["live"] < live["holdout"] - 0.05, live
    assert result["retrain"] and result["reason"] == "performance", result["explanation"]
    assert read_events("mlops.model.performance-degraded")
