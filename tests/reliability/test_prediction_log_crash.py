"""A service killed outright (SIGKILL) loses about one flush period of its prediction log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from mlops.monitoring.prediction_store import read_prediction_log

# The service's logger, as serving/runtime.py builds it from the default settings, fed 10 rows
# every 10 ms; each line printed says how many rows were recorded by when.
SERVICE = """
import sys, time
import pandas as pd
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.settings import get_settings

settings = get_settings(home=sys.argv[1])
logger = PredictionLogger(
    LogSettings(
        profiles_url=settings.store("profiles"),
        predictions_url=settings.store("predictions"),
        window_seconds=settings.profile_window_s,
        flush_interval_s=settings.log_flush_s,
    ),
    model_name="churn",
)
logger.start()
recorded = 0
while True:
    amounts = [float(i) for i in range(recorded, recorded + 10)]
    logger.record(
        request_id=f"r{recorded}",
        model_version="v1",
        features=pd.DataFrame({"amount": amounts, "city": ["oslo"] * 10}),
        outputs=pd.DataFrame({"prediction": [0] * 10}),
    )
    recorded += 10
    print(recorded, time.time(), flush=True)
    time.sleep(0.01)
"""
RUN_S = 4.5
BOUND_S = 2.0  # every row recorded this long before the kill must be on disk


def test_sigkill_loses_at_most_the_last_flush_period(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    service = subprocess.Popen(
        [sys.executable, "-c", SERVICE, str(tmp_path / "home")],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert service.stdout is not None
    first = service.stdout.readline()
    assert first, "the logger process did not start"
    time.sleep(RUN_S)
    killed_at = time.time()
    service.send_signal(signal.SIGKILL)
    lines = [first, *service.stdout.read().splitlines()]
    service.wait()

    progress = pd.DataFrame(
        [line.split() for line in lines if line.strip()], columns=["rows", "at"]
    ).astype({"rows": int, "at": float})
    log = read_prediction_log(str(tmp_path / "home" / "predictions"), "churn")

    recorded = int(progress["rows"].max())
    old_enough = int(progress.loc[progress["at"] < killed_at - BOUND_S, "rows"].max())
    assert not log.empty, f"none of the {recorded} rows recorded reached the prediction log"
    logged = set(log["amount"].astype(int))
    assert log["amount"].is_unique
    assert set(range(old_enough)) <= logged
    newest = log["received_at"].max().timestamp()
    rate = recorded / (progress["at"].max() - progress["at"].min())
    print(
        f"\nSIGKILL after {RUN_S:.1f} s at {rate:.0f} rows/s: {recorded - len(log)} of "
        f"{recorded} rows lost, the last {killed_at - newest:.2f} s of traffic"
    )
