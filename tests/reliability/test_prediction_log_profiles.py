"""Frequent log flushes do not profile every second: profiles follow their own period or a pause."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pandas as pd

from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_prediction_log, read_window_profiles
from mlops.monitoring.profile import profile_summary


def _wait_for(condition, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_profiles_wait_for_their_period_under_traffic_and_follow_a_pause(tmp_path):
    settings = LogSettings(
        profiles_url=str(tmp_path / "profiles"),
        predictions_url=str(tmp_path / "predictions"),
        flush_interval_s=0.05,
        profile_interval_s=60.0,
    )
    logger = PredictionLogger(settings, model_name="churn")
    started = datetime.now(UTC)
    logger.start()
    try:
        sent = 0
        until = time.monotonic() + 1.0
        while time.monotonic() < until:  # steady traffic: a request every 10 ms
            logger.record(
                request_id=f"r{sent}",
                model_version="v1",
                features=pd.DataFrame({"amount": [float(sent)]}),
                outputs=pd.DataFrame({"prediction": [0]}),
            )
            sent += 1
            time.sleep(0.01)
        during = logger.stats
        logged = _wait_for(lambda: logger.stats.rows_written == sent)
        profiled = _wait_for(lambda: logger.stats.profiles_written > 0, timeout_s=2.0)
    finally:
        logger.stop()

    assert during.rows_written > 0 and during.profiles_written == 0
    assert logged and profiled
    assert len(read_prediction_log(str(tmp_path / "predictions"), "churn")) == sent
    view = read_window_profiles(
        str(tmp_path / "profiles"),
        "churn",
        "v1",
        started - timedelta(seconds=300),
        started + timedelta(seconds=600),
        300,
    )
    assert view is not None and int(profile_summary(view).loc["amount", "count"]) == sent
