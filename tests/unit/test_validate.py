"""Validation: coerced valid rows, quarantined rows with every reason, nothing lost."""

from __future__ import annotations

import dataclasses
import sys
import types
import uuid
from datetime import datetime
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pandera.pandas as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract, ContractError
from mlops.data.validate import ContractViolation, validate_frame, write_quarantine

CONTRACTS = Path(__file__).resolve().parents[1] / "contracts"


@pytest.fixture(scope="module")
def penguins() -> Contract:
    return load_contract(CONTRACTS / "penguins.yaml")


def birds(n: int = 4) -> pd.DataFrame:
    """Return `n` rows that satisfy the penguins contract."""
    return pd.DataFrame(
        {
            "tag": [f"P{i:04d}" for i in range(n)],
            "observed_at": [f"2024-05-{i % 28 + 1:02d}" for i in range(n)],
            "bill_length_mm": [40.0 + i % 10 for i in range(n)],
            "flipper_length_mm": [190 + i % 40 for i in range(n)],
            "island": [["Biscoe", "Dream", "Torgersen"][i % 3] for i in range(n)],
            "banded": [i % 2 == 0 for i in range(n)],
            "species": [["Adelie", "Chinstrap", "Gentoo"][i % 3] for i in range(n)],
        }
    )


def test_a_clean_frame_is_coerced_to_the_contract_dtypes(penguins: Contract) -> None:
    frame = birds().assign(
        flipper_length_mm=["190", None, 200.0, 201], banded=["true", 0, 1, "False"]
    )
    result = validate_frame(frame.set_axis([7, 8, 9, 10]), penguins)
    assert (result.n_input, result.n_valid, result.n_quarantined) == (4, 4, 0)
    dtypes = result.valid.dtypes.astype(str).to_dict()
    assert dtypes["observed_at"] == "datetime64[ns]"
    assert dtypes["flipper_length_mm"] == "Int64"
    assert dtypes["banded"] == "boolean"
    assert result.valid["banded"].tolist() == [True, False, True, False]
    assert isinstance(result.valid.index, pd.RangeIndex)
    assert result.failing_share == 0.0


def test_failing_rows_are_quarantined_as_read_with_every_reason(penguins: Contract) -> None:
    frame = birds(5)
    frame.loc[1, ["bill_length_mm", "island"]] = [75.5, "Mars"]
    frame.loc[3, "observed_at"] = "not a date"
    result = validate_frame(frame.set_axis(list("abcde")), penguins)
    assert (result.n_valid, result.n_quarantined) == (3, 2)
    quarantined = result.quarantined.set_index("_row")
    assert quarantined.loc[1, "bill_length_mm"] == "75.5"
    assert quarantined.loc[3, "observed_at"] == "not a date"
    reasons = quarantined.loc[1, "_reason"]
    assert "bill_length_mm: less_than_or_equal_to(60.0) (75.5)" in reasons
    assert "island: isin(" in reasons and "(Mars)" in reasons
    assert "observed_at: coerce_dtype" in quarantined.loc[3, "_reason"]
    assert all(dtype == "string" for dtype in result.quarantined.drop(columns="_row").dtypes)
    assert result.valid["tag"].tolist() == ["P0000", "P0002", "P0004"]
    assert set(result.failures.columns) == {"column", "check", "failure_case", "row"}


def test_a_value_that_does_not_parse_does_not_fail_the_batch(penguins: Contract) -> None:
    frame = birds(4).astype(object)
    frame.loc[0, "bill_length_mm"] = "long"  # the range checks cannot run on the raw column
    frame.loc[1, "bill_length_mm"] = 10.0
    frame.loc[2, "flipper_length_mm"] = 190.5  # no decimals in an int column
    frame.loc[3, "banded"] = "maybe"
    result = validate_frame(frame, penguins)
    reasons = dict(zip(result.quarantined["_row"], result.quarantined["_reason"], strict=True))
    assert sorted(reasons) == [0, 1, 2, 3]
    assert "bill_length_mm: coerce_dtype('float64') (long)" in reasons[0]
    assert "bill_length_mm: greater_than_or_equal_to(30.0) (10.0)" in reasons[1]
    assert "flipper_length_mm: coerce_dtype('Int64') (190.5)" in reasons[2]
    assert "banded: coerce_dtype('boolean') (maybe)" in reasons[3]


