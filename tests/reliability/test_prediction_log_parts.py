"""Flushing every second does not fill the prediction log with tiny parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd

from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_prediction_log

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def _logger(root: Path, clock: Clock, **overrides) -> PredictionLogger:
    settings = LogSettings(
        profiles_url=str(root / "profiles"), predictions_url=str(root / "predictions"), **overrides
    )
    return PredictionLogger(settings, model_name="churn", clock=clock)


def _record(logger: PredictionLogger, start: int, n: int, city: object = "oslo") -> None:
    logger.record(
        request_id=f"r{start}",
        model_version="v1",
        features=pd.DataFrame({"amount": [float(i) for i in range(start, start + n)]}).assign(
            city=city
        ),
        outputs=pd.DataFrame({"prediction": [0] * n}),
    )


def _parts(root: Path) -> list[Path]:
    return sorted((root / "predictions" / "churn").rglob("part-*.parquet"))


def test_a_minute_of_one_second_flushes_makes_one_part(tmp_path):
    clock = Clock()
    logger = _logger(tmp_path, clock)
    for second in range(59):
        clock.now = T0 + timedelta(seconds=second)
        _record(logger, 2 * second, 2)
        assert logger.flush().ok
        # readers see every row flushed so far, each once, at any moment
        assert len(read_prediction_log(str(tmp_path / "predictions"), "churn")) == 2 * second + 2

    assert len(_parts(tmp_path)) == 1
    clock.now = T0 + timedelta(seconds=61)
    _record(logger, 118, 2)
    logger.flush()
    _record(logger, 120, 2)
    logger.flush()

    log = read_prediction_log(str(tmp_path / "predictions"), "churn")
    assert len(_parts(tmp_path)) == 2
    assert log["amount"].tolist() == [float(i) for i in range(122)]


def test_a_full_part_is_closed_and_a_new_one_opened(tmp_path):
    logger = _logger(tmp_path, Clock(), max_part_rows=10)
    for flush in range(6):
        _record(logger, 4 * flush, 4)
        logger.flush()

    log = read_prediction_log(str(tmp_path / "predictions"), "churn")
    assert [len(pd.read_parquet(p)) for p in _parts(tmp_path)] == [12, 12]
    assert sorted(log["amount"]) == [float(i) for i in range(24)]


def test_rows_the_open_part_cannot_take_go_to_a_part_of_their_own(tmp_path):
    logger = _logger(tmp_path, Clock())
    _record(logger, 0, 3, city="oslo")
    _record(logger, 3, 3, city="bergen")
    assert logger.flush().ok
    _record(logger, 6, 3, city=5)  # numbers next to text: one Parquet column cannot hold both
    report = logger.flush()
    _record(logger, 9, 3, city=7)
    logger.flush()

    log = read_prediction_log(str(tmp_path / "predictions"), "churn")
    assert report.ok and report.rows_written == 3
    assert len(_parts(tmp_path)) == 2
    assert sorted(log["amount"]) == [float(i) for i in range(12)]
