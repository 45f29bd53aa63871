"""The version on trial, without a server: the keeper loads and drops it, a canary that raises
is answered for by the champion, and the shadow's scorer logs off the response path."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from mlops.contract.api_model import (
    AnsweredPart,
    RecordColumns,
    build_record_model,
    render_routed_response,
)
from mlops.contract.loader import load_contract
from mlops.inference.model import LoadedModel, load_from_registry
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_prediction_log
from mlops.registry.rollouts import Rollout, canary_mask
from mlops.registry.store import Registry
from mlops.settings import DEFAULT_CONTRACT, get_settings
from serving.observability import service_metrics
from serving.runtime import ModelKeeper
from serving.served_log import Served
from serving.trial import ShadowScorer, answer_with_canary, routing_keys
from tests.support.service import MODEL, counter_value, served_records

CONTRACT = load_contract(DEFAULT_CONTRACT)
RECORD = build_record_model(CONTRACT)


def _rows(count: int, start: int = 0) -> RecordColumns:
    records = [RECORD.model_validate(r) for r in served_records(count, start)]
    return RecordColumns.from_records(records, tuple(RECORD.model_fields))


def _keeper(registry: Registry, **overrides: Any) -> ModelKeeper:
    settings = get_settings(registry_url=registry.root, prefer_gpu=False, **overrides)
    keeper = ModelKeeper(settings, service_metrics(), CONTRACT.fingerprint)
    keeper.reload(force=True)
    return keeper


def _start(registry: Registry, strategy: str, share: float = 0.0) -> None:
    registry.start_rollout(MODEL, "v2", strategy, share=share, actor="test", reason="trial")


class RaisingModel(LoadedModel):
    """A loaded version whose predictions fail (a canary broken at run time)."""

    def predict_values(self, columns: Any) -> tuple[np.ndarray, dict[str, int]]:
        raise RuntimeError("the canary's graph failed")


def _loaded(registry: Registry, version: str) -> LoadedModel:
    return load_from_registry(registry, MODEL, version, prefer_gpu=False)


def test_the_keeper_loads_the_rollouts_version_and_drops_it_when_the_rollout_ends(
    registry_copy: Registry,
) -> None:
    keeper = _keeper(registry_copy)
    assert keeper.trial is None and keeper.status()["rollout"] is None

    _start(registry_copy, "canary", 0.2)
    keeper.reload()
    assert keeper.trial is not None and keeper.trial.version == "v2"
    assert keeper.current is not None and keeper.current.version == "v1"
    assert keeper.status()["rollout"] == {
        "strategy": "canary", "version": "v2", "share": 0.2, "loaded": True, "error": None
    }  # fmt: skip

    loaded = keeper.trial
    registry_copy.widen_rollout(MODEL, 0.5, actor="test", reason="widen")
    keeper.reload()
    assert keeper.trial is loaded and keeper.rollout is not None and keeper.rollout.share == 0.5

    registry_copy.end_rollout(MODEL, "cancelled", actor="test", reason="done")
    keeper.reload()
    assert keeper.trial is None and keeper.rollout is None and keeper.status()["rollout"] is None


def test_a_trial_that_cannot_load_is_refused_and_the_champion_serves_alone(
    registry_copy: Registry,
) -> None:
    (Path(registry_copy.get(MODEL, "v2").uri) / "model.onnx").write_bytes(b"garbage " * 64)
    keeper = _keeper(registry_copy)
    _start(registry_copy, "shadow")

    status = keeper.reload()

    assert keeper.trial is None and keeper.active_trial() is None
    assert status["served_version"] == "v1" and status["error"] is None
    assert status["rollout"]["version"] == "v2" and status["rollout"]["loaded"] is False
    assert "v2" in status["rollout"]["error"]


def test_a_service_pinned_to_a_version_has_no_trial(registry_copy: Registry) -> None:
    _start(registry_copy, "canary", 0.2)
    keeper = _keeper(registry_copy, serve_ref="v1")
    assert keeper.current is not None and keeper.current.version == "v1"
    assert keeper.trial is None and keeper.status()["rollout"] is None


def test_records_routed_to_a_raising_canary_are_answered_by_the_champion(
    serving_home: Path,
) -> None:
    registry = Registry(str(serving_home / "registry"))
    champion, v2 = _loaded(registry, "v1"), _loaded(registry, "v2")
    canary = RaisingModel(**{f.name: getattr(v2, f.name) for f in fields(v2)})
    rows = _rows(200)
    ids = rows.values[CONTRACT.id_column]
    metrics = service_metrics()
    before = counter_value(metrics.canary_fallbacks)

    async def answer(part: RecordColumns) -> tuple[Any, LoadedModel]:
        return champion.predict_values(part.values)[0], champion

    rollout = Rollout("canary", "v2", 0.2)
    parts = asyncio.run(answer_with_canary(rows, ids, rollout, canary, answer, metrics))

    to_canary = int(canary_mask(ids, 0.2).sum())
    assert 10 < to_canary < 80
    assert [p.model.version for p in parts] == ["v1"]
    assert parts[0].positions == list(range(200))
    np.testing.assert_allclose(parts[0].output, champion.predict_values(rows.values)[0])
    assert counter_value(metrics.canary_fallbacks) - before == to_canary


def test_a_working_canary_answers_its_share_and_the_response_keeps_record_order(
    serving_home: Path,
) -> None:
    registry = Registry(str(serving_home / "registry"))
    champion, canary = _loaded(registry, "v1"), _loaded(registry, "v2")
    rows = _rows(300)
    ids = rows.values[CONTRACT.id_column]

    async def answer(part: RecordColumns) -> tuple[Any, LoadedModel]:
        return champion.predict_values(part.values)[0], champion

    rollout = Rollout("canary", "v2", 0.2)
    parts = asyncio.run(answer_with_canary(rows, ids, rollout, canary, answer, service_metrics()))
    body = json.loads(
        render_routed_response(
            "r1", "v1",
            [AnsweredPart(p.positions, p.output, p.model.manifest, p.model.version,
                          [ids[i] for i in p.positions]) for p in parts],
            len(rows),
        )
    )  # fmt: skip

    expected = ["v2" if m else "v1" for m in canary_mask(ids, 0.2)]
    assert body["model_version"] == "v1"
    assert [p["id"] for p in body["predictions"]] == ids
    assert [p["model_version"] for p in body["predictions"]] == expected
    assert 0 < expected.count("v2") < 300


class SlowModel(LoadedModel):
    """A loaded version that takes 200 ms per call (a canary much costlier than the champion)."""

    def predict_values(self, columns: Any) -> tuple[np.ndarray, dict[str, int]]:
        time.sleep(0.2)
        return super().predict_values(columns)


def test_each_part_carries_how_long_its_model_took(serving_home: Path) -> None:
    registry = Registry(str(serving_home / "registry"))
    champion, v2 = _loaded(registry, "v1"), _loaded(registry, "v2")
    canary = SlowModel(**{f.name: getattr(v2, f.name) for f in fields(v2)})
    rows = _rows(300)

    async def answer(part: RecordColumns) -> tuple[Any, LoadedModel]:
        await asyncio.sleep(0.01)  # the champion's wait in the micro-batcher
        return champion.predict_values(part.values)[0], champion

    parts = asyncio.run(answer_with_canary(rows, rows.values[CONTRACT.id_column],
                                           Rollout("canary", "v2", 0.2), canary, answer,
                                           service_metrics()))  # fmt: skip
    took = {p.model.version: p.served_ms for p in parts}
    assert took["v2"] >= 200 and took["v1"] >= 10
    assert took["v1"] < 200  # the champion is not charged for the canary's call before it


def test_records_without_ids_follow_their_request_id() -> None:
    assert routing_keys(None, "req", 3) == ["req", "req", "req"]
    assert routing_keys(["a", None], "req", 2) == ["a", "req"]


def _served(
    model: LoadedModel, request_id: str, rows: RecordColumns, shadow: LoadedModel | None = None
) -> Served:
    output = model.predict_values(rows.values)[0]
    return Served(request_id, model, datetime.now(UTC), rows, output, shadow)


def test_the_shadow_logs_the_same_requests_under_its_version(
    serving_home: Path, tmp_path: Path
) -> None:
    registry = Registry(str(serving_home / "registry"))
    champion, shadow = _loaded(registry, "v1"), _loaded(registry, "v2")
    logger = PredictionLogger(
        LogSettings(str(tmp_path / "profiles"), str(tmp_path / "predictions")), model_name=MODEL
    )
    logger.start()
    scorer = ShadowScorer(logger, service_metrics())
    scorer.start()
    served = [
        _served(champion, "a", _rows(3), shadow),
        _served(champion, "b", _rows(2, start=3), shadow),
    ]

    scorer.offer(served)
    scorer.stop()
    logger.stop()

    log = read_prediction_log(str(tmp_path / "predictions"), MODEL)
    assert set(log["model_version"]) == {"v2"}
    assert sorted(log["request_id"]) == ["a", "a", "a", "b", "b"]
    first = log[log["request_id"] == "a"]["received_at"].iloc[0]
    assert first == served[0].received_at


def test_a_full_shadow_queue_drops_rows_and_counts_them(serving_home: Path) -> None:
    registry = Registry(str(serving_home / "registry"))
    champion, shadow = _loaded(registry, "v1"), _loaded(registry, "v2")
    metrics = service_metrics()
    before = counter_value(metrics.shadow_dropped)
    scorer = ShadowScorer(None, metrics, max_groups=1)  # type: ignore[arg-type]
    group = [_served(champion, "a", _rows(4), shadow)]

    scorer.offer(group)  # not started: the first group fills the queue
    scorer.offer(group)
    scorer.offer([_served(champion, "b", _rows(3))])  # answered with no shadow: not offered

    assert counter_value(metrics.shadow_dropped) - before == 4


def test_a_raising_shadow_is_counted(serving_home: Path) -> None:
    registry = Registry(str(serving_home / "registry"))
    champion, v2 = _loaded(registry, "v1"), _loaded(registry, "v2")
    shadow = RaisingModel(**{f.name: getattr(v2, f.name) for f in fields(v2)})
    metrics = service_metrics()
    before = counter_value(metrics.shadow_failures)
    scorer = ShadowScorer(None, metrics)  # type: ignore[arg-type]

    scorer.score(shadow, [_served(champion, "a", _rows(5))])

    assert counter_value(metrics.shadow_failures) - before == 5


def test_the_service_does_not_import_the_training_stack() -> None:
    code = "import sys, serving.trial; print(sorted({'torch', 'sklearn'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
