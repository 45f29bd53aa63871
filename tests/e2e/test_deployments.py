"""prefect.yaml on a real server: bootstrap, `prefect deploy --all`, process workers, every flow.

The runs go through the API to the workers (train-model on gpu-pool, the rest on cpu-pool), and
the drift event of a monitor-model run starts train-model through prefect.yaml's trigger.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from flows.triggers import RETRAIN_REASON
from mlops.data.simulate import generate_day
from mlops.inference.model import load_from_registry
from mlops.inference.outputs import output_frame
from mlops.monitoring.policy import EVENTS
from mlops.monitoring.prediction_logger import LogSettings, PredictionLogger
from mlops.settings import REPO_ROOT
from stack import services as stack
from tests.support.e2e import (
    MODEL,
    TRAIN_END,
    VARIABLES,
    WORLD,
    E2EStack,
    bootstrap_command,
    result_of,
    run_deployment,
)

pytestmark = pytest.mark.slow
DEPLOYMENTS = {
    "train-model": "gpu-pool",
    "tune-model": "gpu-pool",
    "monitor-model": "cpu-pool",
    "promote-model": "cpu-pool",
    "rollback-model": "cpu-pool",
    "score-batch": "cpu-pool",
    "backtest-policy": "cpu-pool",
}
TEMPLATES = REPO_ROOT / "deployments" / "templates"


def bootstrap_module() -> Any:
    """Load deployments/bootstrap.py (a script folder, not a package)."""
    spec = importlib.util.spec_from_file_location(
        "bootstrap", REPO_ROOT / "deployments" / "bootstrap.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="package")
def champion_run(e2e_stack: E2EStack) -> Any:
    """Train v1 through the train-model deployment (once for the package)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: e2e_stack.api}):
        return run_deployment("train-model/train-model", {"reason": "e2e: first model"})


# -- the server ---------------------------------------------------------------------------------


def test_bootstrap_is_idempotent_and_creates_pools_limit_and_variables(
    prefect_api: E2EStack,
) -> None:
    again = stack.run_checked(bootstrap_command(), prefect_api.env, REPO_ROOT, "bootstrap again")
    assert "exists" in again and "created" not in again, again

    async def read() -> tuple[Any, ...]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            pools = {p.name: p.type for p in await client.read_work_pools()}
            limit = await client.read_global_concurrency_limit_by_name("gpu")
            data = await client.read_variable_by_name("mlops_train_data")
        return pools, limit, data

    pools, limit, data = asyncio.run(read())
    assert pools["cpu-pool"] == pools["gpu-pool"] == "process"
    assert limit.limit == 1 and limit.active
    assert data.value == VARIABLES["mlops_train_data"]


def test_bootstrap_refuses_to_change_the_type_of_an_existing_pool(prefect_api: E2EStack) -> None:
    command = [str(stack.BIN / "mlops"), "bootstrap", "--type", "docker"]
    with pytest.raises(stack.StackError, match="exists with type 'process'"):
        stack.run_checked(command, prefect_api.env, REPO_ROOT, "bootstrap --type docker")


@pytest.mark.parametrize("kind", ["docker", "kubernetes"])
def test_docker_and_kubernetes_templates_make_pools_the_server_accepts(
    prefect_api: E2EStack, kind: str
) -> None:
    bootstrap = bootstrap_module()

    async def create() -> list[Any]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            for gpu in (False, True):
                name = f"check-{kind}-{'gpu' if gpu else 'cpu'}"
                await bootstrap.ensure_pool(client, name, kind, gpu, "template check")
                await bootstrap.ensure_pool(client, name, kind, gpu, "twice is fine")
            return [await client.read_work_pool(f"check-{kind}-{g}") for g in ("cpu", "gpu")]

    cpu, gpu = asyncio.run(create())
    assert cpu.type == gpu.type == kind
    assert gpu.base_job_template == json.loads((TEMPLATES / f"{kind}-gpu.json").read_text())
    assert gpu.description == "twice is fine"


