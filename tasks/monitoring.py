"""Tasks of the monitor-model flow: gather the window, measure it, decide, report, emit."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import fsspec
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.logging import get_run_logger

from mlops.contract.spec import Contract
from mlops.data.incidents import incidents, outside
from mlops.data.sources import read_frame
from mlops.monitoring.constraints import ConstraintReport
from mlops.monitoring.drift import DriftReport
from mlops.monitoring.drift_view import (
    drift_headline,
    drift_markdown,
    drift_table,
    saved_at,
    svg_image,
)
from mlops.monitoring.loop_chart import render_loop_svg, save_loop_chart
from mlops.monitoring.performance import join_labels, performance_by_version
from mlops.monitoring.policy import RetrainDecision
from mlops.monitoring.prediction_store import read_overlapping_profiles, read_prediction_log
from mlops.monitoring.profile import drift_report_html, profile_from_bytes
from mlops.monitoring.timeline import profile_windows_text, render_loop_markdown
from mlops.monitoring.window import assess_window
from mlops.registry.locking import write_atomic
from mlops.registry.store import ModelVersion, Registry
from mlops.settings import Settings

EMBEDDED_WINDOWS = 100  # the monitoring windows whose loop chart a run's artifacts embed


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
        table=drift_table(drift),
        description=f"vs {champion.version}'s training data: {drift_headline(drift)}",
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
    settings: Settings,
    champion: ModelVersion,
    drift: DriftReport,
    window: Any,
    reference: Any,
    end: datetime,
) -> str:
    """Show the drift report in the run (verdict, chart, table); save whylogs' HTML report too.

    The artifact holds the whole summary, chart included, so the Prefect UI needs no file the
    worker wrote; whylogs' page (distributions of every column) lies in the reports store.
    """
    url = f"{settings.store('reports')}/{champion.model}/drift-{end:%Y%m%dT%H%M%SZ}.html"
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    write_atomic(fs, path, drift_report_html(window, reference).encode())
    location = url if "://" in url else fs.unstrip_protocol(path)
    create_markdown_artifact(
        key="drift-report",
        markdown=drift_markdown(
            drift,
            f"{champion.version}'s training data",
            saved_at(location, "whylogs' HTML report of every column's distribution"),
        ),
        description=drift_headline(drift),
    )
    return location


@task(name="record-decision", cache_policy=NO_CACHE)
def record_decision(settings: Settings, model_name: str, result: dict[str, Any]) -> None:
    """Append this window's figures to the monitoring history (the policy reads it next time)."""
    fs, path = _history_file(settings, model_name)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    write_atomic(
        fs, path, _read_or_empty(fs, path) + json.dumps(result, default=str).encode() + b"\n"
    )


def read_history(settings: Settings, model_name: str) -> list[dict[str, Any]]:
    """Return the monitoring history, oldest first."""
    fs, path = _history_file(settings, model_name)
    text = _read_or_empty(fs, path).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _read_or_empty(fs: Any, path: str) -> bytes:
    """Return a file's bytes, or none when it is missing.

    Not exists(): on S3 it answers from a listing cache that another process's write leaves stale.
    """
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return b""


def _history_file(settings: Settings, model_name: str) -> tuple[Any, str]:
    """Return the file system and path of a model's monitoring history."""
    return fsspec.core.url_to_fs(f"{settings.store('monitoring')}/{model_name}/history.jsonl")


@task(name="write-loop-chart", cache_policy=NO_CACHE)
def write_loop_chart(settings: Settings, model_name: str) -> str:
    """Draw the monitoring history into the run and as loop.svg and loop.html in the reports store.

    Return the summary's "Loop so far" part: the last windows, the retrain outcomes, the page.
    """
    history = read_history(settings, model_name)
    events = Registry(settings.registry).history(model_name)
    page = save_loop_chart(settings.store("reports"), model_name, history, events)
    # the run keeps the last windows' chart (~270 bytes a window); the page has the whole history
    shown = history[-EMBEDDED_WINDOWS:]
    chart = svg_image(
        render_loop_svg(shown, events, model_name), f"the last {len(shown)} monitoring windows"
    )
    create_markdown_artifact(
        key="loop-chart",
        markdown=f"{chart}\n\n{saved_at(page, 'The whole history with a table of every window')}\n",
        description=f"Live metric, drift, versions and decisions of {len(history)} windows",
    )
    return render_loop_markdown(history, page, events, chart=chart)


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
    emit_model_event(model_name, decision.event, payload)
    return True


def emit_model_event(model_name: str, event: str, payload: dict[str, Any]) -> None:
    """Emit an `mlops.model.*` event about a model (resource `mlops.model.<name>`, which the
    deployment triggers in prefect.yaml match on)."""
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"mlops.model.{model_name}",
            "prefect.resource.name": model_name,
        },
        payload=payload,
    )
