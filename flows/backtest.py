"""backtest-policy: replay a labelled history under retraining policies, batch by batch."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.parameters import DataSpec, GateSpec, MonitorThresholds, ReplaySpec
from mlops.settings import get_settings
from mlops.training.evaluate import PRIMARY_METRIC
from mlops.training.train import TrainParams
from tasks.backtest import plan_backtest, publish_backtest, replay_policy, train_initial_model
from tasks.data import load_data, read_contract


@flow(name="backtest-policy", log_prints=True)
def backtest_policy_flow(
    model_name: str = "backtest",
    data: DataSpec | None = None,
    replay: ReplaySpec | None = None,
    training: TrainParams | None = None,
    gate: GateSpec | None = None,
    thresholds: MonitorThresholds | None = None,
    max_failing_share: float = 0.05,
    out: str | None = None,
) -> dict[str, Any]:
    """What would each retraining policy have done on this history, and what would it have bought?

    Each policy starts from the same first model and replays the batches in event time: its
    champion predicts a batch, the batch's labels score it, then the policy decides (triggered:
    with monitor-model's code and `thresholds`) and a retrain goes through train-model's release
    path into the policy's own scratch registry. Identical trainings are computed once.
    """
    settings, data = get_settings(), data or DataSpec()
    replay, training = replay or ReplaySpec(), training or TrainParams()
    data_uri, labels_uri = data.uris(settings.data)

    # 1. The history: read it in contract order, cut it into the initial rows and batches
    contract = read_contract(data.contract or settings.contract)
    loaded = load_data(data_uri, contract, labels_uri=labels_uri, window=data.window())
    rules = (thresholds or MonitorThresholds()).policy(PRIMARY_METRIC[contract.task])
    runner, specs = plan_backtest(
        loaded, contract, replay, training, gate or GateSpec(), rules,
        settings=settings, model_name=model_name, data_uri=data_uri,
        max_failing_share=max_failing_share,
    )  # fmt: skip

    # 2. The first model, then each policy in turn (trainings shared through the cache)
    initial = train_initial_model(runner)
    results = {spec.name: replay_policy(runner, spec, initial) for spec in specs}

    # 3. The report: files, and the same as artifacts
    return publish_backtest(runner, results, out=out, settings=settings)
