"""monitor-model: window profiles -> drift + constraints -> live performance -> retrain policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow

from flows.parameters import MonitorThresholds, MonitorWindow, RolloutRules
from mlops.contract.spec import Contract
from mlops.monitoring.constraints import ConstraintReport
from mlops.monitoring.estimate import Estimate, estimate_window
from mlops.monitoring.policy import PolicyInputs, decide_retrain
from mlops.monitoring.prediction_store import read_window_profiles, window_start
from mlops.monitoring.window import early_live_metric, served_rows, window_policy_inputs
from mlops.registry.rollouts import Rollout
from mlops.registry.store import ModelVersion, Registry
from mlops.settings import Settings, get_settings
from mlops.training.evaluate import PRIMARY_METRIC
from tasks.data import read_contract
from tasks.monitoring import (
    measure_drift,
    measure_performance,
    merge_window_profiles,
    publish_decision,
    read_history,
    record_decision,
    write_drift_report,
    write_loop_chart,
)
from tasks.promotion import request_reload, save_champion_to_bentoml
from tasks.rollout import act_on_verdict, judge_rollout


@flow(name="monitor-model", log_prints=True)
def monitor_model_flow(
    model_name: str | None = None,
    window: MonitorWindow | None = None,
    thresholds: MonitorThresholds | None = None,
    labels_uri: str | None = None,
    contract: str | None = None,
    emit: bool = True,
    rollout: RolloutRules | None = None,
) -> dict[str, Any]:
    """Check the champion's served traffic for drift and decay; emit an event to retrain.

    A shadow or canary on trial is judged first, on everything served since it started.
    """
    settings, thresholds = get_settings(), thresholds or MonitorThresholds()
    if model_name:  # the tasks below find the model's log, history and versions by this name
        settings = settings.model_copy(update={"model_name": model_name})
    name = settings.model_name
    start, end = resolve_window(window or MonitorWindow())
    registry = Registry(settings.registry)
    champion = registry.get(name, "champion")
    spec = read_contract(contract or settings.contract)

    # 0. A challenger on trial: judge it on live traffic; widen, end or promote it
    trial = review_rollout(
        settings, registry, spec, labels_uri, champion, end, rollout or RolloutRules(), emit=emit
    )

    # 1. The window's traffic against the champion's training data
    served, profile_windows = merge_window_profiles(settings, champion, start, end)
    if served is None:
        return {
            "model": name,
            "window": [start, end],
            "retrain": False,
            "served_rows": 0,
            "explanation": f"retrain: no, because {champion.version} served no rows",
            "rollout": trial,
        }
    drift, constraints, reference = measure_drift(registry, champion, served, spec)
    report = write_drift_report(settings, champion, drift, served, reference, end)

    # 2. Live performance on the served rows whose labels have arrived (served at least the label
    # delay ago), and the performance the champion's probabilities predict on the window
    until = end - timedelta(hours=thresholds.label_delay_hours)
    since = until - timedelta(hours=thresholds.performance_lookback_hours)
    performance = measure_performance(settings, registry, spec, labels_uri, since, until)
    policy = thresholds.policy(PRIMARY_METRIC[spec.task])
    estimate = estimate_window(reference, served, champion.manifest, policy.metric)

    # 3. Decide (labels first, then the estimate, then drift), remember, tell
    inputs = policy_inputs(
        settings, registry, champion, served, drift, performance, policy.metric, end,
        constraints=constraints, estimate=estimate, min_labelled_rows=policy.min_labelled_rows,
    )  # fmt: skip
    decision = decide_retrain(inputs, policy)
    result = {
        "model": name,
        "champion": champion.version,
        "window_start": start,
        "window_end": end,
        "drift_share": drift.share_drifted,
        "drifted_features": drift.drifted_features,
        "constraints_passed": constraints.passed,
        "failed_checks": list(inputs.failed_checks),
        "performance": performance,
        "estimate": estimate.to_dict() if estimate else None,
        "refused_challengers": inputs.refused_challengers,
        "drift_report": report,
        "profile_windows": profile_windows,
        "rollout": trial,
        **decision.to_dict(),
    }
    record_decision(settings, name, result)
    loop = write_loop_chart(settings, name)
    result["event_emitted"] = publish_decision(name, decision, result, emit=emit, loop=loop)
    return result


SETTLE_POLLS = 3  # a rollout change counts once serving has had this many registry polls


def review_rollout(
    settings: Settings,
    registry: Registry,
    spec: Contract,
    labels_uri: str | None,
    champion: ModelVersion,
    end: datetime,
    rules: RolloutRules,
    *,
    emit: bool,
) -> dict[str, Any] | None:
    """Judge the version on trial, if any, and carry the verdict out; None when none is."""
    trial = Rollout.from_dict(registry.aliases(settings.model_name).rollout)
    if trial is None:
        return None
    settle_s = SETTLE_POLLS * settings.reload_interval_s  # every replica has polled by then
    verdict = judge_rollout(
        settings, registry, spec, labels_uri, trial, champion.version, end,
        margin=rules.shadow_margin, min_rows=rules.min_labelled_rows, settle_s=settle_s,
        latency=rules.latency(),
    )  # fmt: skip
    result = act_on_verdict(registry, settings.model_name, verdict, emit=emit)
    if result["changed"]:
        if verdict.action == "promote":
            promoted = registry.get(settings.model_name, verdict.version)
            result["bento_tag"] = save_champion_to_bentoml(registry, promoted, flow="monitor-model")
        result["reload"] = request_reload(settings)
    return result


def resolve_window(window: MonitorWindow) -> tuple[datetime, datetime]:
    """Return the window's [start, end) in UTC."""
    end = _utc(window.end) if window.end else datetime.now(UTC)
    start = _utc(window.start) if window.start else end - timedelta(minutes=window.minutes)
    if start >= end:
        raise ValueError(f"monitoring window start {start} is not before end {end}")
    return start, end


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def policy_inputs(
    settings: Settings,
    registry: Registry,
    champion: ModelVersion,
    served: Any,
    drift: Any,
    performance: list[dict[str, Any]],
    metric: str,
    now: datetime,
    *,
    constraints: ConstraintReport | None = None,
    estimate: Estimate | None = None,
    min_labelled_rows: int = 1,
) -> PolicyInputs:
    """Gather what the policy needs: this window, earlier windows, live metric, last retrain.

    The champion's live baseline is its mean metric over its first earlier windows with at
    least `min_labelled_rows` labels (`early_live_metric`).

    Also counts the challengers refused since the champion's promotion (registered after the
    last promotion or rollback: a promoted one would have moved the champion), for the back-off.
    """
    history = [
        h
        for h in read_history(settings, settings.model_name)
        if h.get("champion") == champion.version
    ]
    events = registry.history(settings.model_name)
    registered = [h for h in events if h["event"] == "registered"]
    last = datetime.fromisoformat(registered[-1]["time"]) if registered else None
    moved = [i for i, h in enumerate(events) if h["event"] in ("promoted", "rolled_back")]
    refused = sum(h["event"] == "registered" for h in events[moved[-1] + 1 :]) if moved else 0
    # New rows count since the last training, across windows, not in this window alone; from the
    # profile window the training happened in (profile files are named by their window's start)
    new_rows = None
    if last is not None:
        found = None
        if last < now:
            first = window_start(last, settings.profile_window_s)
            found = read_window_profiles(
                settings.store("profiles"),
                settings.model_name,
                champion.version,
                first,
                now,
                settings.profile_window_s,
            )
        new_rows = 0 if found is None else served_rows(found)
    return window_policy_inputs(
        now=now,
        served=served,
        drift=drift,
        performance=performance,
        champion=champion.version,
        metric=metric,
        previous_drift_shares=[float(h["drift_share"]) for h in history],
        last_retrain=last,
        new_rows=new_rows,
        constraints=constraints,
        estimate=estimate,
        refused_challengers=refused,
        live_baseline=early_live_metric(
            [h.get("performance") or [] for h in history],
            champion.version,
            metric,
            min_labelled_rows,
        ),
        manifest=champion.manifest,
    )
