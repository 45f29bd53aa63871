"""Validate a batch against its contract: keep the rows that pass, quarantine the rest with reasons.

Failures tied to rows (a value out of range, a value that does not parse) quarantine those rows;
failures of the batch as a whole (a missing column) raise `ContractViolation`. Every input row ends
up either in `valid` or in `quarantined`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fsspec
import pandas as pd
import pandera.pandas as pa

from mlops.contract.schema import build_schema, load_custom_model, uncoercible
from mlops.contract.spec import Contract, ContractError

FAILURE_COLUMNS = ["column", "check", "failure_case", "row"]
EXAMPLES = 3
ROW = "(row)"  # the column of failures of checks on whole rows


class ContractViolation(Exception):
    """A batch that breaks its contract as a whole, or with too many failing rows."""


@dataclass
class ValidationResult:
    """Rows that passed (coerced), rows that failed (as read, with reasons), and each failure."""

    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures: pd.DataFrame
    n_input: int
    contract_name: str = "unnamed"

    @property
    def n_valid(self) -> int:
        return len(self.valid)

    @property
    def n_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def failing_share(self) -> float:
        return self.n_quarantined / self.n_input if self.n_input else 0.0

    def summary_rows(self) -> list[dict[str, Any]]:
        """Return one row per (column, check) and a totals row, for a table artifact."""
        rows = [
            _summary_row(column, check, len(group), group["row"].nunique(), _examples(group))
            for (column, check), group in self.failures.groupby(["column", "check"], sort=False)
        ]
        total = f"{self.n_input} input = {self.n_valid} valid + {self.n_quarantined} quarantined"
        rows.append(_summary_row("(all)", "total", len(self.failures), self.n_quarantined, total))
        return rows

    def check_threshold(self, max_failing_share: float = 0.05) -> None:
        """Raise `ContractViolation` when more than `max_failing_share` of the rows failed."""
        if self.failing_share <= max_failing_share:
            return
        worst = sorted(self.summary_rows()[:-1], key=lambda r: -r["failures"])[:5]
        details = "; ".join(
            f"{r['column']}: {r['check']} failed {r['failures']}x (e.g. {r['examples']})"
            for r in worst
        )
        raise ContractViolation(
            f"{self.n_quarantined} of {self.n_input} rows ({self.failing_share:.1%}) failed "
            f"contract {self.contract_name!r}, above the allowed {max_failing_share:.1%}: {details}"
        )


def validate_frame(
    df: pd.DataFrame, contract: Contract, *, with_target: bool = True
) -> ValidationResult:
    """Validate `df` lazily, returning coerced valid rows and quarantined rows with reasons."""
    original = df.reset_index(drop=True)
    schema = build_schema(contract, with_target=with_target)
    valid, failures = _quarantine_loop(schema, original, contract.name)
    custom = _custom_schema(contract, with_target)
    if custom is not None:
        valid, more = _quarantine_loop(custom, valid, contract.name)
        failures = pd.concat([failures, more], ignore_index=True)
    return ValidationResult(
        valid=valid.reset_index(drop=True),
        quarantined=_quarantine_frame(original, failures),
        failures=failures,
        n_input=len(original),
        contract_name=contract.name,
    )


def write_quarantine(
    result: ValidationResult, store_url: str, *, batch: str, storage_options: dict | None = None
) -> str | None:
    """Write quarantined rows to `<store_url>/<contract>/<batch>.parquet`; None if none."""
    if result.n_quarantined == 0:
        return None
    if not batch or "/" in batch or batch in (".", ".."):
        raise ValueError(f"batch must be a plain file name, got {batch!r}")
    url = f"{store_url.rstrip('/')}/{result.contract_name}/{batch}.parquet"
    fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as fh:
        result.quarantined.to_parquet(fh, index=False)
    return url


def _custom_schema(contract: Contract, with_target: bool) -> pa.DataFrameSchema | None:
    model = load_custom_model(contract)
    if model is None:
        return None
    if not (isinstance(model, type) and issubclass(model, pa.DataFrameModel)):
        raise ContractError(f"custom_checks: {contract.custom_checks!r} is not a DataFrameModel")
    schema = model.to_schema()
    target = contract.target.name
    if not with_target and target in schema.columns:
        schema = schema.remove_columns([target])
    return schema


def _quarantine_loop(
    schema: pa.DataFrameSchema, frame: pd.DataFrame, name: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop failing rows until the rest validates; return (coerced rest, failures)."""
    found = [_empty_failures()]
    while True:
        if frame.empty:  # an empty column of the wrong dtype does not coerce; an untyped one does
            frame = frame.astype(object)
        try:
            return schema.validate(frame, lazy=True), pd.concat(found, ignore_index=True)
        except pa.errors.SchemaErrors as exc:
            failures = _row_failures(schema, frame, exc.failure_cases, name)
        found.append(failures)
        frame = frame.drop(index=failures["row"].unique())


