"""The closed loop on the simulator, every part real except the clock of the data.

train v1 -> serve -> drifted traffic -> monitor -> event -> triggered train-model -> gate ->
v2 promoted -> serving reloads v2.
"""

from __future__ import annotations

import dataclasses
import os
from contextlib import ExitStack
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fsspec.core import url_to_fs
from prefect.settings import PREFECT_API_URL

from flows.monitoring import monitor_model_flow
from flows.parameters import DataSpec, MonitorThresholds, MonitorWindow
from flows.training import train_model_flow
from flows.triggers import retrain_trigger
from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, simulate
from mlops.data.sources import Window, load_dataset
from mlops.data.validate import validate_frame
from mlops.inference.scoring import score_onnx
from mlops.monitoring.policy import EVENTS
from mlops.monitoring.prediction_store import read_prediction_log
from mlops.registry.store import Registry
from mlops.settings import DEFAULT_CONTRACT, get_settings
from mlops.training.train import TrainParams, params_dict
from stack.replay import profiled_rows
from tests.support import service
from tests.support.loop import (
    Loop,
    artifact_keys,
    day_records,
    delete_automations,
    post_records,
    train_model_runner,
)

pytestmark = pytest.mark.slow
MODEL = "fraud-loop"  # not the default name: other tests' events must not fire this trigger
DEPLOYMENT = "retrain-on-events"
CONFIG = SimulationConfig(days=30, rows_per_day=2500, seed=3)  # concept drift from day 20
FAST = TrainParams(max_epochs=4, patience=2, seed=1, accelerator="cpu")
SERVED_DAYS = (20, 21, 22, 23)  # concept drift, before the data-quality incident of days 24-25
RELAXED = MonitorThresholds(
    cooldown_hours=0, min_new_rows=100, min_labelled_rows=300, consecutive_windows=1
)
TRAIN_ARTIFACTS = {"data-validation", "holdout-metrics", "model-card", "gate-decision"}
MONITOR_ARTIFACTS = {
    "drift", "constraints", "performance", "monitoring-summary", "drift-report", "loop-chart"
}  # fmt: skip
TRIGGER = retrain_trigger(MODEL)


def day(index: int) -> datetime:
    """Return midnight of a simulated day (timestamps are naive UTC)."""
    return datetime.combine(CONFIG.date_of(index), time())


def retrain_parameters() -> dict[str, Any]:
    """The deployment's defaults: the newest labelled days, since the covariate shift settled."""
    training = dataclasses.replace(FAST, val_fraction=0.1, holdout_fraction=0.1)
    return {
        "model_name": MODEL,
        "data": DataSpec(start=day(18), end=day(24)).model_dump(mode="json", exclude_none=True),
        "training": params_dict(training),
        "reason": "manual run",
    }


def spec(deployment: str) -> dict[str, Any]:
    """The runner's deployment of train-model, named `deployment`, with its defaults."""
    return {"deployment": deployment, "model_name": MODEL, "parameters": retrain_parameters()}


def runner_env(home: str, tmp_path: Path) -> dict[str, str]:
    """The runner's environment: the test API, this test's MLOPS_HOME (AWS_* kept), polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLOPS_")}
    return env | {
        "MLOPS_HOME": home,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PYTHONUNBUFFERED": "1",
    }


def logged_rows(home: str) -> int:
    """Return how many served rows the prediction log holds."""
    return len(read_prediction_log(f"{home}/predictions", MODEL))


def served_version(url: str) -> str | None:
    """Return the version the prediction server says it serves."""
    return httpx.get(f"{url}/model", timeout=10).json().get("version")


def labelled_rows(simulated: str, first: int, end: int) -> Any:
    """Return the valid labelled rows of days [first, end)."""
    contract = load_contract(DEFAULT_CONTRACT)
    loaded = load_dataset(
        f"{simulated}/raw",
        contract,
        labels_uri=f"{simulated}/labels",
        window=Window(start=day(first), end=day(end)),
    )
    return validate_frame(loaded.labeled_frame(), contract).valid


def roc_auc(registry: Registry, version: str, rows: Any) -> float:
    """Score a registered version's ONNX model on labelled rows."""
    manifest = registry.get(MODEL, version).manifest
    contract = load_contract(DEFAULT_CONTRACT)
    return score_onnx(registry.read_onnx(MODEL, version), manifest, rows, contract)["roc_auc"]


@pytest.fixture(params=["local", "s3"])
def loop_home(request: pytest.FixtureRequest) -> str:
    """MLOPS_HOME of the loop: a local folder, or a prefix of a bucket on a real S3 API server."""
    return str(request.getfixturevalue("mlops_home" if request.param == "local" else "s3_home"))


