"""BentoML's floor: the same `bentoml serve` stack and middleware, answering without any work.

It parses the JSON body into plain dicts and returns a constant: what remains of a request's cost
is the HTTP server, BentoML's middleware (tracing, metrics, access log) and the load generator.
"""

from __future__ import annotations

from typing import Any

import bentoml
from starlette.responses import Response


@bentoml.service(name="bench_floor", workers=1)
class Floor:
    """An endpoint with the prediction service's route and no work behind it."""

    @bentoml.api(route="/predict")
    async def predict(self, records: list[dict[str, Any]]) -> dict[str, Any]:
        """Answer a constant."""
        return Response(b'{"predictions":[]}', media_type="application/json")  # type: ignore[return-value]
