"""The prediction service: the champion's ONNX model behind a contract-typed HTTP API.

The request model is generated from the data contract when this module is imported (BentoML needs
the types at class definition); everything else (registry, model, logging) starts in `__init__`.
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

import anyio.to_thread
import bentoml
import pandas as pd
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import Field
from starlette.responses import Response

from mlops.api_schema import PredictResponse, build_record_model, format_predictions
from mlops.contract import load_contract
from mlops.inference import LoadedModel
from mlops.settings import get_settings
from serving.batching import MicroBatcher
from serving.observability import RejectionCounter, service_metrics
from serving.runtime import ModelKeeper, output_frame, start_logger

for _key, _value in (("BENTOML_DO_NOT_TRACK", "true"), ("WHYLOGS_NO_ANALYTICS", "1")):
    os.environ.setdefault(_key, _value)

SETTINGS = get_settings()
CONTRACT = load_contract(SETTINGS.contract)
Record = build_record_model(CONTRACT)
Records = Annotated[list[Record], Field(min_length=1, max_length=SETTINGS.max_records)]  # type: ignore[valid-type]
admin = FastAPI(title="mlops admin")


@bentoml.service(name="mlops_prediction", traffic={"timeout": 30}, workers=1)
class PredictionService:
    """Serve the registry's champion (or a pinned version) with logging and hot reload."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.metrics = service_metrics()
        self.keeper = ModelKeeper(self.settings, self.metrics)
        self.keeper.start()
        self.logger = start_logger(self.settings)
        self.batcher = MicroBatcher(
            self._run_batch,
            max_batch_size=self.settings.max_batch_size,
            max_latency_ms=self.settings.max_latency_ms,
        )

    def __is_ready__(self) -> bool:
        return self.keeper.current is not None

    @bentoml.api(route="/predict")
    async def predict(self, records: Records, ctx: bentoml.Context) -> PredictResponse:
        """Predict for 1 to `max_records` records; each must satisfy the data contract."""
        denied = _check_token(ctx.request.headers.get("authorization"), self.settings.api_token)
        if denied is not None:
            self.metrics.rejected.labels(reason="unauthorized").inc()
            return denied  # type: ignore[return-value]
        if self.keeper.current is None:
            return JSONResponse({"error": "no model loaded yet"}, status_code=503)  # type: ignore[return-value]
        frame = pd.DataFrame([r.model_dump() for r in records])
        if self.settings.batching:
            output, model = await self.batcher.submit(frame)
        else:
            output, model = await anyio.to_thread.run_sync(self._run_batch, frame)
        request_id = uuid.uuid4().hex
        ids = frame[CONTRACT.id_column].tolist() if CONTRACT.id_column else None
        self._observe(request_id, model, frame, output)
        return PredictResponse(
            request_id=request_id,
            model_version=model.version,
            predictions=format_predictions(output, model.manifest, ids),
        )

    def _run_batch(self, frame: pd.DataFrame) -> tuple[Any, LoadedModel]:
        model = self.keeper.current
        assert model is not None
        return model.predict(frame), model

    def _observe(self, request_id: str, model: LoadedModel, frame: pd.DataFrame, output: Any) -> None:
        self.metrics.predictions.labels(version=model.version).inc(len(frame))
        for feature, count in model.count_unseen(frame).items():
            self.metrics.oov.labels(feature=feature).inc(count)
        try:
            self.logger.record(
                request_id=request_id,
                model_version=model.version,
                features=frame,
                outputs=output_frame(output, model.manifest),
            )
        except Exception:  # logging never fails a response
            self.metrics.log_failures.inc()
        self.metrics.observe_logger(self.logger.stats)

    @admin.get("/model")
    def model_info(self) -> JSONResponse:
        """Describe the model being served: version, manifest summary, device."""
        model = self.keeper.current
        if model is None:
            return JSONResponse({"error": "no model loaded yet", **self.keeper.status()}, 503)
        return JSONResponse({**model.summary(), **self.keeper.status()})

    @admin.post("/admin/reload")
    def reload_now(self, authorization: str | None = Header(None)) -> Response:
        """Check the registry now and switch to the alias's version if it changed."""
        denied = _check_token(authorization, self.settings.admin_token, required=True)
        if denied is not None:
            return denied
        result = self.keeper.reload()
        return JSONResponse(result, status_code=200 if result.get("error") is None else 409)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop watching the registry and flush the prediction log."""
        self.keeper.stop()
        self.logger.stop()


def _check_token(header: str | None, token: str | None, *, required: bool = False) -> Response | None:
    if token is None:
        if required:
            return JSONResponse(
                {"error": "admin endpoints are disabled: set MLOPS_ADMIN_TOKEN"}, status_code=403
            )
        return None
    if header != f"Bearer {token}":
        return JSONResponse(
            {"error": "missing or wrong bearer token in the Authorization header"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    return None


PredictionService.add_asgi_middleware(RejectionCounter)
bentoml.asgi_app(admin, path="/")(PredictionService)
