"""Tests for the prediction logger: the Parquet prediction log and whylogs window profiles."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

import mlops.monitoring.prediction_logger as prediction_logger
import mlops.monitoring.prediction_store as prediction_store
import mlops.monitoring.prediction_writer as prediction_writer
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_prediction_log, read_window_profiles
from mlops.monitoring.profile import profile_summary

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
WINDOW_S = 300
WINDOW = timedelta(seconds=WINDOW_S)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def settings(root, **overrides) -> LogSettings:
    values = {"profiles_url": f"{root}/profiles", "predictions_url": f"{root}/predictions"}
    return LogSettings(**{**values, **overrides})


def batch(n: int, start: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = range(start, start + n)
    features = pd.DataFrame({"amount": [float(i) for i in ids], "city": ["oslo"] * n})
    outputs = pd.DataFrame({"prediction": [i % 2 for i in ids], "probability_1": [0.5] * n})
    return features, outputs


def record(logger, request_id, n, start=0, version="v1", at=None) -> None:
    features, outputs = batch(n, start)
    logger.record(
        request_id=request_id,
        model_version=version,
        features=features,
        outputs=outputs,
        received_at=at,
    )


def window_count(root, version, start, end=None, model="churn") -> int:
    view = read_window_profiles(
        f"{root}/profiles", model, version, start, end or start + WINDOW, WINDOW_S
    )
    return 0 if view is None else int(profile_summary(view).loc["amount", "count"])


def test_flush_writes_every_recorded_row_to_the_prediction_log(tmp_path):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())
    record(logger, "r1", 3, 0, "v1")
    record(logger, "r2", 2, 3, "v2")

    report = logger.flush()
    log = read_prediction_log(f"{tmp_path}/predictions", "churn")

    assert report.ok and report.rows_written == 5
    assert list(log.columns[:3]) == ["request_id", "received_at", "model_version"]
    assert {"amount", "city", "prediction", "probability_1"} <= set(log.columns)
    assert log["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 2
    assert log["model_version"].tolist() == ["v1"] * 3 + ["v2"] * 2
    assert log["amount"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert (log["received_at"] == pd.Timestamp(T0)).all()
    assert logger.stats.rows_written == logger.stats.rows_recorded == 5
    parts = list((tmp_path / "predictions" / "churn" / "date=2024-05-01").iterdir())
    assert len(parts) == 1 and parts[0].name.startswith("part-")


def test_profiles_count_the_rows_of_each_version_and_window(tmp_path):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())
    expected = {}
    for w in range(3):
        for v, version in enumerate(("v1", "v2")):
            n = 2 + w + 3 * v
            record(
                logger, f"r{w}{v}", n, version=version, at=T0 + w * WINDOW + timedelta(seconds=7)
            )
            expected[(version, w)] = n

    report = logger.flush()

    assert report.ok and report.profiles_written == 6
    for (version, w), n in expected.items():
        assert window_count(tmp_path, version, T0 + w * WINDOW) == n
    assert window_count(tmp_path, "v1", T0, T0 + 3 * WINDOW) == sum(
        n for (version, _), n in expected.items() if version == "v1"
    )
    names = sorted(p.name for p in (tmp_path / "profiles" / "churn" / "v1").iterdir())
    assert names[0] == f"20240501T120000Z-{logger.writer_id}.bin"


def test_window_profile_accumulates_across_flushes(tmp_path):
    clock = Clock()
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=clock)
    record(logger, "a", 4)
    logger.flush()
    clock.now = T0 + timedelta(seconds=60)
    record(logger, "b", 3)
    logger.flush()

    assert window_count(tmp_path, "v1", T0) == 7
    assert logger.stats.profiles_written == 2


def test_late_rows_for_an_evicted_window_add_to_its_stored_profile(tmp_path):
    clock = Clock()
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=clock)
    record(logger, "a", 4)
    logger.flush()
    clock.now = T0 + 4 * WINDOW
    logger.flush()  # the first window is now old enough to leave memory
    record(logger, "late", 2, at=T0 + timedelta(seconds=1))
    logger.flush()

    assert window_count(tmp_path, "v1", T0) == 6


def test_stop_flushes_rows_left_in_the_buffer(tmp_path):
    logger = PredictionLogger(
        settings(tmp_path, flush_interval_s=60), model_name="churn", clock=Clock()
    )
    logger.start()
    record(logger, "r1", 5)

    report = logger.stop(timeout_s=5)

    assert report.ok and report.rows_written == 5
    assert len(read_prediction_log(f"{tmp_path}/predictions", "churn")) == 5
    assert window_count(tmp_path, "v1", T0) == 5


def test_store_failure_keeps_rows_and_recovery_writes_them_once(tmp_path):
    blocker = tmp_path / "store"
    blocker.write_text("a file where the store folder should be")
    logger = PredictionLogger(settings(blocker), model_name="churn", clock=Clock())
    record(logger, "r1", 3, 0)

    failed = logger.flush()
    record(logger, "r2", 2, 3)

    assert not failed.ok and failed.buffered_rows == 3 and failed.rows_written == 0
    assert logger.stats.write_failures == 1 and logger.stats.buffered_rows == 5
    assert any("could not write the prediction log" in error for error in failed.errors)
    assert any("could not write profile v1/20240501T120000Z" in e for e in failed.errors)
    assert logger.stats.last_error == failed.errors[-1]
    blocker.unlink()

    recovered = logger.flush()
    log = read_prediction_log(f"{blocker}/predictions", "churn")

    assert recovered.ok and recovered.rows_written == 5 and recovered.buffered_rows == 0
    assert log["request_id"].tolist() == ["r1"] * 3 + ["r2"] * 2
    assert log["amount"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert window_count(blocker, "v1", T0) == 5
    assert logger.flush().rows_written == 0
    assert len(read_prediction_log(f"{blocker}/predictions", "churn")) == 5
    assert logger.stats.write_failures == 1


def test_buffer_bound_drops_the_oldest_rows_and_counts_them(tmp_path):
    logger = PredictionLogger(
        settings(tmp_path, max_buffered_rows=10), model_name="churn", clock=Clock()
    )
    for i in range(4):
        record(logger, f"r{i}", 4, 4 * i)

    assert logger.stats.dropped_rows == 6 and logger.stats.buffered_rows == 10
    logger.flush()
    log = read_prediction_log(f"{tmp_path}/predictions", "churn")

    assert log["amount"].tolist() == [float(i) for i in range(6, 16)]
    assert logger.stats.rows_recorded == 16 and logger.stats.rows_written == 10


def test_rows_kept_after_a_failure_count_towards_the_bound(tmp_path):
    blocker = tmp_path / "store"
    blocker.write_text("not a folder")
    logger = PredictionLogger(
        settings(blocker, max_buffered_rows=6), model_name="churn", clock=Clock()
    )
    record(logger, "old", 4, 0)
    logger.flush()
    record(logger, "new", 4, 4)
    blocker.unlink()
    logger.flush()

    log = read_prediction_log(f"{blocker}/predictions", "churn")
    assert log["amount"].tolist() == [float(i) for i in range(2, 8)]
    assert logger.stats.dropped_rows == 2


def test_concurrent_records_while_flushing_lose_nothing(tmp_path):
    logger = PredictionLogger(
        settings(tmp_path, flush_interval_s=0.05), model_name="churn", clock=Clock()
    )
    logger.start()

    def serve(thread: int) -> None:
        for call in range(500):
            record(logger, f"t{thread}-{call}", 1, thread * 500 + call)

    threads = [threading.Thread(target=serve, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logger.stop(timeout_s=10)

    log = read_prediction_log(f"{tmp_path}/predictions", "churn")
    assert len(log) == 4000 and log["request_id"].nunique() == 4000
    assert sorted(log["amount"]) == [float(i) for i in range(4000)]
    assert window_count(tmp_path, "v1", T0) == 4000
    assert logger.stats.rows_written == 4000 and logger.stats.write_failures == 0


def test_read_window_profiles_merges_every_writers_file(tmp_path):
    for writer, n in (("replica-a", 3), ("replica-b", 5)):
        logger = PredictionLogger(
            settings(tmp_path), model_name="churn", clock=Clock(), writer_id=writer
        )
        record(logger, writer, n)
        logger.flush()

    assert window_count(tmp_path, "v1", T0) == 8
    assert window_count(tmp_path, "v1", T0 + WINDOW) == 0
    assert read_window_profiles(f"{tmp_path}/profiles", "churn", "v9", T0, T0 + WINDOW, 300) is None


def test_record_does_no_io(tmp_path, monkeypatch):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())

    def refuse(*args, **kwargs):
        raise AssertionError("record must not touch the store or whylogs")

    modules = (prediction_logger, prediction_writer, prediction_store)
    for name in ("url_to_fs", "write_atomic", "profile_frame", "merge_profiles"):
        for module in [m for m in modules if hasattr(m, name)]:
            monkeypatch.setattr(module, name, refuse)
    record(logger, "r1", 1000)

    assert logger.stats.buffered_rows == 1000 and logger.stats.last_error is None
    monkeypatch.undo()
    assert logger.flush().rows_written == 1000


def test_record_rejects_a_malformed_batch_without_raising(tmp_path):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())
    features, outputs = batch(3)

    logger.record(request_id="bad", model_version="v1", features=features, outputs=outputs.iloc[:2])
    logger.record(
        request_id="clash", model_version="v1", features=features, outputs=features[["amount"]]
    )

    assert logger.stats.rejected_rows == 6 and logger.stats.buffered_rows == 0
    assert "rows" in logger.stats.last_error or "unique" in logger.stats.last_error


def test_read_prediction_log_filters_on_received_at(tmp_path):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())
    for day in range(3):
        record(logger, f"d{day}", 2, 2 * day, at=T0 + timedelta(days=day))
    logger.flush()

    log = read_prediction_log(
        f"{tmp_path}/predictions", "churn", start=T0 + timedelta(days=1), end=T0 + timedelta(days=2)
    )

    assert log["request_id"].tolist() == ["d1", "d1"]
    assert read_prediction_log(f"{tmp_path}/predictions", "other").empty


def test_settings_refuse_non_positive_values(tmp_path):
    with pytest.raises(ValueError, match="window_seconds"):
        settings(tmp_path, window_seconds=0)


def test_record_requests_logs_and_profiles_like_one_record_per_request(tmp_path):
    # three requests crossing a profile window and a date: rows must land where record() puts them
    start = datetime(2024, 5, 1, 23, 59, 59, 995000, tzinfo=UTC)
    requests = [("r1", start, 3), ("r2", start + timedelta(milliseconds=3), 1),
                ("r3", start + timedelta(milliseconds=6), 2)]  # fmt: skip
    one_by_one, grouped = tmp_path / "one", tmp_path / "grouped"
    logger = PredictionLogger(settings(one_by_one), model_name="churn", clock=Clock())
    row = 0
    for request_id, at, n in requests:
        record(logger, request_id, n, row, at=at)
        row += n
    logger.flush()
    features, outputs = batch(row)
    together = PredictionLogger(settings(grouped), model_name="churn", clock=Clock())

    together.record_requests(
        requests=requests, model_version="v1", features=features, outputs=outputs
    )
    report = together.flush()

    assert report.ok and report.rows_written == 6
    expected = read_prediction_log(f"{one_by_one}/predictions", "churn")
    pd.testing.assert_frame_equal(read_prediction_log(f"{grouped}/predictions", "churn"), expected)
    assert expected["request_id"].tolist() == ["r1"] * 3 + ["r2"] + ["r3"] * 2
    for day in ("date=2024-05-01", "date=2024-05-02"):
        assert (grouped / "predictions" / "churn" / day).is_dir()
    for window in (datetime(2024, 5, 1, 23, 55, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)):
        assert window_count(grouped, "v1", window) == window_count(one_by_one, "v1", window) > 0


def test_each_row_is_logged_with_its_requests_answer_time(tmp_path):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())
    features, outputs = batch(6)
    logger.record_requests(requests=[("r1", T0, 2), ("r2", T0, 1)], model_version="v1",
                           features=features.iloc[:3], outputs=outputs.iloc[:3],
                           served_ms=[1.5, 7.25])  # fmt: skip
    logger.record_requests(requests=[("r3", T0, 3)], model_version="v1",
                           features=features.iloc[3:], outputs=outputs.iloc[3:])  # fmt: skip
    logger.record_requests(requests=[("r4", T0, 1)], model_version="v1", features=features.iloc[:1],
                           outputs=outputs.iloc[:1], served_ms=[1.0, 2.0])  # fmt: skip

    assert logger.flush().rows_written == 6 and logger.stats.rejected_rows == 1
    log = read_prediction_log(f"{tmp_path}/predictions", "churn")
    assert log["served_ms"].iloc[:3].tolist() == [1.5, 1.5, 7.25]
    assert log["served_ms"].iloc[3:].isna().all()  # not measured: unknown, not zero
    assert "2 served times for 1 requests" in (logger.stats.last_error or "")


def test_record_requests_refuses_sizes_that_do_not_add_up_without_raising(tmp_path):
    logger = PredictionLogger(settings(tmp_path), model_name="churn", clock=Clock())
    features, outputs = batch(3)

    logger.record_requests(
        requests=[("r1", T0, 2)], model_version="v1", features=features, outputs=outputs
    )

    assert logger.stats.rejected_rows == 3 and logger.stats.rows_recorded == 0
    assert "2 rows" in (logger.stats.last_error or "")