def test_served_concept_drift_triggers_a_retrain_whose_better_model_serving_reloads(
    prefect_server: None, loop_home: str, tmp_path: Path
) -> None:
    home, started = loop_home, datetime.now(UTC)
    # One deployment per case: the session's Prefect API keeps the other case's runs.
    deployment = DEPLOYMENT if "://" not in home else f"{DEPLOYMENT}-s3"
    simulated = f"{home}/data/simulated"
    simulate(simulated, CONFIG)
    with ExitStack() as stack:
        # 1. The runner starts (it registers train-model and its trigger) while v1 trains
        runner = stack.enter_context(
            train_model_runner(
                spec(deployment), runner_env(home, tmp_path), tmp_path / "runner.log"
            )
        )
        stack.callback(delete_automations, TRIGGER.name)
        v1 = train_model_flow(model_name=MODEL, data=DataSpec(end=day(14)), training=FAST)
        assert v1["promoted"] and v1["version"] == "v1", v1["verdict"]

        # 2. Serve v1 and replay the concept-drifted days through HTTP
        server_env = service.server_env(
            tmp_path / "serving", f"{home}/registry", MLOPS_HOME=home, MLOPS_MODEL_NAME=MODEL,
            MLOPS_RELOAD_INTERVAL_S="1", MLOPS_PROFILE_WINDOW_S="60",
        )  # fmt: skip
        server = stack.enter_context(service.bentoml_server(server_env, tmp_path / "server.log"))
        loop = Loop(runner, server, f"train-model/{deployment}")
        automation = loop.registered_automation(TRIGGER.name)
        records = [r for d in SERVED_DAYS for r in day_records(simulated, CONFIG.date_of(d))]
        assert post_records(server.url, records) == {"v1"}
        loop.wait(lambda: logged_rows(home) >= len(records) or None, 30, "served rows logged")
        since = started.replace(second=0, microsecond=0)  # profile windows start on whole minutes
        # monitoring reads the profiles, which serving writes after the log: wait for them too
        settings = get_settings().model_copy(
            update={"home": str(home), "model_name": MODEL, "profile_window_s": 60}
        )
        until = datetime.now(UTC) + timedelta(hours=1)
        loop.wait(
            lambda: profiled_rows(settings, {"v1"}, since, until) >= len(records) or None,
            60,
            "served rows profiled",
        )

        # 3. Monitor the traffic since the test started: the labels show the decay
        monitored = monitor_model_flow(
            model_name=MODEL,
            window=MonitorWindow(start=since),
            thresholds=RELAXED,
            labels_uri=f"{simulated}/labels",
            return_state=True,
        )
        monitor = monitored.result()
        assert monitor["retrain"] and monitor["event_emitted"], monitor["explanation"]

        # 4. Its event runs train-model through the runner; serving picks the new champion up
        run = loop.triggered_run(timeout_s=180)
        assert len(loop.runs()) == 1
        loop.wait(lambda: served_version(server.url) == "v2" or None, 30, "serving to load v2")
        after = post_records(server.url, records[:256])

    # The trigger: both events of this model; the event's explanation became the run's reason
    assert automation.trigger.expect == set(EVENTS.values())
    assert automation.trigger.match.root == {"prefect.resource.id": f"mlops.model.{MODEL}"}
    reason = run.parameters["reason"]
    assert reason == f"{monitor['event']}: {monitor['explanation']}"
    assert run.parameters["data"] == retrain_parameters()["data"]

    # v2 was trained by that run, passed the gate, is served, and is better on post-drift days
    registry = Registry(f"{home}/registry")
    champion = registry.get(MODEL, "champion")
    assert champion.version == "v2"
    assert (champion.manifest["flow_run_id"], champion.manifest["reason"]) == (str(run.id), reason)
    assert after == {"v2"}
    scores = {
        (span, version): roc_auc(registry, version, labelled_rows(simulated, *span))
        for span in ((21, 24), (26, 30))  # drifted days served; later days neither model saw
        for version in ("v1", "v2")
    }
    print("roc_auc by (days, version):", scores)
    for span in ((21, 24), (26, 30)):
        assert scores[span, "v2"] > scores[span, "v1"] + 0.05, scores

    # Every store lies under MLOPS_HOME (on S3: in the bucket), whatever process wrote it
    fs, root = url_to_fs(home)
    fs.invalidate_cache()
    stores = {path[len(root.rstrip("/")) + 1 :].split("/")[0] for path in fs.find(root)}
    assert {"registry", "data", "predictions", "profiles", "reports", "monitoring"} <= stores

    # Every run left its artifacts
    assert artifact_keys(registry.get(MODEL, "v1").manifest["flow_run_id"]) >= TRAIN_ARTIFACTS
    assert artifact_keys(run.id) >= TRAIN_ARTIFACTS
    assert artifact_keys(monitored.state_details.flow_run_id) >= MONITOR_ARTIFACTS
