"""Tasks that read and validate the data a flow works on."""

from __future__ import annotations

from typing import Any

import fsspec
import pandas as pd
from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from mlops.contract.loader import load_contract
from mlops.contract.spec import Contract
from mlops.data.incidents import REASON_COLUMN, incidents, served_in, set_aside
from mlops.data.sources import LoadedData, Window, load_dataset
from mlops.data.validate import ValidationResult, validate_frame, write_quarantine
from mlops.settings import Settings
from tasks.monitoring import read_history


@task(name="read-contract", cache_policy=NO_CACHE)
def read_contract(uri: str) -> Contract:
    """Load and check the data contract."""
    contract = load_contract(uri)
    get_run_logger().info("contract %s (%s)", contract.name, contract.fingerprint[:12])
    return contract


@task(name="load-data", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=5)
def load_data(
    data_uri: str, contract: Contract, *, labels_uri: str | None, window: Window
) -> LoadedData:
    """Read the data URI in contract order and window, joining separate labels."""
    loaded = load_dataset(data_uri, contract, labels_uri=labels_uri, window=window)
    rows: list[dict[str, Any]] = [
        {"item": "files read", "value": len(loaded.files)},
        {"item": "rows read", "value": loaded.rows_read},
        {"item": "rows in window", "value": loaded.rows_in_window},
        {"item": "rows awaiting a label", "value": loaded.unlabeled_rows},
        {"item": "columns not in the contract", "value": ", ".join(loaded.dropped_columns)},
    ]
    create_table_artifact(key="data-loaded", table=rows, description=f"Data read from {data_uri}")
    return loaded


@task(name="validate-data", cache_policy=NO_CACHE)
def validate_data(
    loaded: LoadedData,
    contract: Contract,
    *,
    quarantine_url: str,
    batch: str,
    max_failing_share: float,
) -> ValidationResult:
    """Validate labelled rows, quarantine failures with reasons, and enforce the threshold."""
    result = validate_frame(loaded.labeled_frame(), contract)
    where = write_quarantine(result, quarantine_url, batch=batch)
    table = result.summary_rows()
    if where:
        table.append(
            {
                "column": "(all)",
                "check": "quarantine file",
                "failures": 0,
                "rows": result.n_quarantined,
                "examples": where,
            }
        )
    create_table_artifact(
        key="data-validation",
        table=table,
        description=f"{result.n_input} rows checked against contract {contract.name}: "
        f"{result.n_valid} valid, {result.n_quarantined} quarantined "
        f"({result.failing_share:.2%}, allowed {max_failing_share:.1%})",
    )
    get_run_logger().info(
        "validation: %d valid, %d quarantined%s",
        result.n_valid,
        result.n_quarantined,
        f" -> {where}" if where else "",
    )
    result.check_threshold(max_failing_share)
    return result


@task(name="set-aside-incidents", cache_policy=NO_CACHE)
def set_aside_incidents(
    frame: pd.DataFrame, contract: Contract, settings: Settings, model_name: str, *, batch: str
) -> pd.DataFrame:
    """Quarantine the rows served in monitoring windows that failed their data checks.

    They pass the contract (a valid amount in the wrong unit) but came from a broken feed;
    training on them would learn the breakage. Needs the contract's id column.
    """
    log = get_run_logger()
    found = incidents(read_history(settings, model_name))
    if not found or contract.id_column is None:
        return frame
    reasons = served_in(settings.store("predictions"), model_name, found, contract.id_column)
    kept, aside = set_aside(frame, contract, reasons)
    if aside.empty:
        return kept
    url = f"{settings.quarantine.rstrip('/')}/{contract.name}/{batch}-incidents.parquet"
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as fh:
        aside.to_parquet(fh, index=False)
    create_table_artifact(
        key="incident-rows",
        table=[
            {"reason": reason, "rows": int(count)}
            for reason, count in aside[REASON_COLUMN].value_counts().items()
        ],
        description=f"{len(aside)} rows served during data-quality incidents set aside -> {url}",
    )
    log.info("set aside %d rows served during %d data-quality incidents -> %s",
             len(aside), len(found), url)  # fmt: skip
    return kept