def test_deploy_all_creates_every_deployment_with_its_pool_schedule_and_trigger(
    prefect_api: E2EStack,
) -> None:
    async def read() -> tuple[list[Any], list[Any]]:
        from prefect.client.orchestration import get_client

        async with get_client() as client:
            return await client.read_deployments(), await client.read_automations()

    deployments, automations = asyncio.run(read())
    by_name = {d.name: d for d in deployments}
    assert {name: d.work_pool_name for name, d in by_name.items()} == DEPLOYMENTS
    train, monitor = by_name["train-model"], by_name["monitor-model"]
    assert [s.schedule.cron for s in train.schedules] == ["0 3 * * 1"]
    assert [s.schedule.cron for s in monitor.schedules] == ["0 * * * *"]
    assert train.global_concurrency_limit is not None and train.global_concurrency_limit.limit == 1
    assert train.parameters["data"] == VARIABLES["mlops_train_data"]  # read when deploying
    assert train.parameters["training"] == VARIABLES["mlops_train_hyperparameters"]
    assert "training" in train.tags and all(d.description for d in deployments)
    assert train.pull_steps == [
        {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO_ROOT)}}
    ]
    (retrain,) = [a for a in automations if a.actions[0].deployment_id == train.id]
    assert retrain.trigger.expect == set(EVENTS.values())
    assert retrain.actions[0].parameters["reason"] == RETRAIN_REASON
    promote = by_name["promote-model"]
    (shadow_won,) = [a for a in automations if a.actions[0].deployment_id == promote.id]
    assert shadow_won.trigger.expect == {"mlops.model.shadow-won"}
    assert shadow_won.actions[0].parameters["version"] == "{{ event.payload.version }}"


# -- every flow, run through the workers ----------------------------------------------------------


def test_train_model_deployment_registers_and_promotes_a_champion(
    prefect_api: E2EStack, champion_run: Any
) -> None:
    result = result_of(champion_run, prefect_api)

    assert result["version"] == "v1" and result["promoted"], result["verdict"]
    champion = prefect_api.registry.get(MODEL, "champion")
    assert champion.version == "v1"
    assert champion.manifest["flow_run_id"] == str(champion_run.id)
    assert champion.manifest["reason"] == "e2e: first model"
    assert str(champion.manifest["data"]["window_to"])[:10] < TRAIN_END.date().isoformat()
    assert result["device"] == "cpu"


def test_monitor_model_drift_event_runs_train_model_through_the_deployment_trigger(
    prefect_api: E2EStack, champion_run: Any
) -> None:
    result_of(champion_run, prefect_api)
    served_at = dt.datetime.now(dt.UTC)  # after v1 was registered: the policy's cooldown clock
    serve_day(prefect_api.home, WORLD.days - 1, served_at)  # shifted spending, new fraud pattern
    started = time.time()
    # profiles are kept per 5-minute window: the window must hold the one `served_at` falls in
    window = {"start": (served_at - dt.timedelta(minutes=10)).isoformat(),
              "end": (served_at + dt.timedelta(minutes=2)).isoformat()}  # fmt: skip
    # no labels, and the estimate switched off: drift is the evidence left
    thresholds = {"consecutive_windows": 1, "cooldown_hours": 0, "min_new_rows": 100,
                  "use_estimate": False}  # fmt: skip
    monitor = result_of(
        run_deployment("monitor-model/monitor-model", {"window": window, "thresholds": thresholds}),
        prefect_api,
    )
    assert monitor["retrain"] and monitor["event_emitted"], monitor["explanation"]
    assert monitor["event"] == EVENTS["drift"]

    run = wait_for_triggered_run(prefect_api, after=started)
    trained = result_of(run, prefect_api)
    assert run.parameters["reason"] == f"{monitor['event']}: {monitor['explanation']}"
    assert run.parameters["data"] == VARIABLES["mlops_train_data"]  # the deployment's defaults
    version = prefect_api.registry.get(MODEL, trained["version"])
    assert version.manifest["reason"] == run.parameters["reason"]


def test_promote_and_rollback_deployments_move_the_champion(
    prefect_api: E2EStack, champion_run: Any
) -> None:
    other = second_version(prefect_api)
    before = prefect_api.registry.get(MODEL, "champion").version

    promoted = result_of(
        run_deployment("promote-model/promote-model", {"version": other, "reason": "e2e"}),
        prefect_api,
    )
    assert prefect_api.registry.get(MODEL, "champion").version == other
    assert promoted["bento_tag"].startswith(f"{MODEL}:{other}-")

    result_of(run_deployment("rollback-model/rollback-model", {}), prefect_api)
    assert prefect_api.registry.get(MODEL, "champion").version == before


