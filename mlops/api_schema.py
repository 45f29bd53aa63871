"""Derive the prediction API's request and response models from a contract.

Each record carries the contract's feature columns (typed, ranged, nullable as declared) and, when
the contract has them, the optional id and timestamp columns so served rows can be joined with
labels later. Strict contracts reject unknown fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlops.contract import ColumnSpec, Contract

DEFAULT_MAX_RECORDS = 1024


def _annotation(col: ColumnSpec) -> Any:
    base: Any
    if col.checks.allowed is not None and col.dtype in ("string", "int", "bool"):
        base = Literal[tuple(col.checks.allowed)]
    else:
        base = {"float": float, "int": int, "bool": bool, "string": str, "datetime": datetime}[
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
    if col.dtype in ("int", "bool", "string") and col.checks.allowed is None:
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
            example[col.name] = col.checks.min if col.checks.min is not None else 0
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


class PredictResponse(BaseModel):
    """Predictions for every record, in request order."""

    request_id: str = Field(description="Unique id of this request (also in the prediction log).")
    model_version: str = Field(description="Registry version that produced the predictions.")
    predictions: list[Prediction]


def format_predictions(
    output: Any, manifest: dict[str, Any], ids: list[Any] | None = None
) -> list[Prediction]:
    """Turn a model output array into per-record predictions."""
    classes = manifest.get("classes") or []
    ids = ids or [None] * len(output)
    if manifest["task"] == "regression":
        return [
            Prediction(prediction=float(v), id=None if i is None else str(i))
            for v, i in zip(output, ids, strict=True)
        ]
    threshold = float(manifest.get("decision_threshold", 0.5))
    labels = [str(c) for c in classes]
    rows = []
    for probs, record_id in zip(output.tolist(), ids, strict=True):
        if manifest["task"] == "binary":
            index = 1 if probs[1] >= threshold else 0
        else:
            index = max(range(len(probs)), key=probs.__getitem__)
        rows.append(
            Prediction(
                prediction=classes[index],
                probabilities=dict(zip(labels, probs, strict=True)),
                id=None if record_id is None else str(record_id),
            )
        )
    return rows
