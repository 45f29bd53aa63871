"""Rows served during a data-quality incident are set aside from training, with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from mlops.data.incidents import REASON_COLUMN, incidents, outside, served_in, set_aside
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from tests.support.synthetic import make_contract, make_frame

MODEL = "incidents"
T0 = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)


def _serve(home: Path, frame: pd.DataFrame, at: datetime, contract) -> None:
    logger = PredictionLogger(
        LogSettings(str(home / "profiles"), str(home / "predictions")),
        model_name=MODEL,
        clock=lambda: at,
    )
    outputs = pd.DataFrame({"prediction": [0] * len(frame), "probability_0": 0.6,
                            "probability_1": 0.4})  # fmt: skip
    logger.record(
        request_id=f"r{at:%H}",
        model_version="v1",
        features=frame[list(contract.request_names)],
        outputs=outputs,
        received_at=at,
    )
    assert logger.flush().ok


def test_rows_served_in_a_failed_window_are_set_aside_with_the_reason(tmp_path: Path) -> None:
    contract = make_contract("binary")
    rows = make_frame("binary", 300, seed=4)
    _serve(tmp_path, rows.iloc[:100], T0 + timedelta(minutes=10), contract)  # a clean hour
    _serve(tmp_path, rows.iloc[100:200], T0 + timedelta(hours=1, minutes=10), contract)  # broken
    history = [
        {"window_start": T0.isoformat(), "window_end": (T0 + timedelta(hours=1)).isoformat(),
         "reason": None, "retrain": False},
        {"window_start": (T0 + timedelta(hours=1)).isoformat(),
         "window_end": (T0 + timedelta(hours=2)).isoformat(), "reason": "data-quality",
         "failed_checks": ["x1 scale: median 4520, spread 100x"], "retrain": False},
    ]  # fmt: skip

    found = incidents(history)
    reasons = served_in(str(tmp_path / "predictions"), MODEL, found, "txn_id")
    kept, aside = set_aside(rows, contract, reasons)

    assert len(found) == 1 and found[0].checks == ("x1 scale: median 4520, spread 100x",)
    assert len(kept) == 200 and len(aside) == 100  # nothing lost: every row is in one of them
    assert set(aside["txn_id"]) == set(rows["txn_id"].iloc[100:200])
    assert aside[REASON_COLUMN].str.contains("x1 scale: median 4520").all()
    assert aside[REASON_COLUMN].iloc[0].startswith("served 2030-03-01 10:00-11:00 UTC")


def test_without_incidents_or_an_id_column_nothing_is_set_aside(tmp_path: Path) -> None:
    contract = make_contract("binary")
    rows = make_frame("binary", 50, seed=5)

    assert incidents([{"reason": "performance", "window_start": T0, "window_end": T0}]) == []
    kept, aside = set_aside(rows, contract, {})
    assert len(kept) == 50 and aside.empty and REASON_COLUMN in aside.columns
    no_id = rows.drop(columns=["txn_id"])
    kept, aside = set_aside(no_id, contract, {str(v): "x" for v in rows["txn_id"]})
    assert len(kept) == 50 and aside.empty
    assert np.array_equal(kept.index, no_id.index)


def test_rows_received_during_an_incident_leave_the_live_performance() -> None:
    found = incidents(
        [{"reason": "data-quality", "window_start": T0.isoformat(),
          "window_end": (T0 + timedelta(hours=1)).isoformat(), "failed_checks": ["x"]}]
    )  # fmt: skip
    log = pd.DataFrame(
        {"received_at": [T0 - timedelta(minutes=1), T0, T0 + timedelta(minutes=59),
                         T0 + timedelta(hours=1)], "id": ["a", "b", "c", "d"]}
    )  # fmt: skip

    assert list(outside(log, found)["id"]) == ["a", "d"]  # [start, end): the end is not in it
    assert outside(log, []).equals(log)
