"""Replaying the simulated world (stack.replay): refused records, served spans, landing."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from stack.replay import Served, land_partition, refused_indexes


def test_a_refused_request_names_the_records_to_drop() -> None:
    body = {"detail": [{"loc": ["records", 3, "amount"]}, {"loc": ["records", 7, "channel"]}]}
    assert refused_indexes(body) == {3, 7}
    with pytest.raises(ValueError, match="names no record"):
        refused_indexes({"detail": [{"loc": ["body"]}]})


def test_served_span_covers_whole_seconds_around_the_traffic() -> None:
    first = dt.datetime(2026, 1, 1, 12, 0, 0, 700_000, tzinfo=dt.UTC)
    served = Served(first_at=first, last_at=first + dt.timedelta(seconds=3))
    assert served.span == (first.replace(microsecond=0), first + dt.timedelta(seconds=5))


def test_landing_copies_one_date_partition(tmp_path: Path) -> None:
    day = dt.date(2026, 1, 2)
    source = tmp_path / "world" / "raw" / f"date={day}"
    source.mkdir(parents=True)
    (source / "part-000.parquet").write_bytes(b"x")
    assert land_partition(tmp_path / "world", tmp_path / "landed", "raw", day)
    assert (tmp_path / "landed" / "raw" / f"date={day}" / "part-000.parquet").read_bytes() == b"x"
    assert not land_partition(tmp_path / "world", tmp_path / "landed", "labels", day)
