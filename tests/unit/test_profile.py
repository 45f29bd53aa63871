"""Tests for whylogs profiling through mlops.monitoring.profile."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.monitoring.profile import (
    merge_profiles,
    profile_frame,
    profile_from_bytes,
    profile_summary,
    profile_to_bytes,
)


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "amount": [10.0, 20.0, np.nan, 40.0],
            "count": [1, 2, 3, 4],
            "merchant": ["shop", None, "cafe", "shop"],
        }
    )


def test_summary_counts_rows_and_nulls_per_column(frame):
    summary = profile_summary(profile_frame(frame))

    assert set(summary.index) == {"amount", "count", "merchant"}
    assert summary.loc["amount", "count"] == 4
    assert summary.loc["amount", "null_count"] == 1
    assert summary.loc["merchant", "null_count"] == 1
    assert summary.loc["count", "null_count"] == 0


def test_summary_describes_numeric_and_string_columns(frame):
    summary = profile_summary(profile_frame(frame))

    assert summary.loc["amount", "mean"] == pytest.approx(70.0 / 3)
    assert (summary.loc["count", "min"], summary.loc["count", "max"]) == (1, 4)
    assert np.isnan(summary.loc["merchant", "mean"])
    assert summary.loc["merchant", "distinct_est"] == pytest.approx(2, abs=0.01)
    assert summary["inferred_type"].to_dict() == {
        "amount": "fractional",
        "count": "integral",
        "merchant": "string",
    }


def test_profile_survives_a_bytes_round_trip(frame):
    view = profile_frame(frame)

    restored = profile_from_bytes(profile_to_bytes(view))

    pd.testing.assert_frame_equal(profile_summary(restored), profile_summary(view))


def test_merged_profile_counts_add_up(frame):
    merged = merge_profiles([profile_frame(frame), profile_frame(frame.iloc[:2])])

    summary = profile_summary(merged)

    assert summary.loc["amount", "count"] == 6
    assert summary.loc["amount", "null_count"] == 1
    assert summary.loc["count", "max"] == 4


def test_merging_nothing_is_an_error():
    with pytest.raises(ValueError, match="at least one profile"):
        merge_profiles([])


def test_garbage_bytes_are_not_a_profile():
    with pytest.raises(ValueError, match="profile_to_bytes"):
        profile_from_bytes(b"definitely not a profile")


def test_profiling_something_else_than_a_frame_is_refused():
    with pytest.raises(TypeError, match="DataFrame"):
        profile_frame([1, 2, 3])
