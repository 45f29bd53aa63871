"""Validation failure messages count each failing row once per check."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from mlops.contract.loader import load_contract
from mlops.data.validate import ContractViolation, validate_frame

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


def _birds(n: int) -> pd.DataFrame:
    """Return `n` rows that satisfy the penguins contract, flipper lengths as read from a file."""
    return pd.DataFrame(
        {
            "tag": [f"P{i:04d}" for i in range(n)],
            "observed_at": [f"2024-05-{i % 28 + 1:02d}" for i in range(n)],
            "bill_length_mm": [40.0 + i % 10 for i in range(n)],
            "flipper_length_mm": [190.0 + i % 40 for i in range(n)],
            "island": [["Biscoe", "Dream", "Torgersen"][i % 3] for i in range(n)],
            "banded": [i % 2 == 0 for i in range(n)],
            "species": [["Adelie", "Chinstrap", "Gentoo"][i % 3] for i in range(n)],
        }
    )


def test_a_check_broken_on_three_rows_is_counted_three_times():
    contract = load_contract(CONTRACTS / "penguins.yaml")
    frame = _birds(40)
    frame.loc[[3, 11, 27], "flipper_length_mm"] = 500.0  # above the contract's max of 240
    # One value that is no integer: the int column cannot be coerced at once, so its checks
    # are run a second time on the rows that do coerce.
    frame.loc[5, "flipper_length_mm"] = 190.5

    result = validate_frame(frame, contract)
    with pytest.raises(ContractViolation) as info:
        result.check_threshold(0.05)

    counts = {(r["column"], r["check"]): (r["failures"], r["rows"]) for r in result.summary_rows()}
    assert counts[("flipper_length_mm", "less_than_or_equal_to(240.0)")] == (3, 3)
    assert counts[("flipper_length_mm", "coerce_dtype('Int64')")] == (1, 1)
    assert counts[("(all)", "total")] == (4, 4)
    message = str(info.value)
    assert message.startswith("4 of 40 rows (10.0%) failed contract 'penguins'")
    assert "less_than_or_equal_to(240.0) failed 3x" in message
    assert "failed 6x" not in message


def test_a_value_that_does_not_coerce_gives_one_reason_not_two():
    contract = load_contract(CONTRACTS / "penguins.yaml")
    frame = _birds(40)
    frame.loc[[3, 11, 27], "flipper_length_mm"] = 500.5  # no integer, and above the max

    result = validate_frame(frame, contract)

    assert [(r["check"], r["failures"]) for r in result.summary_rows()] == [
        ("coerce_dtype('Int64')", 3),
        ("total", 3),
    ]
    assert result.quarantined["_reason"].str.count(";").eq(0).all()
