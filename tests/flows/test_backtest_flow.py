"""backtest-policy's triggered decisions are monitor-model's decisions on the same traffic."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from flows.backtest import backtest_policy_flow
from flows.monitoring import monitor_model_flow
from flows.parameters import DataSpec, MonitorThresholds, MonitorWindow, ReplaySpec
from mlops.inference.model import load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.registry.store import Registry
from mlops.training.train import TrainParams
from tests.support.histories import recurring_binary, write_history

pytestmark = pytest.mark.slow
MODEL = "recurring"
T0 = datetime(2031, 1, 1, tzinfo=UTC)
# No cooldown: monitor-model measures it in wall-clock time since registration, the backtest in
# event time; the rest of the policy is compared as it is.
THRESHOLDS = MonitorThresholds(
    cooldown_hours=0, min_new_rows=100, min_labelled_rows=300, performance_lookback_hours=1
)


def test_triggered_decisions_equal_monitor_models_on_the_same_batches(
    prefect_server: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = recurring_binary(batches=6, batch_rows=600, initial_rows=2400)  # A A B B A A
    data, contract = write_history(history, tmp_path / "history", fmt="parquet")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))

    outcome = backtest_policy_flow(
        model_name=MODEL,
        data=DataSpec(contract=str(contract), data_uri=str(data)),
        replay=ReplaySpec(initial="2400", batch="600", policies=["triggered"]),
        training=TrainParams(max_epochs=4, batch_size=128, hidden=(32,), seed=7, accelerator="cpu"),
        thresholds=THRESHOLDS,
        out=str(tmp_path / "report"),
    )
    report = json.loads(Path(outcome["report"]["json"]).read_text())
    batches = report["policies"]["triggered"]["batches"]
    assert outcome["summary"][0]["policy"] == "triggered" and len(batches) == 6
    assert {b["retrained"] for b in batches} == {True, False}  # both kinds of decision occur

    # Replay the same batches to monitor-model: served by the same versions, one hour each
    registry_url = tmp_path / "mlops" / "backtests" / MODEL / "registries" / "triggered"
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(registry_url))
    registry = Registry(str(registry_url))
    for batch in batches:
        at = T0 + timedelta(hours=batch["index"])
        rows = history.batch(batch["index"]).reset_index(drop=True)
        registry.set_alias(MODEL, "champion", batch["version"], actor="test", reason="replay")
        _serve(tmp_path / "mlops", registry, rows, history.contract, at)

        decided = monitor_model_flow(
            model_name=MODEL,
            window=MonitorWindow(start=at, end=at + timedelta(hours=1)),
            thresholds=THRESHOLDS,
            labels_uri=str(data),
            contract=str(contract),
            emit=False,
        )

        assert decided["champion"] == batch["version"]
        assert decided["retrain"] == batch["retrained"], batch["decision"]
        assert batch["decision"].startswith(decided["explanation"])
        assert round(decided["drift_share"], 4) == batch["drift_share"]
        assert decided["constraints_passed"] == batch["constraints_passed"]


def _serve(home: Path, registry: Registry, rows, contract, at: datetime) -> None:
    """Log the rows as the service does: request columns, outputs, version, time served."""
    model = load_from_registry(registry, MODEL, prefer_gpu=False)
    request = [c.name for c in contract.columns if c.role in ("feature", "id", "timestamp")]
    logger = PredictionLogger(
        LogSettings(str(home / "profiles"), str(home / "predictions")),
        model_name=MODEL,
        clock=lambda: at,
    )
    logger.record(
        request_id=f"batch-{at:%H}",
        model_version=model.version,
        features=rows[request],
        outputs=output_frame(model.predict(rows), model.manifest),
        received_at=at,
    )
    assert logger.flush().ok
