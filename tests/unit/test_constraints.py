"""Tests of the contract and reference constraints checked on a window's profile."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.contract.loader import parse_contract
from mlops.contract.spec import Contract
from mlops.monitoring.constraints import check_constraints
from mlops.monitoring.profile import profile_frame

CHANNELS = ["online", "pos", "contactless"]


@pytest.fixture(scope="module")
def contract() -> Contract:
    columns = {
        "txn_id": {"role": "id", "dtype": "string"},
        "amount": {"role": "feature", "dtype": "float", "checks": {"min": 0.01, "max": 50_000}},
        "channel": {"role": "feature", "dtype": "string", "checks": {"allowed": CHANNELS}},
        "age": {"role": "feature", "dtype": "int", "checks": {"min": 18, "max": 100}},
        "distance": {"role": "feature", "dtype": "float", "nullable": True},
        "card_present": {"role": "feature", "dtype": "bool"},
        "label": {
            "role": "target",
            "dtype": "int",
            "task": "binary",
            "checks": {"allowed": [0, 1]},
        },
    }
    return parse_contract({"name": "constraints-test", "columns": columns})


def make_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    distance = rng.lognormal(2.0, 1.0, n)
    distance[rng.random(n) < 0.03] = np.nan
    return pd.DataFrame(
        {
            "txn_id": [f"t{i}" for i in range(n)],
            "amount": np.round(rng.lognormal(3.5, 0.9, n), 2).clip(0.5, 25_000),
            "channel": rng.choice(CHANNELS, n),
            "age": rng.integers(18, 95, n),
            "distance": distance,
            "card_present": rng.random(n) < 0.6,
        }
    )


@pytest.fixture(scope="module")
def reference():
    return profile_frame(make_frame(20_000, seed=1))


def _failed(report) -> set[tuple[str, str]]:
    return {(row.column, row.constraint) for row in report.failures}


def test_a_clean_window_passes_every_constraint(contract, reference):
    report = check_constraints(
        profile_frame(make_frame(3000, seed=2)), contract, reference=reference
    )

    assert report.passed, report.summary()
    assert report.failures == ()
    constraints = {(row.column, row.constraint) for row in report.rows}
    assert {("amount", "min"), ("amount", "max"), ("amount", "scale")} <= constraints
    assert {("channel", "allowed"), ("distance", "null_share"), ("age", "not_null")} <= constraints
    assert report.summary().startswith("all ") and report.summary().endswith(" constraints passed")


def test_nulls_in_a_non_nullable_column_fail(contract, reference):
    frame = make_frame(1000, seed=3)
    frame.loc[:24, "channel"] = None

    report = check_constraints(profile_frame(frame), contract, reference=reference)

    row = next(r for r in report.failures if r.column == "channel")
    assert (row.constraint, row.expected, row.observed) == (
        "not_null",
        "0 nulls",
        "25 nulls (2.5% of 1000)",
    )


def test_nullable_column_fails_only_well_above_the_reference_null_share(contract, reference):
    frame = make_frame(1000, seed=4).assign(distance=1.0)
    slightly = profile_frame(frame.assign(distance=frame["distance"].mask(frame.index < 40)))
    frame.loc[:199, "distance"] = np.nan

    assert check_constraints(slightly, contract, reference=reference).passed
    report = check_constraints(profile_frame(frame), contract, reference=reference)
    assert _failed(report) == {("distance", "null_share")}
    assert "reference 3.0%" in report.failures[0].expected


def test_out_of_range_values_fail_min_and_max(contract):
    frame = make_frame(500, seed=5)
    frame.loc[0, "age"] = -1
    frame.loc[1, "amount"] = 75_000.0

    report = check_constraints(profile_frame(frame), contract)

    assert _failed(report) == {("age", "min"), ("amount", "max")}
    age = next(r for r in report.failures if r.column == "age")
    assert (age.expected, age.observed) == (">= 18", "-1")


def test_unknown_categories_are_named_with_their_counts(contract):
    frame = make_frame(500, seed=6)
    frame.loc[:11, "channel"] = "mobile_wallet"

    report = check_constraints(profile_frame(frame), contract)

    (row,) = report.failures
    assert (row.column, row.constraint) == ("channel", "allowed")
    assert row.observed == "mobile_wallet (12 rows)"
    assert row.expected == "one of online, pos, contactless"


def test_a_unit_change_fails_the_scale_check_only_with_a_reference(contract, reference):
    cents = make_frame(1000, seed=7)
    cents["amount"] = (cents["amount"] * 100).round(0).clip(upper=49_999)

    assert check_constraints(profile_frame(cents), contract).passed
    report = check_constraints(profile_frame(cents), contract, reference=reference)
    assert _failed(report) == {("amount", "scale")}
    assert report.failures[0].observed.startswith("median ")


def test_a_population_that_really_moves_is_not_a_unit_change(contract, reference):
    """Sustained growth moves the median past the reference's p99 but keeps the spread."""
    grown = make_frame(1000, seed=8)
    low, high = np.quantile(make_frame(20_000, seed=1)["distance"].dropna(), [0.1, 0.9])
    grown["distance"] = grown["distance"] + 12 * (high - low)  # median far above p99, same spread

    report = check_constraints(profile_frame(grown), contract, reference=reference)

    scale = [r for r in report.rows if (r.column, r.constraint) == ("distance", "scale")]
    assert scale and scale[0].passed, scale
    shrunk = make_frame(1000, seed=9)
    shrunk["distance"] = shrunk["distance"] / 1000  # metres -> kilometres: 1000x narrower
    failed = check_constraints(profile_frame(shrunk), contract, reference=reference)
    assert ("distance", "scale") in _failed(failed)


def test_missing_columns_fail_and_the_target_is_checked_when_profiled(contract, reference):
    frame = make_frame(500, seed=8).drop(columns=["age"]).assign(label=2)

    report = check_constraints(profile_frame(frame), contract, reference=reference)

    assert _failed(report) == {("age", "present"), ("label", "allowed")}
    assert "age present: missing" in report.summary()


def test_empty_window_violates_nothing_and_serialises(contract, reference):
    report = check_constraints(
        profile_frame(make_frame(10).iloc[:0]), contract, reference=reference
    )

    assert report.passed
    assert json.loads(json.dumps(report.to_dict(), allow_nan=False))["passed"] is True
    assert all(
        set(row) == {"column", "constraint", "expected", "observed", "passed"}
        for row in report.to_rows()
    )