def test_decimals_in_a_float_typed_int_column_point_at_their_rows(penguins: Contract) -> None:
    frame = birds(3).assign(flipper_length_mm=[190.0, 200.25, np.nan])
    result = validate_frame(frame, penguins)
    assert result.quarantined["_row"].tolist() == [1]
    assert result.valid["flipper_length_mm"].tolist()[0] == 190


def test_infinite_and_missing_values_are_quarantined(penguins: Contract) -> None:
    frame = birds(3).assign(bill_length_mm=[np.inf, np.nan, 41.0])
    result = validate_frame(frame, penguins)
    reasons = result.quarantined["_reason"].tolist()
    assert "bill_length_mm: finite (no inf) (inf)" in reasons[0]
    assert reasons[1] == "bill_length_mm: not_nullable (missing)"


def test_a_missing_column_fails_the_batch_naming_it(penguins: Contract) -> None:
    with pytest.raises(ContractViolation, match=r"column 'island' is missing.*columns present"):
        validate_frame(birds().drop(columns=["island"]), penguins)


def test_the_target_is_optional_without_target(penguins: Contract) -> None:
    result = validate_frame(birds().drop(columns=["species"]), penguins, with_target=False)
    assert result.n_valid == 4
    with pytest.raises(ContractViolation, match="'species' is missing"):
        validate_frame(birds().drop(columns=["species"]), penguins)


def test_an_empty_frame_is_valid(penguins: Contract) -> None:
    result = validate_frame(birds(0), penguins)
    assert (result.n_input, result.n_valid, result.n_quarantined) == (0, 0, 0)
    assert result.summary_rows()[-1]["rows"] == 0


def test_summary_rows_account_for_every_row(penguins: Contract) -> None:
    frame = birds(6)
    frame.loc[[0, 1], "island"] = "Atlantis"
    frame.loc[2, "species"] = "Emperor"
    rows = validate_frame(frame, penguins).summary_rows()
    by_column = {row["column"]: row for row in rows}
    assert by_column["island"]["failures"] == 2
    assert by_column["island"]["examples"] == "Atlantis"
    assert by_column["species"]["rows"] == 1
    assert rows[-1] == {
        "column": "(all)", "check": "total", "failures": 3, "rows": 3,
        "examples": "6 input = 3 valid + 3 quarantined",
    }  # fmt: skip


def test_threshold_names_the_share_the_column_the_check_and_values(penguins: Contract) -> None:
    frame = birds(20)
    frame.loc[[0, 1], "bill_length_mm"] = [-1.0, -2.0]
    result = validate_frame(frame, penguins)
    result.check_threshold(max_failing_share=0.10)
    with pytest.raises(ContractViolation) as info:
        result.check_threshold(max_failing_share=0.05)
    message = str(info.value)
    for part in ("2 of 20 rows (10.0%)", "above the allowed 5.0%", "bill_length_mm", "-1.0, -2.0"):
        assert part in message
    assert "greater_than_or_equal_to(30.0)" in message


# -- custom checks ------------------------------------------------------------------------------


class BillChecks(pa.DataFrameModel):
    species: str

    @pa.dataframe_check
    def gentoos_have_long_bills(cls, df: pd.DataFrame) -> pd.Series:
        return (df["species"] != "Gentoo") | (df["bill_length_mm"] >= 45)


class TypedTarget(pa.DataFrameModel):
    species: str = pa.Field(isin=["Adelie", "Chinstrap", "Gentoo"])


class WholeFrameChecks(pa.DataFrameModel):
    @pa.dataframe_check
    def at_least_ten_rows(cls, df: pd.DataFrame) -> bool:
        return len(df) >= 10


@pytest.fixture
def with_custom(penguins: Contract, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    module = types.ModuleType("penguin_checks")
    module.BillChecks = BillChecks  # type: ignore[attr-defined]
    module.WholeFrameChecks = WholeFrameChecks  # type: ignore[attr-defined]
    module.TypedTarget = TypedTarget  # type: ignore[attr-defined]
    module.NotAModel = dict  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "penguin_checks", module)
    return lambda name: dataclasses.replace(penguins, custom_checks=f"penguin_checks:{name}")


