"""monitor-model counts new rows since the last training across windows, not in one window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from flows.monitoring import policy_inputs
from mlops.inference.model import load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_window_profiles
from mlops.monitoring.window import early_live_metric
from mlops.registry.store import Registry
from mlops.release.build import train_and_register
from mlops.settings import Settings
from tasks.monitoring import record_decision
from tests.support.synthetic import FAST, make_contract, make_frame

MODEL = "counting"


def test_new_rows_are_the_rows_served_since_the_last_registration(tmp_path: Path) -> None:
    settings = Settings(home=str(tmp_path / "home"))
    registry = Registry(settings.registry)
    contract = make_contract("binary")
    train_and_register(
        registry, MODEL, contract, make_frame("binary", 2400, seed=1), FAST,
        actor="test", reason="fixture", promote=True, prefer_gpu=False,
    )  # fmt: skip
    model = load_from_registry(registry, MODEL, prefer_gpu=False)
    # served after v1 was registered, on the hour (profile windows are picked by their start)
    start = (datetime.now(UTC) + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
    for hour, rows in enumerate((600, 700)):
        at = start + timedelta(hours=hour)
        frame = make_frame("binary", rows, seed=10 + hour)
        logger = PredictionLogger(
            LogSettings(settings.store("profiles"), settings.store("predictions")),
            model_name=MODEL,
            clock=lambda at=at: at,
        )
        logger.record(
            request_id=f"r{hour}",
            model_version=model.version,
            features=frame[list(contract.feature_names)],
            outputs=output_frame(model.predict(frame), model.manifest),
            received_at=at,
        )
        assert logger.flush().ok
    end = start + timedelta(hours=2)
    window = read_window_profiles(
        settings.store("profiles"), MODEL, model.version, end - timedelta(hours=1), end, 300
    )
    settings = settings.model_copy(update={"model_name": MODEL})
    assert window is not None
    drift = SimpleNamespace(n_features=7, drifted_features=[])  # the seam: drift is not counted

    champion = registry.get(MODEL, model.version)
    inputs = policy_inputs(settings, registry, champion, window, drift, [], "roc_auc", end)

    assert inputs.new_rows == 600 + 700  # both windows since v1, not the last window's 700
    assert inputs.last_retrain is not None and inputs.last_retrain < start
    assert inputs.live_baseline is None  # no earlier window

    # The monitoring history's first window of v1 with enough labels is its live baseline.
    for live, rows in ((0.97, 120), (0.93, 800), (0.88, 900), (0.89, 700), (0.5, 900)):
        performance = [{"version": "v1", "metric": "roc_auc", "live": live, "labelled_rows": rows}]
        entry = {"champion": "v1", "drift_share": 0.0, "performance": performance}
        record_decision.fn(settings, MODEL, entry)
    inputs = policy_inputs(
        settings, registry, champion, window, drift, [], "roc_auc", end, min_labelled_rows=500
    )
    assert inputs.live_baseline == pytest.approx((0.93 + 0.88 + 0.89) / 3)


def test_the_live_baseline_is_the_champion_s_first_window_with_enough_labels():
    windows = [
        [{"version": "v1", "metric": "roc_auc", "live": 0.7, "labelled_rows": 900}],
        [{"version": "v2", "metric": "roc_auc", "live": 0.95, "labelled_rows": 100}],
        [{"version": "v2", "metric": "roc_auc", "live": float("nan"), "labelled_rows": 900}],
        [{"version": "v2", "metric": "roc_auc", "live": 0.91, "labelled_rows": 600}],
        [{"version": "v2", "metric": "roc_auc", "live": 0.85, "labelled_rows": 900}],
    ]
    assert early_live_metric(windows, "v2", "roc_auc", 500) == pytest.approx((0.91 + 0.85) / 2)
    assert early_live_metric(windows + windows, "v2", "roc_auc", 500) == pytest.approx(
        (0.91 + 0.85 + 0.91) / 3
    )  # the first three only
    assert early_live_metric(windows, "v2", "rmse", 500) is None
    assert early_live_metric(windows, "v3", "roc_auc", 500) is None
