"""Hold a data contract: the one declaration every stage derives from.

`Contract` and its `ColumnSpec`s are plain, validated data; ``mlops.contract.loader`` reads them
from YAML, ``mlops.contract.schema`` derives the pandera schema and
``mlops.contract.api_model`` the request model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

Role = Literal["id", "timestamp", "feature", "target"]
DType = Literal["float", "int", "bool", "string", "datetime"]
Task = Literal["binary", "multiclass", "regression"]

ROLES = ("id", "timestamp", "feature", "target")
DTYPES = ("float", "int", "bool", "string", "datetime")
TASKS = ("binary", "multiclass", "regression")


class ContractError(ValueError):
    """A contract file that cannot be used, with the offending key in the message."""


@dataclass(frozen=True)
class Checks:
    """Value checks of one column."""

    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    regex: str | None = None
    unique: bool = False


@dataclass(frozen=True)
class ColumnSpec:
    """One declared column."""

    name: str
    role: Role
    dtype: DType
    kind: Literal["numeric", "categorical"] | None = None
    task: Task | None = None
    classes: tuple[Any, ...] | None = None
    nullable: bool = False
    slice: bool = False
    description: str = ""
    example: Any = None
    checks: Checks = field(default_factory=Checks)

    @property
    def is_numeric(self) -> bool:
        return self.kind == "numeric"


@dataclass(frozen=True)
class Contract:
    """A validated contract and everything derived from it."""

    name: str
    columns: tuple[ColumnSpec, ...]
    description: str = ""
    version: int | None = None
    strict: bool = True
    custom_checks: str | None = None
    source: str = ""

    def column(self, name: str) -> ColumnSpec:
        """Return the column called `name`."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"contract {self.name!r} has no column {name!r}")

    @property
    def features(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.columns if c.role == "feature")

    @property
    def numeric_features(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.features if c.kind == "numeric")

    @property
    def categorical_features(self) -> tuple[ColumnSpec, ...]:
        return tuple(c for c in self.features if c.kind == "categorical")

    @property
    def target(self) -> ColumnSpec:
        return next(c for c in self.columns if c.role == "target")

    @property
    def task(self) -> Task:
        assert self.target.task is not None
        return self.target.task

    @property
    def id_column(self) -> str | None:
        return next((c.name for c in self.columns if c.role == "id"), None)

    @property
    def timestamp_column(self) -> str | None:
        return next((c.name for c in self.columns if c.role == "timestamp"), None)

    @property
    def slice_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.slice)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.features)

    @property
    def request_names(self) -> tuple[str, ...]:
        """The columns a prediction request carries: features, id and timestamp."""
        return tuple(c.name for c in self.columns if c.role in ("feature", "id", "timestamp"))

    @cached_property
    def fingerprint(self) -> str:
        """Return a stable sha256 of the contract's meaning (not its formatting)."""
        return hashlib.sha256(canonical_json(self).encode()).hexdigest()


def canonical_json(contract: Contract) -> str:
    """Serialise the parts of a contract that change its meaning, sorted and compact."""
    cols = []
    for c in contract.columns:
        d = {k: v for k, v in c.__dict__.items() if k not in {"description", "example"}}
        d["checks"] = dict(c.checks.__dict__)
        cols.append(d)
    doc = {"name": contract.name, "strict": contract.strict, "custom": contract.custom_checks}
    return json.dumps({**doc, "columns": cols}, sort_keys=True, default=str, separators=(",", ":"))
