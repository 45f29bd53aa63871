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
THRESHOLD_OBJECTIVES = ("auto", "f1", "accuracy", "balanced_accuracy")  # and fixed:<p>


class ContractError(ValueError):
    """A contract file that cannot be used, with the offending key in the message."""


def parse_threshold_objective(value: Any) -> str:
    """Return a binary model's decision-threshold objective in canonical form, or raise ValueError.

    Allowed: auto, f1, accuracy, balanced_accuracy, or fixed:<p> with 0 < p < 1 (e.g. fixed:0.5).
    """
    text = value.strip().lower() if isinstance(value, str) else ""
    if text in THRESHOLD_OBJECTIVES:
        return text
    if text.startswith("fixed:"):
        try:
            cut = float(text.removeprefix("fixed:"))
        except ValueError:
            cut = float("nan")
        if 0.0 < cut < 1.0:
            return f"fixed:{cut}"
    raise ValueError(
        f"unknown threshold objective {value!r}: allowed are {', '.join(THRESHOLD_OBJECTIVES)} "
        "or fixed:<p> with 0 < p < 1 (e.g. fixed:0.5)"
    )


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
    threshold_objective: str | None = None  # binary targets: how the decision threshold is tuned

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
    # The threshold objective is a training choice, not the rows' meaning: changing it must not
    # make the service refuse models trained under the previous one.
    ignored = {"description", "example", "threshold_objective"}
    cols = []
    for c in contract.columns:
        d = {k: v for k, v in c.__dict__.items() if k not in ignored}
        d["checks"] = dict(c.checks.__dict__)
        cols.append(d)
    doc = {"name": contract.name, "strict": contract.strict, "custom": contract.custom_checks}
    return json.dumps({**doc, "columns": cols}, sort_keys=True, default=str, separators=(",", ":"))
