"""Derive the pandera schema of a contract, and import its custom pandera checks."""

from __future__ import annotations

import importlib
import warnings
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from mlops.contract.spec import ColumnSpec, Contract, ContractError

BOOL_TEXT = {"true": True, "false": False, "1": True, "0": False}
PANDAS_DTYPES: dict[str, Any] = {
    "float": "float64",
    "int": "Int64",
    "bool": "boolean",
    "string": pd.StringDtype(),
    "datetime": "datetime64[ns]",
}


def build_schema(contract: Contract, *, with_target: bool = True) -> pa.DataFrameSchema:
    """Return a coercing pandera schema for the contract's columns.

    Columns not in the contract are not checked here: callers select the contract's columns
    first and report the others.
    """
    columns = {
        col.name: _column(col) for col in contract.columns if with_target or col.role != "target"
    }
    return pa.DataFrameSchema(columns, name=contract.name, strict=False, coerce=True)


def load_custom_model(contract: Contract) -> Any:
    """Import and return the contract's custom pandera DataFrameModel, or None."""
    if not contract.custom_checks:
        return None
    module_name, _, attr = contract.custom_checks.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ContractError(
            f"custom_checks: cannot import {contract.custom_checks!r} ({exc})"
        ) from exc


def _column(col: ColumnSpec) -> pa.Column:
    return pa.Column(
        PANDAS_DTYPES[col.dtype],
        checks=_checks(col),
        parsers=_parsers(col),
        nullable=col.nullable,
        unique=col.checks.unique,
        coerce=True,
        required=True,
        description=col.description or None,
    )


def _checks(col: ColumnSpec) -> list[pa.Check]:
    c = col.checks
    checks = []
    if c.min is not None:
        checks.append(pa.Check.ge(c.min))
    if c.max is not None:
        checks.append(pa.Check.le(c.max))
    if c.allowed is not None:
        checks.append(pa.Check.isin(list(c.allowed)))
    if c.regex is not None:
        checks.append(pa.Check.str_matches(c.regex))
    if col.dtype == "float":
        checks.append(pa.Check(_finite, element_wise=False, error="finite (no inf)"))
    if col.role == "target" and col.classes is not None:
        checks.append(pa.Check.isin(list(col.classes)))
    return checks


def _finite(series: pd.Series) -> pd.Series:
    return series.isna() | series.abs().ne(float("inf"))


def parse_timestamps(values: pd.Series) -> pd.Series:
    """Parse timestamps to naive UTC (naive ones are taken as UTC); NaT where one does not parse.

    Only text and date/time objects parse: a bare number is no timestamp (seconds? nanoseconds?).
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(values.dtype):
        parsed = values
    else:
        parsed = _parse_time_like(values)
    # the schema stores nanoseconds: later or earlier moments cannot be held and do not parse
    return parsed.where((parsed >= pd.Timestamp.min) & (parsed <= pd.Timestamp.max))


def _parse_time_like(values: pd.Series) -> pd.Series:
    candidates = values.where(values.map(_is_time_like).astype(bool))
    parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
    for fmt in ("ISO8601", None, "mixed"):  # ISO 8601, then one inferred format, then one by one
        retry = parsed.isna() & candidates.notna()
        if not retry.any():
            break
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            found = pd.to_datetime(candidates[retry], errors="coerce", utc=True, format=fmt)
        parsed[retry] = found.dt.tz_localize(None).dt.as_unit("us")
    return parsed


def _is_time_like(value: Any) -> bool:
    return isinstance(value, str | date | np.datetime64)


def normalize_timestamps(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Return (parsed values where they parse and raw values as text elsewhere, parsed values)."""
    parsed = parse_timestamps(values)
    unparsed = parsed.isna() & values.notna()
    if not unparsed.any():
        return parsed, parsed
    return parsed.astype(object).where(~unparsed, values[unparsed].map(str)), parsed


def uncoercible(values: pd.Series, dtype: Any) -> pd.Series:
    """Return which values cannot become the pandas `dtype`, judged value by value."""
    present = values.notna()
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return present & parse_timestamps(values).isna()
    if pd.api.types.is_bool_dtype(dtype):
        return present & ~values.map(parse_bool, na_action="ignore").isin([True, False])
    if not pd.api.types.is_numeric_dtype(dtype):
        return present & False
    numbers = pd.to_numeric(values, errors="coerce").astype("float64")
    bad = present & numbers.isna()
    if pd.api.types.is_integer_dtype(dtype):
        bad |= present & ~(np.isfinite(numbers) & (numbers % 1 == 0)).fillna(False)
    return bad


def _parsers(col: ColumnSpec) -> list[pa.Parser]:
    # pandas coerces a column of mixed types (True and 1, 1 and "2") all at once or not at all;
    # parsing value by value first lets validation point at the rows that really fail
    parse = {
        "bool": _parse_bools,
        "int": _parse_numbers,
        "float": _parse_numbers,
        "datetime": _parse_datetimes,
    }.get(col.dtype)
    return [pa.Parser(parse)] if parse is not None else []


def _parse_bools(values: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(values):
        return values
    return values.map(parse_bool, na_action="ignore")


def _parse_numbers(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return values
    return values.map(_as_number, na_action="ignore")


def _parse_datetimes(values: pd.Series) -> pd.Series:
    return normalize_timestamps(values)[0]


def parse_bool(value: Any) -> Any:
    """Return True/False for a bool-like value (true, "False", 1, "0"), else the value itself."""
    if isinstance(value, str):
        return BOOL_TEXT.get(value.strip().lower(), value)
    if isinstance(value, bool | np.bool_ | int | float | np.number) and value in (0, 1):
        return bool(value)
    return value


def _as_number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for parse in (int, float):
        try:
            return parse(value)
        except ValueError:
            pass
    return value
