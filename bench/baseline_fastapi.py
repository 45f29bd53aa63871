"""The baseline a user would hand-write: FastAPI + uvicorn serving the PyTorch pipeline eagerly.

Same request and response JSON as the service, same contract-typed validation, the same trained
model (the PyTorch weights whose ONNX export the registry serves), but no ONNX, no batching, no
prediction log and no metrics. Run by bench/serving.py as
`uvicorn bench.baseline_fastapi:app` with BENCH_TORCH_MODEL (a torch.save'd TrainedModel) and
BENCH_MODEL_VERSION set; PyTorch keeps its default threads unless BENCH_TORCH_THREADS is set. The
endpoint is a plain `def`, so FastAPI runs it in its thread pool, as most hand-written apps do.
"""

from __future__ import annotations

import os
import uuid
from typing import Annotated, Any

import pandas as pd
import torch
from fastapi import FastAPI
from pydantic import BaseModel, Field

from mlops.contract.api_model import build_record_model
from mlops.contract.loader import load_contract
from mlops.settings import get_settings
from mlops.training.train import TrainedModel, predict_torch

SETTINGS = get_settings()
CONTRACT = load_contract(SETTINGS.contract)
Record = build_record_model(CONTRACT)


class PredictRequest(BaseModel):
    """Records to predict, each checked against the contract."""

    records: Annotated[list[Record], Field(min_length=1, max_length=SETTINGS.max_records)]  # type: ignore[valid-type]


def _load_model() -> TrainedModel:
    return torch.load(os.environ["BENCH_TORCH_MODEL"], weights_only=False)


if os.environ.get("BENCH_TORCH_THREADS"):  # PyTorch's default: one thread per core
    torch.set_num_threads(int(os.environ["BENCH_TORCH_THREADS"]))
MODEL = _load_model()
VERSION = os.environ.get("BENCH_MODEL_VERSION", "v1")
THRESHOLD = MODEL.decision_threshold
app = FastAPI(title="baseline: FastAPI + PyTorch eager")


@app.get("/readyz")
def ready() -> dict[str, str]:
    """Answer once the model is loaded (it is, at import)."""
    return {"status": "ready"}


@app.post("/predict")
def predict(request: PredictRequest) -> dict[str, Any]:
    """Predict with the PyTorch pipeline on a DataFrame of the records."""
    frame = pd.DataFrame([r.model_dump() for r in request.records])
    probabilities = predict_torch(MODEL, frame)
    ids = frame[CONTRACT.id_column].tolist() if CONTRACT.id_column else [None] * len(frame)
    predictions = [
        {
            "prediction": int(p[1] >= THRESHOLD),
            "probabilities": {"0": float(p[0]), "1": float(p[1])},
            "id": None if i is None else str(i),
        }
        for p, i in zip(probabilities.tolist(), ids, strict=True)
    ]
    return {"request_id": uuid.uuid4().hex, "model_version": VERSION, "predictions": predictions}