def _row_failures(
    schema: pa.DataFrameSchema, frame: pd.DataFrame, cases: pd.DataFrame, name: str
) -> pd.DataFrame:
    """Return the failures tied to rows; raise on failures of the frame as a whole."""
    cases = _tidy(cases)
    indexed, unindexed = cases[cases["row"].notna()], cases[cases["row"].isna()]
    located, whole, rechecked = [], [], []
    for column, group in unindexed.groupby("column", sort=False, dropna=False):
        more = _locate_in_column(schema, frame, column, group, indexed, name)
        if more is None:
            whole.append(group)
        else:
            located.append(more)
            rechecked.append(column)
    if whole:
        raise ContractViolation(_whole_frame_message(name, pd.concat(whole), frame))
    # Checks of a column that did not coerce ran on raw values; they ran again on its coercible
    # rows (in `located`): keep those results only, or each failing row would count twice.
    stale = indexed["column"].isin(rechecked) & ~indexed["check"].str.startswith("coerce_dtype")
    failures = pd.concat([indexed[~stale], *located], ignore_index=True)
    if failures.empty:
        raise ContractViolation(f"contract {name!r}: validation failed without failing rows")
    return failures.astype({"row": "int64"})[FAILURE_COLUMNS]


def _locate_in_column(
    schema: pa.DataFrameSchema,
    frame: pd.DataFrame,
    column: Any,
    group: pd.DataFrame,
    indexed: pd.DataFrame,
    name: str,
) -> pd.DataFrame | None:
    """Find the rows behind a column-wide failure, or None when it is not tied to rows.

    Pandera reports a column-wide failure when a column could not be coerced at once (floats with
    decimals into an int column) and when checks ran on values that did not coerce.
    """
    if column not in schema.columns or column not in frame.columns:
        return None
    coerce = group["check"].str.startswith("coerce_dtype")
    bad = indexed[(indexed["column"] == column) & indexed["check"].str.startswith("coerce_dtype")]
    new = _empty_failures()
    if coerce.any():
        mask = uncoercible(frame[column], schema.columns[column].dtype.type)
        mask &= ~frame.index.isin(bad["row"])
        values = frame.loc[mask, column]
        check = group.loc[coerce, "check"].iloc[0]
        new = pd.DataFrame({"failure_case": values.map(_text).tolist(), "row": values.index})
        new = new.assign(column=column, check=check)[FAILURE_COLUMNS]
    skip = set(bad["row"]) | set(new["row"])
    if not skip:
        return None
    rest = frame.loc[~frame.index.isin(skip), [column]]
    _, checks = _quarantine_loop(schema.select_columns([column]), rest, name)
    return pd.concat([new, checks], ignore_index=True)


def _tidy(cases: pd.DataFrame) -> pd.DataFrame:
    """Return pandera's failure cases as column, check, failure_case (text), row."""
    missing = cases["check"].eq("column_in_dataframe")
    # a failing row-wise check of the whole frame is reported once per cell: keep one per row
    row_check = cases["schema_context"].eq("DataFrameSchema") & cases["index"].notna()
    tidy = pd.DataFrame(
        {
            "column": cases["column"].where(~missing, cases["failure_case"]).to_numpy(object),
            "check": cases["check"].astype(str).to_numpy(),
            "failure_case": cases["failure_case"].map(_text).to_numpy(dtype=object),
            "row": cases["index"].to_numpy(dtype=object),
        }
    )
    tidy.loc[row_check.to_numpy(), ["column", "failure_case"]] = [ROW, "whole row"]
    tidy = tidy.drop_duplicates(["column", "check", "row"])
    coerced = set(tidy.loc[tidy["check"].str.startswith("coerce_dtype"), "column"])
    # a value that does not coerce is also reported as a wrong dtype: keep one reason
    echo = tidy["check"].str.startswith("dtype(") & tidy["column"].isin(coerced)
    return tidy[~echo]


def _quarantine_frame(original: pd.DataFrame, failures: pd.DataFrame) -> pd.DataFrame:
    """Return the failing rows as read, every value as text, with `_row` and `_reason`."""
    parts = zip(failures["column"], failures["check"], failures["failure_case"], strict=True)
    lines = pd.Series([f"{c}: {check} ({value})" for c, check, value in parts], dtype=object)
    reasons = lines.groupby(failures["row"].to_numpy(), sort=True).agg(
        lambda group: "; ".join(dict.fromkeys(group))
    )
    rows = original.loc[reasons.index.to_numpy(dtype="int64")]
    text = rows.map(_text, missing=None).astype("string")
    text["_row"] = rows.index.to_numpy(dtype="int64")
    text["_reason"] = pd.array(reasons.to_numpy(dtype=object), dtype="string")
    return text.reset_index(drop=True)


def _whole_frame_message(name: str, cases: pd.DataFrame, frame: pd.DataFrame) -> str:
    parts = []
    for (column, check), group in cases.groupby(["column", "check"], sort=False, dropna=False):
        if check == "column_in_dataframe":
            parts.append(f"column {column!r} is missing")
        else:
            parts.append(f"column {column!r}: {check} failed as a whole ({_examples(group)})")
    present = ", ".join(map(str, frame.columns[:20]))
    return f"batch breaks contract {name!r}: {'; '.join(parts)} (columns present: {present})"


def _examples(group: pd.DataFrame) -> str:
    return ", ".join(list(dict.fromkeys(group["failure_case"].astype(str)))[:EXAMPLES])


def _empty_failures() -> pd.DataFrame:
    return pd.DataFrame(columns=FAILURE_COLUMNS).astype({"row": "int64"})


def _summary_row(column: str, check: str, failures: int, rows: int, examples: str) -> dict:
    return {
        "column": column,
        "check": check,
        "failures": failures,
        "rows": rows,
        "examples": examples,
    }


def _text(value: Any, missing: str | None = "missing") -> str | None:
    return missing if pd.api.types.is_scalar(value) and pd.isna(value) else str(value)
