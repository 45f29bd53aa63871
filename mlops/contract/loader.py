"""Load a data contract: the one declaration every stage derives from.

A contract is a YAML file::

    name: card-fraud               # required: lowercase letters, digits, dashes
    description: ...               # optional
    version: 1                     # optional integer, for your bookkeeping
    strict: true                   # optional (default true): unknown columns are rejected by the
                                   # API and dropped from files with a warning
    custom_checks: pkg.mod:Model   # optional pandera DataFrameModel run in addition
    columns:                       # order matters: it is the ONNX input order of the features
      amount:
        role: feature              # id | timestamp | feature | target
        dtype: float               # float | int | bool | string | datetime
        kind: numeric              # features: numeric | categorical (default from dtype)
        nullable: false            # default false
        slice: false               # per-slice metrics on this column
        description: ...           # shown in the API docs
        example: 12.5              # shown in the API docs
        checks: {min: 0, max: 50000, allowed: [...], regex: "...", unique: false}
      is_fraud:
        role: target
        dtype: int
        task: binary               # binary | multiclass | regression
        classes: [0, 1]            # optional for classification
        threshold_objective: auto  # optional, binary only: auto | f1 | accuracy |
                                   # balanced_accuracy | fixed:<p> (how the cut is tuned)

Unknown keys and inconsistent declarations raise `ContractError` naming the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import fsspec
import yaml

from mlops.contract.spec import (
    DTYPES,
    ROLES,
    TASKS,
    Checks,
    ColumnSpec,
    Contract,
    ContractError,
    parse_threshold_objective,
)

TOP_KEYS = {"name", "description", "version", "strict", "custom_checks", "columns"}
COLUMN_KEYS = {
    "role",
    "dtype",
    "kind",
    "task",
    "classes",
    "nullable",
    "slice",
    "description",
    "example",
    "checks",
    "threshold_objective",
}
CHECK_KEYS = {"min", "max", "allowed", "regex", "unique"}
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def load_contract(uri: str | Path, *, storage_options: dict | None = None) -> Contract:
    """Read and validate a contract YAML file from a path or fsspec URL."""
    with fsspec.open(str(uri), "r", **(storage_options or {})) as fh:
        try:
            doc = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ContractError(f"{uri}: not valid YAML: {exc}") from exc
    return parse_contract(doc, source=str(uri))


def parse_contract(doc: Any, *, source: str = "<dict>") -> Contract:
    """Validate a contract document (already parsed YAML) and build the `Contract`."""
    where = f"contract {source}"
    if not isinstance(doc, dict):
        raise ContractError(f"{where}: expected a mapping at the top level")
    _reject_unknown(doc, TOP_KEYS, where)
    name = doc.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ContractError(f"{where}: 'name' must be lowercase letters, digits and dashes")
    raw_cols = doc.get("columns")
    if not isinstance(raw_cols, dict) or not raw_cols:
        raise ContractError(f"{where}: 'columns' must be a non-empty mapping of column names")
    columns = tuple(_parse_column(str(n), spec, where) for n, spec in raw_cols.items())
    version = doc.get("version")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ContractError(f"{where}: 'version' must be an integer (got {version!r})")
    contract = Contract(
        name=name,
        columns=columns,
        description=str(doc.get("description", "")),
        version=version,
        strict=bool(doc.get("strict", True)),
        custom_checks=doc.get("custom_checks"),
        source=source,
    )
    _check_consistency(contract, where)
    return contract


def _reject_unknown(mapping: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(map(str, mapping)) - allowed)
    if unknown:
        raise ContractError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _parse_column(name: str, spec: Any, where: str) -> ColumnSpec:
    where = f"{where}, column {name!r}"
    if not isinstance(spec, dict):
        raise ContractError(f"{where}: expected a mapping with at least 'role' and 'dtype'")
    _reject_unknown(spec, COLUMN_KEYS, where)
    role, dtype = spec.get("role"), spec.get("dtype")
    if role not in ROLES:
        raise ContractError(f"{where}: 'role' must be one of {', '.join(ROLES)} (got {role!r})")
    if dtype not in DTYPES:
        raise ContractError(f"{where}: 'dtype' must be one of {', '.join(DTYPES)} (got {dtype!r})")
    checks = spec.get("checks") or {}
    if not isinstance(checks, dict):
        raise ContractError(f"{where}: 'checks' must be a mapping")
    _reject_unknown(checks, CHECK_KEYS, f"{where}, checks")
    allowed = _optional_list(checks, "allowed", f"{where}, checks")
    classes = _optional_list(spec, "classes", where)
    return ColumnSpec(
        name=name,
        role=role,
        dtype=dtype,
        kind=_feature_kind(spec, role, dtype, where),
        task=spec.get("task"),
        classes=tuple(classes) if classes is not None else None,
        nullable=bool(spec.get("nullable", False)),
        slice=bool(spec.get("slice", False)),
        description=str(spec.get("description", "")),
        example=spec.get("example"),
        checks=Checks(
            min=_optional_number(checks, "min", f"{where}, checks"),
            max=_optional_number(checks, "max", f"{where}, checks"),
            allowed=tuple(allowed) if allowed is not None else None,
            regex=checks.get("regex"),
            unique=bool(checks.get("unique", False)),
        ),
        threshold_objective=_threshold_objective(spec, where),
    )


def _optional_list(mapping: dict, key: str, where: str) -> list | None:
    value = mapping.get(key)
    if value is not None and not isinstance(value, list):
        raise ContractError(f"{where}: {key!r} must be a list (got {value!r})")
    return value


def _threshold_objective(spec: dict, where: str) -> str | None:
    value = spec.get("threshold_objective")
    if value is None:
        return None
    try:
        return parse_threshold_objective(value)
    except ValueError as exc:
        raise ContractError(f"{where}: 'threshold_objective': {exc}") from exc


def _optional_number(mapping: dict, key: str, where: str) -> float | None:
    value = mapping.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ContractError(f"{where}: {key!r} must be a number (got {value!r})")
    return float(value)  # so that `min: 0` and `min: 0.0` mean (and fingerprint) the same


def _feature_kind(spec: dict, role: str, dtype: str, where: str) -> Any:
    kind = spec.get("kind")
    if role != "feature":
        if kind is not None:
            raise ContractError(f"{where}: 'kind' applies to features only (role is {role!r})")
        return None
    if dtype == "datetime":
        raise ContractError(f"{where}: a datetime column cannot be a feature; derive one")
    if kind is None:
        return "numeric" if dtype in ("float", "int") else "categorical"
    if kind not in ("numeric", "categorical"):
        raise ContractError(f"{where}: 'kind' must be numeric or categorical (got {kind!r})")
    if kind == "numeric" and dtype not in ("float", "int", "bool"):
        raise ContractError(f"{where}: 'kind: numeric' needs dtype float, int or bool")
    return kind


def _check_consistency(contract: Contract, where: str) -> None:
    roles = [c.role for c in contract.columns]
    for role in ("id", "timestamp", "target"):
        if roles.count(role) > 1:
            raise ContractError(f"{where}: more than one column has role {role!r}")
    if "target" not in roles:
        raise ContractError(f"{where}: no column has 'role: target'")
    if "feature" not in roles:
        raise ContractError(f"{where}: no column has 'role: feature'")
    for col in contract.columns:
        _check_column(col, where)


def _check_column(col: ColumnSpec, where: str) -> None:
    where = f"{where}, column {col.name!r}"
    if col.role == "target":
        if col.task not in TASKS:
            raise ContractError(f"{where}: target needs 'task' ({', '.join(TASKS)})")
        if col.dtype == "datetime":
            raise ContractError(f"{where}: a target cannot have dtype datetime")
        if col.task == "regression" and col.dtype not in ("float", "int"):
            raise ContractError(f"{where}: a regression target needs dtype float or int")
        if col.task == "regression" and col.classes is not None:
            raise ContractError(f"{where}: 'classes' does not apply to regression")
        if col.task == "binary" and col.classes is not None and len(col.classes) != 2:
            raise ContractError(f"{where}: a binary target needs exactly 2 classes")
        if col.nullable:
            raise ContractError(f"{where}: the target cannot be nullable")
    elif col.task is not None or col.classes is not None:
        raise ContractError(f"{where}: 'task' and 'classes' apply to the target only")
    if col.threshold_objective is not None and col.task != "binary":
        raise ContractError(f"{where}: 'threshold_objective' applies to a binary target only")
    if col.role == "timestamp" and col.dtype != "datetime":
        raise ContractError(f"{where}: the timestamp column needs dtype datetime")
    if col.role == "id" and col.nullable:
        raise ContractError(f"{where}: the id column cannot be nullable")
    c = col.checks
    if (c.min is not None or c.max is not None) and col.dtype not in ("float", "int"):
        raise ContractError(f"{where}: 'min'/'max' need dtype float or int")
    if c.min is not None and c.max is not None and c.min > c.max:
        raise ContractError(f"{where}: checks.min ({c.min}) is above checks.max ({c.max})")
    if c.regex is not None:
        if col.dtype != "string":
            raise ContractError(f"{where}: 'regex' needs dtype string")
        try:
            re.compile(c.regex)
        except re.error as exc:
            raise ContractError(f"{where}: checks.regex does not compile: {exc}") from exc
    if col.slice and col.role != "feature":
        raise ContractError(f"{where}: 'slice' applies to features only")
