"""The error answers of /predict, declared in the OpenAPI document as the service sends them.

BentoML declares every API's 400 as `{error, detail: string}`, while its validation errors carry
a list of problems; the guard's 401, 413 and 415 and the service's 503 are not declared at all.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

REF_TEMPLATE = "#/components/schemas/{model}"


class ErrorAnswer(BaseModel):
    """A refused request."""

    error: str = Field(description="What went wrong, and what to do about it.")


class ContractViolation(BaseModel):
    """One way a request breaks the data contract (input values are never echoed)."""

    type: str = Field(description="The check that failed, e.g. missing, float_type, too_long.")
    loc: list[str | int] = Field(description="Where: 'records', the record's index, the field.")
    msg: str = Field(description="The problem in words, e.g. 'Field required'.")
    url: str | None = Field(None, description="Documentation of the error type.")


class InvalidRequest(ErrorAnswer):
    """A body that is not valid JSON or breaks the data contract."""

    detail: list[ContractViolation] = Field(description="Every problem found.")


class BodyTooLarge(ErrorAnswer):
    """A body larger than the service accepts."""

    max_body_bytes: int = Field(description="The largest body accepted, in bytes.")


ERROR_ANSWERS: dict[int, tuple[type[BaseModel], str]] = {
    400: (InvalidRequest, "Invalid JSON, or records that break the data contract"),
    401: (ErrorAnswer, "Missing or wrong bearer token (when MLOPS_API_TOKEN is set)"),
    413: (BodyTooLarge, "Body larger than MLOPS_MAX_BODY_BYTES"),
    415: (ErrorAnswer, "Body not sent as application/json"),
    503: (ErrorAnswer, "No model loaded yet"),
}


def document_errors(spec: Any, route: str) -> Any:
    """Declare the error answers and the required body of `route` (a POST) in BentoML's spec."""
    mode: JsonSchemaMode = "serialization"
    refs, schemas = models_json_schema(
        [(model, mode) for model, _ in ERROR_ANSWERS.values()], ref_template=REF_TEMPLATE
    )
    spec.components.setdefault("schemas", {}).update(schemas["$defs"])
    operation = spec.paths[route].post
    # A POST without a body gets 415 from the guard: the body is not optional.
    operation["requestBody"]["required"] = True
    responses = operation["responses"]
    for status, (model, description) in ERROR_ANSWERS.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": refs[(model, mode)]}},
        }
    return spec
