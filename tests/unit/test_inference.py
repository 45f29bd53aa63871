"""The serving hot path without pandas gives what the frame path gives: feeds, outputs, JSON."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.contract.api_model import (
    PredictResponse,
    RecordColumns,
    build_record_model,
    format_predictions,
    render_response,
)
from mlops.inference.model import load_model_bytes
from serving.batching import MicroBatcher
from tests.support.synthetic import TASKS, exported, make_frame, unseen_rows


@pytest.fixture(scope="module", params=TASKS)
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A loaded model of each task, with its record model and a few API records."""
    contract, onnx, manifest = exported(request.param, tmp_path_factory.mktemp(request.param))
    loaded = load_model_bytes(onnx, manifest, "m", prefer_gpu=False, intra_op_threads=1)
    record_model = build_record_model(contract)
    frame = make_frame(request.param, 40, seed=5).drop(columns=["label"])
    frame = pd.concat([frame, unseen_rows(frame.head(5))], ignore_index=True)
    rows = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    return loaded, record_model, [record_model.model_validate(r) for r in rows]


def _columns(record_model: Any, records: list[Any]) -> RecordColumns:
    return RecordColumns.from_records(records, tuple(record_model.model_fields))


def test_feed_values_and_predict_values_match_the_frame_path(served: Any) -> None:
    model, record_model, records = served
    frame = pd.DataFrame([r.model_dump() for r in records])
    columns = _columns(record_model, records).values

    feed, unseen = model.feed_values(columns)
    output, counted = model.predict_values(columns)

    expected = model.feed(frame)
    assert list(feed) == list(expected)
    for name, values in expected.items():
        assert feed[name].dtype == values.dtype, name
        np.testing.assert_array_equal(feed[name], values)
    assert unseen == counted == model.count_unseen(frame) and unseen
    np.testing.assert_array_equal(output, model.predict(frame))


def test_render_response_is_the_json_of_predict_response_byte_for_byte(served: Any) -> None:
    model, record_model, records = served
    columns = _columns(record_model, records)
    output, _ = model.predict_values(columns.values)
    ids = columns.values["txn_id"]

    body = render_response("abc", "v1", output, model.manifest, ids)

    predictions = format_predictions(output, model.manifest, ids)
    expected = PredictResponse(request_id="abc", model_version="v1", predictions=predictions)
    assert body == expected.model_dump_json().encode()


def test_record_columns_concat_keeps_request_order(served: Any) -> None:
    _, record_model, records = served
    parts = [_columns(record_model, records[i : i + 7]) for i in range(0, len(records), 7)]

    joined = RecordColumns.concat(parts)

    assert len(joined) == len(records)
    assert joined.values == _columns(record_model, records).values


@pytest.mark.parametrize("inline_rows", [0, 1000], ids=["worker thread", "on the loop"])
def test_micro_batcher_gives_each_request_its_rows_of_one_batch(inline_rows: int) -> None:
    calls: list[int] = []

    def run_batch(rows: RecordColumns) -> tuple[np.ndarray, str]:
        calls.append(len(rows))
        return np.asarray(rows.values["x"]) * 10, f"batch {len(calls)}"

    async def serve() -> list[tuple[Any, Any]]:
        batcher = MicroBatcher(
            run_batch, max_batch_size=8, max_latency_ms=50, combine=RecordColumns.concat,
            inline_rows=inline_rows,
        )  # fmt: skip
        requests = [
            RecordColumns({"x": list(range(i, i + n))}, n) for i, n in ((0, 1), (1, 3), (4, 2))
        ]
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
        await batcher.close()
        return answers

    answers = asyncio.run(serve())

    assert [a[0].tolist() for a in answers] == [[0], [10, 20, 30], [40, 50]]
    assert calls == [6]  # requests queued together make one model call
    assert {a[1] for a in answers} == {"batch 1"}