def test_custom_checks_quarantine_their_rows(with_custom) -> None:  # type: ignore[no-untyped-def]
    frame = birds(6)  # rows 2 and 5 are Gentoos with bills of 42 and 45 mm
    result = validate_frame(frame, with_custom("BillChecks"))
    assert result.quarantined["_row"].tolist() == [2]
    assert result.quarantined["_reason"].iloc[0] == "(row): gentoos_have_long_bills (whole row)"
    assert result.n_valid == 5


def test_custom_checks_drop_the_target_without_target(with_custom) -> None:  # type: ignore[no-untyped-def]
    frame = birds(3).drop(columns=["species"])
    assert validate_frame(frame, with_custom("TypedTarget"), with_target=False).n_valid == 3
    with pytest.raises(ContractViolation, match="species"):
        validate_frame(frame, with_custom("TypedTarget"))


def test_custom_frame_level_failures_fail_the_batch(with_custom) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractViolation, match="at_least_ten_rows"):
        validate_frame(birds(3), with_custom("WholeFrameChecks"))


def test_custom_checks_must_be_a_dataframe_model(with_custom) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ContractError, match="not a DataFrameModel"):
        validate_frame(birds(3), with_custom("NotAModel"))


# -- quarantine store ---------------------------------------------------------------------------


def test_quarantine_is_written_as_parquet(tmp_path: Path, penguins: Contract) -> None:
    frame = birds(3).astype(object)
    frame.loc[1, "observed_at"] = datetime(2024, 1, 1)
    frame.loc[1, "bill_length_mm"] = "n/a"
    result = validate_frame(frame, penguins)
    url = write_quarantine(result, str(tmp_path / "q"), batch="2024-05-01")
    assert url == f"{tmp_path}/q/penguins/2024-05-01.parquet"
    back = pd.read_parquet(url)
    assert back["_row"].tolist() == [1]
    assert back["bill_length_mm"].tolist() == ["n/a"]


def test_quarantine_goes_to_fsspec_urls_and_is_skipped_when_empty(penguins: Contract) -> None:
    store = f"memory://quarantine-{uuid.uuid4().hex}"
    assert write_quarantine(validate_frame(birds(2), penguins), store, batch="b") is None
    bad = birds(2).assign(island=["Dream", "Nowhere"])
    url = write_quarantine(validate_frame(bad, penguins), store, batch="b")
    assert url == f"{store}/penguins/b.parquet"
    with fsspec.open(url, "rb") as fh:
        assert len(pd.read_parquet(fh)) == 1
    fsspec.filesystem("memory").rm(store, recursive=True)


def test_batch_names_must_be_plain_file_names(penguins: Contract, tmp_path: Path) -> None:
    result = validate_frame(birds(2).assign(island=["Dream", "Nowhere"]), penguins)
    with pytest.raises(ValueError, match="plain file name"):
        write_quarantine(result, str(tmp_path), batch="../escape")


# -- nothing is lost ----------------------------------------------------------------------------

MESSY = st.one_of(
    st.none(),
    st.just(np.nan),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " 2 ", "P0001", "Dream", "Gentoo", "2024-01-01", "true", "1.5", "x"]),
    st.datetimes(),
    st.dates(),
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_row_is_valid_or_quarantined(data: st.DataObject) -> None:
    contract = load_contract(CONTRACTS / "penguins.yaml")
    n = data.draw(st.integers(0, 6))
    base = birds(n).astype(object)
    for column in data.draw(st.lists(st.sampled_from(list(base.columns)), max_size=4)):
        values = data.draw(st.lists(MESSY, min_size=n, max_size=n))
        # as an object column, or with the dtype pandas infers (str, float, datetime, ...)
        base[column] = pd.Series(values, dtype=object) if data.draw(st.booleans()) else values
    result = validate_frame(base, contract)
    assert result.n_valid + result.n_quarantined == result.n_input == n
    assert result.quarantined["_row"].is_unique
    assert set(result.quarantined["_row"]) == set(result.failures["row"])
    assert result.quarantined["_reason"].str.len().gt(0).all()
