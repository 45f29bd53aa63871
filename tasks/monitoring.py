"""Tasks of the monitor-model flow: gather the window, measure it, decide, report, emit."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import fsspec
from prefect import task
from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.data.incidents import incidents, outside
from mlops.data.sources import read_frame
from mlops.monitoring.constraints import ConstraintReport
from mlops.monitoring.drift import DriftReport
from mlops.monitoring.loop_chart import save_loop_chart
from mlops.monitoring.performance import join_labels, performance_by_version
from mlops.monitoring.policy import RetrainDecision
from mlops.monitoring.prediction_store import read_overlapping_profiles, read_prediction_log
from mlops.monitoring.profile import drift_report_html, profile_from_bytes
from mlops.monitoring.timeline import profile_windows_text, render_loop_markdown
from mlops.monitoring.window import assess_window
from mlops.registry.locking import write_atomic
from mlops.registry.store import ModelVersion, Registry
from mlops.settings import Settings


@task(name="merge-window-profiles", cache_policy=NO_CACHE)
def merge_window_profiles(
    settings: Settings, champion: ModelVersion, start: datetime, end: datetime
) -> tuple[Any, list[str]]:
    """Merge the champion's serving profiles of every profile window overlapping the window.

    Return the merged profile (None if no traffic) and the ISO starts of the windows merged.
    """
    view, starts = read_overlapping_profiles(
        settings.store("profiles"),
        champion.model,
        champion.version,
        start,
        end,
        settings.profile_window_s,
    )
    get_run_logger().info(profile_windows_text(starts))
    return view, [moment.isoformat() for moment in starts]


@task(name="measure-drift", cache_policy=NO_CACHE)
def measure_drift(
    registry: Registry, champion: ModelVersion, window: Any, contract: Contract
) -> tuple[DriftReport, ConstraintReport, Any]:
    """Compare the window with the champion's reference profile; check contract constraints."""
    reference = profile_from_bytes(
        registry.read_reference_profile(champion.model, champion.version)
    )
    drift, constraints = assess_window(reference, window, contract)
    create_table_artifact(
        key="drift",
        table=drift.to_rows(),
        description=f"Drift of {drift.n_features} features and the outputs vs "
        f"{champion.version}'s training data: {drift.share_drifted:.0%} drifted",
    )
    create_table_artifact(
        key="constraints", table=constraints.to_rows(), description=constraints.summary()
    )
    return drift, constraints, reference


@task(name="measure-performance", cache_policy=NO_CACHE)
def measure_performance(
    settings: Settings,
    registry: Registry,
    contract: Contract,
    labels_uri: str | None,
    since: datetime,
    end: datetime,
) -> list[dict[str, Any]]:
    """Join the prediction log with the labels that arrived; measure every version on them."""
    log = get_run_logger()
    if not labels_uri:
        log.info("no labels_uri: performance not measured")
        return []
    served = read_prediction_log(
        settings.store("predictions"), settings.model_name, start=since, end=end
    )
    # rows served while a window failed its data checks came from a broken feed: their errors
    # are the feed's, not the model's, and must not call for a retrain once the feed is fixed
    found = incidents(read_history(settings, settings.model_name))
    kept = outside(served, found)
    if len(kept) < len(served):
        log.info("left out %d rows served during data-quality incidents", len(served) - len(kept))
    served = kept
    if served.empty:
        return []
    labels, _ = read_frame(labels_uri)
    joined = join_labels(served, labels, contract)
    manifests = {v.version: v.manifest for v in registry.list_versions(settings.model_name)}
    rows = performance_by_version(joined, contract, manifests)
    create_table_artifact(
        key="performance",
        table=rows or [{"version": "-", "labelled_rows": 0}],
        description=f"Labelled served rows since {since:%Y-%m-%d %H:%M}",
    )
    return rows


@task(name="write-drift-report", cache_policy=NO_CACHE)
def write_drift_report(
    settings: Settings, champion: ModelVersion, window: Any, reference: Any, end: datetime
) -> str:
    """Save whylogs' HTML drift report in the reports store and link it from the run."""
    url = f"{settings.store('reports')}/{champion.model}/drift-{end:%Y%m%dT%H%M%SZ}.html"
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    write_atomic(fs, path, drift_report_html(window, reference).encode())
    link = url if "://" in url else fs.unstrip_protocol(path)
    create_link_artifact(
        key="drift-report",
        link=link,
        link_text="whylogs drift report",
        description="HTML drift report of the window vs the reference",
    )
    return link


@task(name="record-decision", cache_policy=NO_CACHE)
def record_decision(settings: Settings, model_name: str, result: dict[str, Any]) -> None:
    """Append this window's figures to the monitoring history (the policy reads it next time)."""
    fs, path = _history_file(settings, model_name)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    previous = fs.cat_file(path) if fs.exists(path) else b""
    write_atomic(fs, path, previous + json.dumps(result, default=str).encode() + b"\n")


def read_history(settings: Settings, model_name: str) -> list[dict[str, Any]]:
    """Return the monitoring history, oldest first."""
    fs, path = _history_file(settings, model_name)
    if not fs.exists(path):
        return []
    return [json.loads(line) for line in fs.cat_file(path).decode().splitlines() if line.strip()]


def _history_file(settings: Settings, model_name: str) -> tuple[Any, str]:
    """Return the file system and path of a model's monitoring history."""
    return fsspec.core.url_to_fs(f"{settings.store('monitoring')}/{model_name}/history.jsonl")


@task(name="write-loop-chart", cache_policy=NO_CACHE)
def write_loop_chart(settings: Settings, model_name: str) -> str:
    """Draw the monitoring history as loop.svg and loop.html in the reports store; link them.

    Return the summary's "Loop so far" part: the last windows, the retrain outcomes, the link.
    """
    history = read_history(settings, model_name)
    events = Registry(settings.registry).history(model_name)
    link = save_loop_chart(settings.store("reports"), model_name, history, events)
    create_link_artifact(
        key="loop-chart",
        link=link,
        link_text="monitoring loop chart",
        description=f"Live metric, drift, versions and decisions of {len(history)} windows",
    )
    return render_loop_markdown(history, link, events)


@task(name="publish-decision", cache_policy=NO_CACHE)
def publish_decision(
    model_name: str,
    decision: RetrainDecision,
    payload: dict[str, Any],
    *,
    emit: bool,
    loop: str = "",
) -> bool:
    """Write the summary artifact; emit the retrain event or the data-quality incident, if any."""
    create_markdown_artifact(
        key="monitoring-summary",
        markdown=f"## {decision.explanation}\n\n"
        f"{profile_windows_text(payload.get('profile_windows') or [])}\n\n{loop}\n```json\n"
        f"{json.dumps(payload, indent=2, default=str)}\n```\n",
        description=decision.explanation,
    )
    get_run_logger().info(decision.explanation)
    if not (emit and decision.event):  # a retrain event, or a data-quality incident
        return False
    emit_event(
        event=decision.event,
        resource={
            "prefect.resource.id": f"mlops.model.{model_name}",
            "prefect.resource.name": model_name,
        },
        payload=payload,
    )
    return True
