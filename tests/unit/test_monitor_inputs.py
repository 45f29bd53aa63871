"""monitor-model counts new rows since the last training across windows, not in one window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from flows.monitoring import policy_inputs
from mlops.inference.model import load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_window_profiles
from mlops.registry.store import Registry
from mlops.release.build import train_and_register
from mlops.settings import Settings
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

    inputs = policy_inputs(settings, registry, model.version, window, drift, [], "roc_auc", end)

    assert inputs.new_rows == 600 + 700  # both windows since v1, not the last window's 700
    assert inputs.last_retrain is not None and inputs.last_retrain < start
