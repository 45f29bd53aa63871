"""Monitoring windows take every profile window overlapping them, not only those starting inside."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_overlapping_profiles, read_window_profiles
from mlops.monitoring.profile import profile_summary
from mlops.monitoring.timeline import profile_windows_text

WINDOW_S = 300
T1000 = datetime(2024, 5, 1, 10, 0, tzinfo=UTC)
T1005 = T1000 + timedelta(minutes=5)


def at(minute: int, second: int = 0) -> datetime:
    return T1000 + timedelta(minutes=minute, seconds=second)


def serve(root: Path, moment: datetime, rows: int) -> None:
    """Log `rows` rows of v1 served at a moment (the profile window is the moment's)."""
    logger = PredictionLogger(
        LogSettings(f"{root}/profiles", f"{root}/predictions", window_seconds=WINDOW_S),
        model_name="churn",
        clock=lambda: moment,
    )
    features = pd.DataFrame({"amount": [float(i) for i in range(rows)], "city": ["oslo"] * rows})
    outputs = pd.DataFrame({"prediction": [i % 2 for i in range(rows)]})
    logger.record(
        request_id=f"r{moment:%H%M%S}",
        model_version="v1",
        features=features,
        outputs=outputs,
        received_at=moment,
    )
    assert logger.flush().ok


def rows_and_windows(root: Path, start: datetime, end: datetime) -> tuple[int, list[datetime]]:
    view, starts = read_overlapping_profiles(
        f"{root}/profiles", "churn", "v1", start, end, WINDOW_S
    )
    rows = 0 if view is None else int(profile_summary(view).loc["amount", "count"])
    return rows, starts


def test_a_window_inside_a_profile_window_takes_that_profile(tmp_path: Path) -> None:
    serve(tmp_path, at(1), 3)  # profile window 10:00-10:05
    serve(tmp_path, at(6), 5)  # profile window 10:05-10:10

    assert rows_and_windows(tmp_path, at(2), at(4)) == (3, [T1000])
    assert rows_and_windows(tmp_path, at(5), at(6)) == (5, [T1005])
    assert rows_and_windows(tmp_path, at(4, 59), at(5, 1)) == (8, [T1000, T1005])


def test_a_window_ending_where_a_profile_window_starts_does_not_take_it(tmp_path: Path) -> None:
    serve(tmp_path, at(1), 3)
    serve(tmp_path, at(6), 5)

    assert rows_and_windows(tmp_path, at(0), at(5)) == (3, [T1000])
    assert rows_and_windows(tmp_path, at(10), at(12)) == (0, [])  # 10:05-10:10 ends at 10:10
    view = read_window_profiles(f"{tmp_path}/profiles", "churn", "v1", at(-3), at(0), WINDOW_S)
    assert view is None


def test_the_windows_merged_are_said_in_one_line(tmp_path: Path) -> None:
    serve(tmp_path, at(1), 3)
    serve(tmp_path, at(6), 5)
    _, starts = rows_and_windows(tmp_path, at(0), at(30))

    assert profile_windows_text(starts) == (
        "2 profile windows from 2024-05-01 10:00:00 to 2024-05-01 10:05:00 UTC (their starts)."
    )
    assert profile_windows_text([s.isoformat() for s in starts[:1]]).startswith("1 profile window")
    assert profile_windows_text([]).startswith("No profile window")
