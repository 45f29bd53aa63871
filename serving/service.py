"""The prediction service: the champion's ONNX model behind a contract-typed HTTP API.

The request model is generated from the data contract when this module is imported (BentoML needs
the types at class definition); everything else (registry, model, logging) starts in `__init__`.
While the registry records a rollout, the version on trial serves beside the champion: a shadow
scores the served records off the response path, a canary answers its share (`serving.trial`).
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import anyio.to_thread
import bentoml
from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from mlops.contract.api_model import (
    AnsweredPart,
    PredictResponse,
    RecordColumns,
    build_record_model,
    render_response,
    render_routed_response,
)
from mlops.contract.loader import load_contract
from mlops.inference.model import LoadedModel
from mlops.registry.rollouts import Rollout
from mlops.settings import get_settings, quiet_telemetry
from serving.answers import MODEL_ANSWERS, RELOAD_ANSWERS
from serving.batching import MicroBatcher
from serving.errors import document_errors
from serving.guard import RequestGuard, check_token
from serving.observability import (
    BoundedPathLabels,
    RejectionCounter,
    quiet_client_errors,
    service_metrics,
)
from serving.runtime import ModelKeeper, start_logger, tune_gc
from serving.served_log import ServedLog
from serving.trial import ShadowScorer, answer_with_canary, routing_keys

quiet_telemetry()


class ServiceArgs(BaseModel):
    """Bento arguments: `mlops build-bento` pins one model version into the Bento."""

    model_tag: str | None = None
    contract: str | None = None  # relative to the Bento's source folder


ARGS = bentoml.use_arguments(ServiceArgs)
SETTINGS = get_settings()
CONTRACT = load_contract(ARGS.contract or SETTINGS.contract)
Record = build_record_model(CONTRACT)
Records = Annotated[list[Record], Field(min_length=1, max_length=SETTINGS.max_records)]  # type: ignore[valid-type]
FIELDS = tuple(Record.model_fields)
INLINE_ROWS = 512  # feeds + onnxruntime for this many records take < 1 ms: less than a thread hop
admin = FastAPI(title="mlops admin")


class GuardedService(bentoml.Service[Any]):
    """A BentoML service whose metrics keep to its routes and whose API declares its errors."""

    def to_asgi(self, is_main: bool = True) -> Any:
        # Outside BentoML's own middlewares, which label request metrics with the path.
        return BoundedPathLabels(super().to_asgi(is_main))

    @property
    def openapi_spec(self) -> Any:
        return document_errors(super().openapi_spec, "/predict")


@bentoml.service(
    name="mlops_prediction",
    traffic={"timeout": 30},
    workers=SETTINGS.workers,
    service_class=GuardedService,
)
class PredictionService:
    """Serve the registry's champion (or a pinned version) with logging and hot reload."""

    # A class attribute, so that `bentoml build` packages the pinned model into the Bento.
    pinned = bentoml.models.BentoModel(ARGS.model_tag) if ARGS.model_tag else None

    def __init__(self) -> None:
        self.settings = get_settings()
        if self.pinned is not None:
            pinned_dir = str(self.pinned.path)  # the descriptor resolves to the stored model
            self.settings = self.settings.model_copy(update={"serve_model_dir": pinned_dir})
        self.metrics = service_metrics()
        self.keeper = ModelKeeper(self.settings, self.metrics, CONTRACT.fingerprint)
        self.keeper.start()
        self.logger = start_logger(self.settings)
        self.shadow = ShadowScorer(self.logger, self.metrics)
        self.shadow.start()
        self.served_log = ServedLog(self.logger, self.metrics, on_drained=self.shadow.offer)
        self.batcher = MicroBatcher(
            self._run_batch,
            max_batch_size=self.settings.max_batch_size,
            max_latency_ms=self.settings.max_latency_ms,
            combine=RecordColumns.concat,
            inline_rows=INLINE_ROWS,
        )
        quiet_client_errors()
        tune_gc()

    def __is_ready__(self) -> bool:
        return self.keeper.current is not None

    @bentoml.api(route="/predict")
    async def predict(self, records: Records, ctx: bentoml.Context) -> PredictResponse:
        """Predict for 1 to `max_records` records; each must satisfy the data contract.

        RequestGuard has checked the token, media type and size before BentoML read the body.
        """
        if self.keeper.current is None:
            ctx.response.status_code = 503
            return JSONResponse({"error": "no model loaded yet"}, status_code=503)  # type: ignore[return-value]
        rows = RecordColumns.from_records(records, FIELDS)
        ids = rows.values[CONTRACT.id_column] if CONTRACT.id_column else None
        trial = self.keeper.active_trial()
        if trial is not None and trial[0].strategy == "canary":
            return await self._predict_with_canary(rows, ids, *trial)  # type: ignore[return-value]
        began = time.perf_counter()
        output, model = await self._answer(rows)
        took = (time.perf_counter() - began) * 1000
        request_id = uuid.uuid4().hex
        shadow = trial[1] if trial is not None else None  # scored off the response path
        self.served_log.add(request_id, model, rows, output, shadow, served_ms=took)
        body = render_response(request_id, model.version, output, model.manifest, ids)
        return Response(body, media_type="application/json")  # type: ignore[return-value]

    async def _answer(self, rows: RecordColumns) -> tuple[Any, LoadedModel]:
        """Predict with the champion: micro-batched, inline, or in a thread for large requests."""
        if self.settings.batching:
            return await self.batcher.submit(rows)
        if len(rows) <= INLINE_ROWS:
            return self._run_batch(rows)
        return await anyio.to_thread.run_sync(self._run_batch, rows)

    async def _predict_with_canary(
        self, rows: RecordColumns, ids: list[Any] | None, rollout: Rollout, canary: LoadedModel
    ) -> Response:
        """Answer the canary's share of the records with it, the rest with the champion."""
        request_id = uuid.uuid4().hex
        keys = routing_keys(ids, request_id, len(rows))
        parts = await answer_with_canary(rows, keys, rollout, canary, self._answer, self.metrics)
        for part in parts:
            self.served_log.add(request_id, part.model, part.rows, part.output,
                                served_ms=part.served_ms)  # fmt: skip
        champion = parts[0].model if parts[0].model is not canary else self.keeper.current
        answered = [
            AnsweredPart(p.positions, p.output, p.model.manifest, p.model.version,
                         None if ids is None else [ids[i] for i in p.positions])
            for p in parts
        ]  # fmt: skip
        version = champion.version if champion is not None else canary.version
        body = render_routed_response(request_id, version, answered, len(rows))
        return Response(body, media_type="application/json")

    def _run_batch(self, rows: RecordColumns) -> tuple[Any, LoadedModel]:
        """Predict one batch with the model served now; count its records and unseen values."""
        model = self.keeper.current
        assert model is not None
        output, unseen = model.predict_values(rows.values)
        self.metrics.predictions.labels(version=model.version).inc(len(rows))
        for feature, count in unseen.items():
            self.metrics.oov.labels(feature=feature).inc(count)
        return output, model

    @admin.get("/model", responses=MODEL_ANSWERS)
    def model_info(self) -> JSONResponse:
        """Describe the model being served (version, manifest summary, device) and any rollout."""
        model = self.keeper.current
        if model is None:
            status = self.keeper.status()
            error = status["error"] or "no model loaded yet"
            return JSONResponse({**status, "error": error}, 503)
        return JSONResponse({**model.summary(), **self.keeper.status()})

    @admin.post("/admin/reload", responses=RELOAD_ANSWERS)
    def reload_now(self, authorization: str | None = Header(None)) -> Response:
        """Check the registry now and switch to the alias's version if it changed."""
        denied = check_token(authorization, self.settings.admin_token, required=True)
        if denied is not None:
            return denied
        result = self.keeper.reload(force=True)
        return JSONResponse(result, status_code=200 if result.get("error") is None else 409)

    @bentoml.on_shutdown
    def shutdown(self) -> None:
        """Stop watching the registry and flush the prediction log."""
        self.keeper.stop()
        self.served_log.drain()
        self.shadow.stop()
        self.logger.stop()


PredictionService.add_asgi_middleware(RejectionCounter)  # outside the guard: counts its 4xx
PredictionService.add_asgi_middleware(RequestGuard, paths=("/predict",))
bentoml.asgi_app(admin, path="/")(PredictionService)
