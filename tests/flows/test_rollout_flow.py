"""promote-model's shadow and canary strategies, and monitor-model's verdicts on them.

The prediction log is written as the service writes it (`PredictionLogger`, real versions'
outputs on simulated records); the labels are the simulator's. One version is trained on
inverted labels: a challenger that is really worse.
"""

from __future__ import annotations

import json
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from flows.monitoring import monitor_model_flow
from flows.parameters import MonitorWindow, RolloutRules
from flows.promotion import promote_model_flow
from mlops.contract.loader import load_contract
from mlops.data.simulate import (
    ID_COLUMN,
    TARGET_COLUMN,
    SimulationConfig,
    generate_day,
    labelled_rows,
)
from mlops.inference.model import load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.monitoring.prediction_store import read_prediction_log
from mlops.registry.store import Registry
from mlops.release.build import train_and_register
from mlops.release.rollout import canary_mask
from mlops.settings import DEFAULT_CONTRACT, get_settings
from mlops.training.train import TrainParams
from tasks.monitoring import record_decision
from tests.support.prefect_events import read_events

pytestmark = pytest.mark.slow
MODEL = "rollout-test"
CONFIG = SimulationConfig(days=10, rows_per_day=3000, scenario="stable", seed=11)
TRAIN_DAYS = 2  # 6,000 rows
RULES = RolloutRules(min_labelled_rows=200)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A registry with v1 and v2 (good, seeds 1 and 2) and v3 (trained on inverted labels)."""
    root = tmp_path_factory.mktemp("rollout") / "registry"
    registry, contract = Registry(str(root)), load_contract(DEFAULT_CONTRACT)
    rows = labelled_rows(CONFIG, days=TRAIN_DAYS)
    inverted = rows.assign(**{TARGET_COLUMN: 1 - rows[TARGET_COLUMN]})
    for seed, data in ((1, rows), (2, rows), (3, inverted)):
        params = TrainParams(max_epochs=2, seed=seed, accelerator="cpu")
        train_and_register(
            registry, MODEL, contract, data, params,
            actor="tests", reason="rollout fixture", data_uri="test", prefer_gpu=False,
        )  # fmt: skip
    return root


@pytest.fixture
def home(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(trained, tmp_path / "registry")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("MLOPS_REGISTRY_URL", str(tmp_path / "registry"))
    monkeypatch.setenv("MLOPS_MODEL_NAME", MODEL)
    monkeypatch.setenv("MLOPS_RELOAD_INTERVAL_S", "0.1")  # a change settles in 0.3 s
    for name in ("MLOPS_SERVING_URL", "MLOPS_ADMIN_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _settled() -> datetime:
    """Wait until the last rollout change has settled (3 polls of 0.1 s), and return now: rows
    logged at this time belong to the current step and to no later one."""
    time.sleep(0.5)
    return datetime.now(UTC)


def _registry(home: Path) -> Registry:
    return Registry(str(home / "registry"))


def _serve(
    home: Path,
    day: int,
    at: datetime,
    routes: dict[str, np.ndarray | None],
    took_ms: dict[str, float] | None = None,
) -> None:
    """Log a simulated day as serving would: each version's rows (a mask, or all), and labels.

    With `took_ms`, every row is a request of its own answered in about that many milliseconds
    by its version (log-normal spread); otherwise requests hold 500 rows and no answer time.
    """
    features, labels = generate_day(CONFIG, day)
    registry = _registry(home)
    logger = PredictionLogger(
        LogSettings(str(home / "mlops" / "profiles"), str(home / "mlops" / "predictions")),
        model_name=MODEL, clock=lambda: at,
    )  # fmt: skip
    for version, mask in routes.items():
        model = load_from_registry(registry, MODEL, version, prefer_gpu=False)
        rows = features if mask is None else features[mask]
        if took_ms is not None:
            part = rows.reset_index(drop=True)
            spread = np.random.default_rng(day).lognormal(0.0, 0.3, len(part))
            logger.record_requests(
                requests=[(f"r{day}-{version}-{i}", at, 1) for i in range(len(part))],
                model_version=version, features=part,
                outputs=output_frame(model.predict(part), model.manifest),
                served_ms=(took_ms[version] * spread).tolist(),
            )  # fmt: skip
            continue
        for start in range(0, len(rows), 500):
            part = rows.iloc[start : start + 500].reset_index(drop=True)
            logger.record(request_id=f"r{day}-{start}", model_version=version, features=part,
                          outputs=output_frame(model.predict(part), model.manifest),
                          received_at=at)  # fmt: skip
    assert logger.flush().ok
    folder = home / "labels"
    folder.mkdir(exist_ok=True)
    labels[[ID_COLUMN, TARGET_COLUMN]].to_parquet(folder / f"day-{day}.parquet")


def _monitor(home: Path, at: datetime) -> dict:
    window = MonitorWindow(start=at - timedelta(minutes=30), end=at + timedelta(minutes=30))
    return monitor_model_flow(window=window, labels_uri=str(home / "labels"), rollout=RULES,
                              emit=True)  # fmt: skip


def test_promote_model_puts_a_version_on_trial_as_shadow_without_moving_the_champion(
    prefect_server: None, home: Path
) -> None:
    registry = _registry(home)
    registry.promote(MODEL, "v1", actor="tests", reason="first")
    result = promote_model_flow(version="v2", strategy="shadow", reason="try it")
    assert result["event"] == "shadow started" and result["version"] == "v2"
    state = registry.aliases(MODEL)
    assert state.aliases == {"champion": "v1", "shadow": "v2"}
    assert state.rollout["strategy"] == "shadow" and state.rollout["champion"] == "v1"
    with pytest.raises(Exception, match="already has a shadow"):
        promote_model_flow(version="v3", strategy="canary", canary_share=0.1)


def _better_shadow_served(registry: Registry, home: Path) -> datetime:
    """The champion is the model trained on inverted labels; v1 shadows it on a served day."""
    registry.promote(MODEL, "v3", actor="tests", reason="a bad champion")
    promote_model_flow(version="v1", strategy="shadow")
    at = _settled()
    _serve(home, 7, at, {"v3": None, "v1": None})
    return at


def test_a_better_shadow_wins_and_a_worse_one_is_retired(prefect_server: None, home: Path) -> None:
    registry = _registry(home)
    at = _better_shadow_served(registry, home)
    result = _monitor(home, at)["rollout"]
    assert result["action"] == "won", result["reason"]
    assert result["event"] == "mlops.model.shadow-won" and result["changed"]
    assert result["labelled_rows"] >= 2000 and result["z"] >= 3
    assert registry.aliases(MODEL).rollout is None  # promote-model's trigger takes it from here
    assert registry.history(MODEL)[-1]["event"] == "rollout_won"
    (event,) = read_events("mlops.model.shadow-won")
    assert event.payload["version"] == "v1" and event.resource.id == f"mlops.model.{MODEL}"
    assert "explanation" in event.payload  # the promote-shadow trigger's reason

    # The other way round: v3 shadows v1 and is retired, the reason in the history.
    registry.promote(MODEL, "v1", actor="tests", reason="the good one")
    promote_model_flow(version="v3", strategy="shadow")
    later = _settled()
    _serve(home, 8, later, {"v1": None, "v3": None})
    result = _monitor(home, later)["rollout"]
    assert result["action"] == "retire" and result["event"] == "mlops.model.shadow-retired"
    last = registry.history(MODEL)[-1]
    assert last["event"] == "rollout_retired" and "cannot reach" in last["reason"]
    assert registry.aliases(MODEL).aliases["champion"] == "v1"


def test_rows_from_a_broken_feed_do_not_judge_a_shadow(prefect_server: None, home: Path) -> None:
    registry = _registry(home)
    at = _better_shadow_served(registry, home)
    # an earlier monitoring window over that traffic failed its data checks
    incident = {"reason": "data-quality", "window_start": at - timedelta(minutes=1),
                "window_end": at + timedelta(minutes=1), "failed_checks": ["amount scale"],
                "champion": "v3", "drift_share": 0.0}  # fmt: skip
    record_decision.fn(get_settings(), MODEL, incident)
    result = _monitor(home, at)["rollout"]
    assert result["action"] == "wait" and result["labelled_rows"] == 0, result["reason"]
    assert registry.aliases(MODEL).aliases["shadow"] == "v1"


def _canary_day(home: Path, day: int, at: datetime, champion: str, canary: str, share: float):
    ids = generate_day(CONFIG, day)[0][ID_COLUMN].astype(str)
    mine = canary_mask(ids, share)
    _serve(home, day, at, {champion: ~mine, canary: mine})


def test_a_worse_canary_is_rolled_back(prefect_server: None, home: Path) -> None:
    registry = _registry(home)
    registry.promote(MODEL, "v1", actor="tests", reason="first")
    promote_model_flow(version="v3", strategy="canary", canary_share=0.25)
    at = _settled()
    _canary_day(home, 7, at, "v1", "v3", 0.25)
    result = _monitor(home, at)["rollout"]
    assert result["action"] == "rollback", result["reason"]
    assert result["event"] == "mlops.model.canary-rolled-back"
    assert "worse by" in result["reason"] and result["fallback_rows"] == 0
    state = registry.aliases(MODEL)
    assert state.rollout is None and state.aliases["champion"] == "v1"
    assert registry.history(MODEL)[-1]["event"] == "rollout_rolled_back"


def test_a_slow_canary_is_rolled_back_on_its_answer_times(prefect_server: None, home: Path) -> None:
    registry = _registry(home)
    registry.promote(MODEL, "v1", actor="tests", reason="first")
    promote_model_flow(version="v2", strategy="canary", canary_share=0.25)
    at = _settled()
    ids = generate_day(CONFIG, 7)[0][ID_COLUMN].astype(str)
    mine = canary_mask(ids, 0.25)
    _serve(home, 7, at, {"v1": ~mine, "v2": mine}, took_ms={"v1": 3.0, "v2": 40.0})
    result = _monitor(home, at)["rollout"]
    assert result["action"] == "rollback", result["reason"]
    assert "95th percentile answer time" in result["reason"] and result["fallback_rows"] == 0
    assert result["latency_p95_ms"] > 10 * result["champion_latency_p95_ms"]
    assert registry.aliases(MODEL).rollout is None


def test_a_canary_that_fails_is_rolled_back_on_its_errors(prefect_server: None, home: Path) -> None:
    registry = _registry(home)
    registry.promote(MODEL, "v1", actor="tests", reason="first")
    promote_model_flow(version="v2", strategy="canary", canary_share=0.25)
    at = _settled()
    # Serving answered every record with v1: the canary raised on all it was given
    _serve(home, 7, at, {"v1": None})
    result = _monitor(home, at)["rollout"]
    assert result["action"] == "rollback" and result["fallback_rows"] == result["routed_rows"] > 0
    assert "failed" in result["reason"]


def test_a_healthy_canary_widens_step_by_step_then_is_promoted(
    prefect_server: None, home: Path
) -> None:
    registry = _registry(home)
    registry.promote(MODEL, "v1", actor="tests", reason="first")
    promote_model_flow(version="v2", strategy="canary", canary_share=0.25)
    actions, reasons = [], []
    for day in (7, 8):
        at = _settled()  # served after the last change settled
        share = registry.aliases(MODEL).rollout["share"]
        _canary_day(home, day, at, "v1", "v2", share)
        result = _monitor(home, at)["rollout"]
        actions.append((share, result["action"]))
        reasons.append(result["reason"])
    assert actions == [(0.25, "widen"), (0.5, "promote")], reasons
    state = registry.aliases(MODEL)
    assert state.aliases["champion"] == "v2" and state.aliases["previous"] == "v1"
    assert state.rollout is None
    events = [e["event"] for e in registry.history(MODEL)[-3:]]
    assert events == ["rollout_started", "rollout_widened", "promoted"]


def test_the_cli_starts_a_canary_and_status_shows_it(prefect_server: None, home: Path) -> None:
    from prefect.logging.configuration import ensure_logging_setup
    from typer.testing import CliRunner

    from stack.cli import app

    ensure_logging_setup()  # before CliRunner swaps stderr (see tests/flows/test_cli_flows.py)
    _registry(home).promote(MODEL, "v1", actor="tests", reason="first")
    runner = CliRunner()
    started = runner.invoke(app, ["promote", "v2", "--strategy", "canary", "--canary-share", "0.1"])
    assert started.exit_code == 0, started.output
    assert "v2 on trial as a canary beside v1, 10% of the records" in " ".join(
        started.stdout.split()
    )
    shown = runner.invoke(app, ["status"])
    assert "On trial: v2 as a canary, 10% of the records" in " ".join(shown.stdout.split())
    assert _registry(home).history(MODEL)[-1]["actor"] == "mlops-cli"


def test_a_worse_canary_on_a_real_service_is_rolled_back_with_no_failed_request(
    prefect_server: None, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """promote-model starts the canary, a real `bentoml serve` answers with it, monitor-model
    finds it worse on the labels that arrived, rolls it back and tells serving to reload."""
    import httpx

    from tests.support.service import bentoml_server, server_env, simulated_rows

    registry = _registry(home)
    registry.promote(MODEL, "v1", actor="tests", reason="first")
    pool = simulated_rows(days=1, rows_per_day=2000, seed=23)
    records = json.loads(pool.drop(columns=[TARGET_COLUMN]).to_json(orient="records",
                                                                    date_format="iso"))  # fmt: skip
    env = server_env(home / "mlops", home / "registry", MLOPS_MODEL_NAME=MODEL,
                     MLOPS_RELOAD_INTERVAL_S="0.2", MLOPS_ADMIN_TOKEN="admin-secret")  # fmt: skip
    statuses: list[int] = []

    def post(batch: list[dict]) -> list[str]:
        answer = httpx.post(f"{url}/predict", json={"records": batch}, timeout=30)
        statuses.append(answer.status_code)
        if answer.status_code != 200:
            return []
        return [p.get("model_version") or answer.json()["model_version"]
                for p in answer.json()["predictions"]]  # fmt: skip

    def rollout() -> Any:
        return httpx.get(f"{url}/model", timeout=10).json().get("rollout")

    with bentoml_server(env, home / "server.log") as server:
        url = server.url
        monkeypatch.setenv("MLOPS_SERVING_URL", url)
        monkeypatch.setenv("MLOPS_ADMIN_TOKEN", "admin-secret")
        promote_model_flow(version="v3", strategy="canary", canary_share=0.25)
        _wait(lambda: (rollout() or {}).get("loaded") is True, "the canary to load")
        time.sleep(1.0)  # past the monitor's settling time (3 polls of 0.1 s here)
        batches = [records[i : i + 10] for i in range(0, 2000, 10)]
        with ThreadPoolExecutor(8) as threads:
            answered = [v for versions in threads.map(post, batches) for v in versions]
        assert 0.2 < answered.count("v3") / len(answered) < 0.3, answered.count("v3")
        _wait(lambda: len(read_prediction_log(str(home / "mlops" / "predictions"), MODEL)) >= 2000,
              "the prediction log")  # fmt: skip
        folder = home / "labels"
        folder.mkdir()
        pool[[ID_COLUMN, TARGET_COLUMN]].to_parquet(folder / "labels.parquet")

        verdict = _monitor(home, datetime.now(UTC))["rollout"]

        assert verdict["action"] == "rollback" and "worse by" in verdict["reason"], verdict
        assert verdict["labelled_rows"] == answered.count("v3")
        assert "answered 200" in verdict["reload"]
        _wait(lambda: rollout() is None, "serving to drop the canary")
        after = [v for batch in range(0, 200, 10) for v in post(records[batch : batch + 10])]
        assert set(after) == {"v1"} and len(after) == 200
        assert server.stop() == 0, server.log_tail(3000)
    assert set(statuses) == {200} and len(statuses) == 220  # no client saw a failure
    assert registry.aliases(MODEL).aliases == {"champion": "v1"}
    assert registry.history(MODEL)[-1]["event"] == "rollout_rolled_back"


def _wait(check: Any, what: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
