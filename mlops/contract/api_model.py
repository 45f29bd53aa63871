"""Derive the prediction API's request and response models from a contract.

Each record carries the contract's feature columns (typed, ranged, nullable as declared) and, when
the contract has them, the optional id and timestamp columns so served rows can be joined with
labels later. Strict contracts reject unknown fields.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError, to_json

from mlops.contract.spec import ColumnSpec, Contract

DEFAULT_MAX_RECORDS = 1024


def _iso_date_time(value: Any) -> Any:
    """Let only date-time strings (and datetimes, from Python) on to pydantic's datetime parser.

    Left alone, pydantic reads a number, or a string of digits, as seconds since 1970: `0` would
    become a 1970 timestamp where the OpenAPI document promises a date-time string. A date-time
    (RFC 3339, as OpenAPI's `date-time`) begins with its year: `YYYY-`. This runs per record, so
    it checks only that much and leaves the rest of the parsing to pydantic.
    """
    if (isinstance(value, str) and value[4:5] == "-") or isinstance(value, datetime):
        return value
    raise PydanticCustomError(
        "datetime_type", "Input should be an ISO 8601 date-time string, such as 2026-01-31T14:05:00"
    )


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_date_time)]


def _annotation(col: ColumnSpec) -> Any:
    base: Any
    if col.checks.allowed is not None and col.dtype in ("string", "int", "bool"):
        base = Literal[tuple(col.checks.allowed)]
    else:
        base = {"float": float, "int": int, "bool": bool, "string": str, "datetime": IsoDateTime}[
            col.dtype
        ]
    return base | None if col.nullable else base


def _field(col: ColumnSpec, *, optional: bool = False) -> Any:
    c = col.checks
    kwargs: dict[str, Any] = {"description": col.description or None}
    if col.example is not None:  # OpenAPI 3.0 `example` (BentoML's schema has no `examples`)
        kwargs["json_schema_extra"] = {"example": col.example}
    if c.min is not None:
        kwargs["ge"] = c.min
    if c.max is not None:
        kwargs["le"] = c.max
    if c.regex is not None:
        kwargs["pattern"] = c.regex
    if col.dtype == "float":
        kwargs["allow_inf_nan"] = False
    # Strict: a JSON string or boolean is not a number (true would pass as 1.0); ints pass as float.
    if col.dtype in ("float", "int", "bool", "string") and col.checks.allowed is None:
        kwargs["strict"] = True
    if optional or col.nullable:
        return Field(None, **kwargs)
    return Field(..., **kwargs)


def build_record_model(contract: Contract) -> type[BaseModel]:
    """Return the pydantic model of one input record."""
    fields: dict[str, Any] = {}
    for col in contract.columns:
        if col.role == "feature":
            fields[col.name] = (_annotation(col), _field(col))
        elif col.role in ("id", "timestamp"):
            fields[col.name] = (_annotation(col) | None, _field(col, optional=True))
    config = ConfigDict(
        extra="forbid" if contract.strict else "ignore",
        json_schema_extra={"example": example_record(contract)},
    )
    name = "".join(part.capitalize() for part in contract.name.split("-")) + "Record"
    return create_model(name, __config__=config, **fields)


def example_record(contract: Contract) -> dict[str, Any]:
    """Return one example record built from the contract's `example` values."""
    example: dict[str, Any] = {}
    for col in contract.features:
        if col.example is not None:
            example[col.name] = col.example
        elif col.checks.allowed:
            example[col.name] = col.checks.allowed[0]
        elif col.dtype in ("float", "int"):
            low = col.checks.min if col.checks.min is not None else 0
            example[col.name] = math.ceil(low) if col.dtype == "int" else low
        else:
            example[col.name] = {"bool": True, "string": "value"}.get(col.dtype)
    return example


class Prediction(BaseModel):
    """The model's answer for one record."""

    prediction: Any = Field(description="Predicted class (after the decision threshold) or value.")
    probabilities: dict[str, float] | None = Field(
        None, description="Class probabilities, keyed by class label (classification only)."
    )
    id: str | None = Field(None, description="The record's id, when it was sent.")
    model_version: str | None = Field(
        None,
        description="Registry version that answered this record: set on every record while a "
        "canary shares the traffic, else null.",
    )


class PredictResponse(BaseModel):
    """Predictions for every record, in request order."""

    request_id: str = Field(description="Unique id of this request (also in the prediction log).")
    model_version: str = Field(description="Registry version that produced the predictions.")
    predictions: list[Prediction]


def format_predictions(
    output: Any, manifest: dict[str, Any], ids: list[Any] | None = None
) -> list[Prediction]:
    """Turn a model output array into per-record predictions."""
    return [Prediction(**p) for p in prediction_dicts(output, manifest, ids)]


def prediction_dicts(
    output: Any, manifest: dict[str, Any], ids: list[Any] | None = None
) -> list[dict[str, Any]]:
    """Return per-record predictions as plain dicts (the fields of `Prediction`, in order)."""
    classes = manifest.get("classes") or []
    ids = ids or [None] * len(output)
    if manifest["task"] == "regression":
        return [
            {
                "prediction": float(v),
                "probabilities": None,
                "id": None if i is None else str(i),
                "model_version": None,
            }
            for v, i in zip(output, ids, strict=True)
        ]
    threshold = float(manifest.get("decision_threshold", 0.5))
    labels = [str(c) for c in classes]
    binary = manifest["task"] == "binary"
    rows = []
    for probs, record_id in zip(output.tolist(), ids, strict=True):
        if binary:
            index = 1 if probs[1] >= threshold else 0
        else:
            index = max(range(len(probs)), key=probs.__getitem__)
        rows.append(
            {
                "prediction": classes[index],
                "probabilities": dict(zip(labels, probs, strict=True)),
                "id": None if record_id is None else str(record_id),
                "model_version": None,
            }
        )
    return rows


def render_response(
    request_id: str,
    model_version: str,
    output: Any,
    manifest: dict[str, Any],
    ids: list[Any] | None = None,
) -> bytes:
    """Return the JSON body of a `PredictResponse`, byte for byte, without building the models."""
    return to_json(
        {
            "request_id": request_id,
            "model_version": model_version,
            "predictions": prediction_dicts(output, manifest, ids),
        }
    )


@dataclass(frozen=True)
class AnsweredPart:
    """The records of one request that one model version answered, by position in the request."""

    positions: Sequence[int]
    output: Any
    manifest: dict[str, Any]
    model_version: str
    ids: list[Any] | None = None


def render_routed_response(
    request_id: str, model_version: str, parts: Sequence[AnsweredPart], rows: int
) -> bytes:
    """Return a `PredictResponse` body whose records several versions answered (a canary).

    Every record names the version that answered it; `model_version` is the champion's.
    """
    predictions: list[dict[str, Any]] = [{}] * rows
    for part in parts:
        dicts = prediction_dicts(part.output, part.manifest, part.ids)
        for position, answer in zip(part.positions, dicts, strict=True):
            answer["model_version"] = part.model_version
            predictions[position] = answer
    return to_json(
        {"request_id": request_id, "model_version": model_version, "predictions": predictions}
    )


@dataclass(frozen=True)
class RecordColumns:
    """The validated records of one request as columns of plain values: name -> one per record."""

    values: dict[str, list[Any]]
    rows: int

    def __len__(self) -> int:
        return self.rows

    @classmethod
    def from_records(cls, records: list[BaseModel], names: tuple[str, ...]) -> RecordColumns:
        """Take the named fields of validated records (no `model_dump`: this is the hot path)."""
        return cls({name: [getattr(r, name) for r in records] for name in names}, len(records))

    def take(self, positions: Sequence[int]) -> RecordColumns:
        """Return the records at `positions`, in that order."""
        return RecordColumns(
            {name: [column[i] for i in positions] for name, column in self.values.items()},
            len(positions),
        )

    @classmethod
    def concat(cls, parts: list[RecordColumns]) -> RecordColumns:
        """Join the columns of several requests, in order."""
        if len(parts) == 1:
            return parts[0]
        names = parts[0].values.keys()
        values = {name: [v for part in parts for v in part.values[name]] for name in names}
        return cls(values, sum(part.rows for part in parts))