def test_a_shadow_that_won_is_promoted_through_the_deployment_trigger(
    prefect_api: E2EStack, champion_run: Any
) -> None:
    from prefect.events import emit_event

    from tasks.rollout import ROLLOUT_EVENTS

    other = second_version(prefect_api)
    before = prefect_api.registry.get(MODEL, "champion").version
    started = time.time()
    trial = result_of(
        run_deployment("promote-model/promote-model", {"version": other, "strategy": "shadow"}),
        prefect_api,
    )
    assert trial["event"] == "shadow started"
    assert prefect_api.registry.get(MODEL, "champion").version == before
    # What monitor-model emits when the shadow beats the champion (tests/flows: the verdict)
    emit_event(
        event=ROLLOUT_EVENTS["won"],
        resource={"prefect.resource.id": f"mlops.model.{MODEL}"},
        payload={"version": other, "explanation": "shadow won: e2e"},
    )
    run = wait_for_triggered_run(prefect_api, after=started, deployment="promote-model",
                                 actor="monitor-model")  # fmt: skip
    result_of(run, prefect_api)
    assert run.parameters["version"] == other and run.parameters["strategy"] == "direct"
    state = prefect_api.registry.aliases(MODEL)
    assert state.aliases["champion"] == other and state.rollout is None
    prefect_api.registry.rollback(MODEL, actor="e2e", reason="restore the champion")


def test_score_batch_deployment_scores_partitions_with_the_champion(
    prefect_api: E2EStack, champion_run: Any
) -> None:
    result_of(champion_run, prefect_api)
    days = [f"date={WORLD.date_of(d).isoformat()}" for d in (8, 9)]
    parameters = {"data_uri": str(prefect_api.simulated / "raw"), "partitions": days}
    summary = result_of(run_deployment("score-batch/score-batch", parameters), prefect_api)

    assert summary["rows"] == 2 * WORLD.rows_per_day
    assert summary["version"] == prefect_api.registry.get(MODEL, "champion").version
    written = list((prefect_api.home / "predictions-batch" / MODEL).rglob("*.parquet"))
    assert sum(len(pd.read_parquet(p)) for p in written) == summary["valid"]


def test_backtest_deployment_replays_the_history_under_two_policies(
    prefect_api: E2EStack,
) -> None:
    parameters = {
        "model_name": "e2e-backtest",
        "replay": {"initial": "6d", "batch": "2d", "policies": ["static", "every"]},
        "training": VARIABLES["mlops_train_hyperparameters"],
    }
    outcome = result_of(run_deployment("backtest-policy/backtest-policy", parameters), prefect_api)

    summary = {row["policy"]: row for row in outcome["summary"]}
    assert set(summary) == {"static", "every"}
    assert summary["static"]["retrains"] == 0 and summary["every"]["retrains"] == 3
    report = json.loads(Path(outcome["report"]["json"]).read_text())
    batches = report["policies"]["static"]["batches"]
    assert len(batches) == 3 and [b["rows"] for b in batches[:2]] == [2 * 1000] * 2
    assert report["trainings"] == {"computed": 4, "reused": 0}
    assert (
        Path(outcome["report"]["html"]).parent.parent == prefect_api.home / "reports" / "backtests"
    )


# -- helpers --------------------------------------------------------------------------------------


def serve_day(home: Path, day: int, at: dt.datetime) -> None:
    """Log a simulated day the way the service does (features, outputs, version, time served)."""
    from mlops.registry.store import Registry

    model = load_from_registry(Registry(str(home / "registry")), MODEL, prefer_gpu=False)
    features, _ = generate_day(WORLD, day)
    logger = PredictionLogger(
        LogSettings(str(home / "profiles"), str(home / "predictions")),
        model_name=MODEL,
        clock=lambda: at,
    )
    logger.record(
        request_id=f"e2e-{day}",
        model_version=model.version,
        features=features,
        outputs=output_frame(model.predict(features), model.manifest),
        received_at=at,
    )
    assert logger.flush().ok


def wait_for_triggered_run(
    e2e: E2EStack,
    after: float,
    timeout_s: float = 240,
    *,
    deployment: str = "train-model",
    actor: str | None = None,
) -> Any:
    """Wait for a run of `deployment` created after `after` (by `actor`) to finish; return it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    deadline = time.time() + timeout_s
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
            )
            fresh = [r for r in runs if r.created and r.created.timestamp() > after
                     and (actor is None or r.parameters.get("actor") == actor)]  # fmt: skip
            if fresh and fresh[0].state is not None and fresh[0].state.is_final():
                return fresh[0]
            time.sleep(2)
    pytest.fail(f"no triggered {deployment} run finished in {timeout_s} s\n{e2e.logs()}")


def second_version(e2e: E2EStack) -> str:
    """Return a registered version other than the champion, training one if there is none."""
    champion = e2e.registry.get(MODEL, "champion").version
    others = [v.version for v in e2e.registry.list_versions(MODEL) if v.version != champion]
    if others:
        return others[-1]
    parameters = {"gate": {"promote": False}, "reason": "e2e: a challenger"}
    return str(result_of(run_deployment("train-model/train-model", parameters), e2e)["version"])
