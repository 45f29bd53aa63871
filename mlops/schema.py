"""Derive the pandera schema of a contract."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pandera.pandas as pa

from mlops.contract import ColumnSpec, Contract

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
        col.name: _column(col)
        for col in contract.columns
        if with_target or col.role != "target"
    }
    return pa.DataFrameSchema(columns, name=contract.name, strict=False, coerce=True)


def _column(col: ColumnSpec) -> pa.Column:
    return pa.Column(
        PANDAS_DTYPES[col.dtype],
        checks=_checks(col),
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
