"""Tasks that start a shadow or canary rollout, judge it on live traffic, and act on the verdict."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.data.incidents import incidents, outside
from mlops.data.sources import read_frame
from mlops.monitoring.performance import LabelJoinError, join_labels
from mlops.monitoring.prediction_store import read_prediction_log
from mlops.registry.rollouts import Rollout
from mlops.registry.store import ModelVersion, Registry
from mlops.release.rollout import LatencyBudget, Verdict, judge_canary, judge_shadow
from mlops.settings import Settings
from tasks.monitoring import emit_model_event, read_history

ROLLOUT_EVENTS = {
    "started": "mlops.model.rollout-started",
    "won": "mlops.model.shadow-won",
    "retire": "mlops.model.shadow-retired",
    "widen": "mlops.model.canary-widened",
    "promote": "mlops.model.canary-promoted",
    "rollback": "mlops.model.canary-rolled-back",
}
ENDINGS = {"won": "won", "retire": "retired", "rollback": "rolled_back"}  # verdict -> outcome
MONITOR_ACTOR = "monitor-model"


@task(name="start-rollout", cache_policy=NO_CACHE)
def start_rollout(
    registry: Registry,
    version: ModelVersion,
    strategy: str,
    *,
    share: float,
    actor: str,
    reason: str,
) -> Rollout:
    """Put a checked version on trial beside the champion; publish and emit what started."""
    state = registry.start_rollout(
        version.model, version.version, strategy, share=share, actor=actor, reason=reason
    )
    trial = Rollout.from_dict(state.rollout)
    assert trial is not None
    what = f"answers {share:.0%} of the records" if strategy == "canary" else "answers none"
    summary = (
        f"{version.model} {trial.version} on trial as a {strategy} beside "
        f"{trial.champion}: it {what}"
    )
    create_markdown_artifact(
        key="rollout",
        markdown=f"# Rollout of {version.model}\n\n{summary}.\n\n| | |\n| --- | --- |\n"
        f"| strategy | {strategy} |\n| version | **{trial.version}** |\n| champion | "
        f"{trial.champion} |\n| share | {trial.share:.0%} |\n| reason | {reason or '-'} |\n"
        f"| actor | {actor} |\n| registry revision | {state.revision} |\n",
        description=summary,
    )
    emit_model_event(
        version.model, ROLLOUT_EVENTS["started"], {**trial.to_dict(), "reason": reason}
    )
    get_run_logger().info(summary)
    return trial


@task(name="judge-rollout", cache_policy=NO_CACHE)
def judge_rollout(
    settings: Settings,
    registry: Registry,
    contract: Contract,
    labels_uri: str | None,
    trial: Rollout,
    champion: str,
    until: datetime,
    *,
    margin: float,
    min_rows: int,
    settle_s: float = 0.0,
    latency: LatencyBudget | None = None,
) -> Verdict:
    """Judge the version on trial on what was served since it started (a canary: since its step).

    For a canary, rows served in the first `settle_s` after the change are left out: serving
    replicas pick a change up at their next registry poll, and until then they route by the old
    share (a canary's ids answered by the champion would pass for its errors). A shadow needs no
    settling: its evidence is the rows both versions scored.

    A shadow is compared with the champion on the same labelled records; a canary on its errors,
    its answer times (held to the champion's by `latency`) and its labelled records against the
    champion's in the same window.
    """
    if trial.strategy == "canary":
        changed_at, settle = trial.step_at or trial.started_at, settle_s
    else:  # a row only one version scored is unpaired, never mistaken for anything
        changed_at, settle = trial.started_at, 0.0
    since = datetime.fromisoformat(changed_at or until.isoformat()) + timedelta(seconds=settle)
    served = read_prediction_log(
        settings.store("predictions"), settings.model_name, start=since, end=until
    )
    served = served[served["model_version"].isin([champion, trial.version])]
    labelled = served.iloc[0:0]
    # rows from a broken feed (a window that failed its data checks) say nothing about which
    # model is better; a canary's errors on them still count
    judged = outside(served, incidents(read_history(settings, settings.model_name)))
    if labels_uri and len(judged):
        labels, _ = read_frame(labels_uri)
        try:
            labelled = join_labels(judged, labels, contract)
        except LabelJoinError as exc:
            get_run_logger().warning("rollout judged without labels: %s", exc)
    manifests = {
        v: registry.get(settings.model_name, v).manifest for v in (champion, trial.version)
    }
    target = contract.target.name
    if trial.strategy == "canary":
        return judge_canary(served, labelled, trial, champion, manifests, target=target,
                            id_column=contract.id_column, min_rows=min_rows,
                            latency=latency)  # fmt: skip
    if contract.id_column is None:
        reason = (f"contract {contract.name!r} has no id column: champion and shadow rows "
                  "cannot be paired")  # fmt: skip
        return Verdict("shadow", trial.version, "wait", reason)
    return judge_shadow(labelled, trial, champion, manifests, id_column=contract.id_column,
                        target=target, margin=margin, min_rows=min_rows)  # fmt: skip


@task(name="act-on-rollout", cache_policy=NO_CACHE)
def act_on_verdict(
    registry: Registry, model_name: str, verdict: Verdict, *, emit: bool
) -> dict[str, Any]:
    """Carry the verdict out on the registry (end, widen or promote), publish it, emit its event.

    A shadow that won is only ended here: the `mlops.model.shadow-won` event asks the
    promote-model deployment (its trigger in prefect.yaml) to promote it, checks included.
    Return what changed, for the flow's result.
    """
    log = get_run_logger()
    action, version = verdict.action, verdict.version
    reason = f"{verdict.strategy} {verdict.action}: {verdict.reason}"
    actor, state = MONITOR_ACTOR, None
    if action in ENDINGS:
        state = registry.end_rollout(
            model_name, ENDINGS[action], version=version, actor=actor, reason=reason
        )
    elif action == "widen" and verdict.next_share is not None:
        state = registry.widen_rollout(model_name, verdict.next_share, actor=actor, reason=reason)
    elif action == "promote":
        state = registry.promote(model_name, version, actor=actor, reason=reason)
    revision = None if state is None else state.revision
    changed = state is not None
    summary = f"{model_name} {version} ({verdict.strategy}): {action}, {verdict.reason}"
    rows = "\n".join(f"| {k} | {v} |" for k, v in verdict.to_dict().items() if v is not None)
    create_markdown_artifact(
        key="rollout-verdict",
        markdown=f"# {verdict.strategy.title()} {version}: {action}\n\n{verdict.reason}\n\n"
        f"| | |\n| --- | --- |\n{rows}\n| registry revision | {revision or '-'} |\n",
        description=summary,
    )
    log.info(summary)
    event = None
    if changed and emit and action in ROLLOUT_EVENTS:
        event = ROLLOUT_EVENTS[action]
        emit_model_event(model_name, event, {**verdict.to_dict(), "explanation": reason})
    return {**verdict.to_dict(), "changed": changed, "revision": revision, "event": event}
