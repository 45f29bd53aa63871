"""Tasks that check a version, move the champion alias, and tell serving to reload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from mlops.inference.model import ModelLoadError, load_from_registry
from mlops.registry.store import ModelVersion, Registry
from mlops.settings import Settings
from serving.bento_store import try_save_to_bentoml

HISTORY_ROWS = 10


class PromotionRefused(RuntimeError):
    """A version that may not become the champion, with the check it failed."""


@dataclass(frozen=True)
class AliasChange:
    """How a promotion or rollback moved the champion alias."""

    model: str
    event: str
    from_version: str | None
    to_version: str
    revision: int
    actor: str
    reason: str


@task(name="check-version", cache_policy=NO_CACHE)
def check_version(registry: Registry, model_name: str, ref: str, *, purpose: str) -> ModelVersion:
    """Verify a version's ONNX checksum and load it in onnxruntime with a probe; refuse if not."""
    champion = registry.aliases(model_name).aliases.get("champion")
    try:
        loaded = load_from_registry(registry, model_name, ref, prefer_gpu=False)
    except ModelLoadError as exc:
        raise PromotionRefused(
            f"refusing to {purpose} {model_name} {ref}: {exc}. The champion stays {champion}."
        ) from exc
    get_run_logger().info(
        "%s %s: checksum verified, loads and answers a probe in onnxruntime",
        model_name,
        loaded.version,
    )
    return registry.get(model_name, loaded.version)


@task(name="promote-version", cache_policy=NO_CACHE)
def promote_version(
    registry: Registry, version: ModelVersion, *, actor: str, reason: str
) -> AliasChange:
    """Make a checked version the champion; the old champion becomes previous."""
    state = registry.promote(version.model, version.version, actor=actor, reason=reason)
    return _last_change(registry, version.model, "promoted", state.revision)


@task(name="rollback-champion", cache_policy=NO_CACHE)
def rollback_champion(
    registry: Registry, model_name: str, *, expected_revision: int, actor: str, reason: str
) -> AliasChange:
    """Make the previous champion the champion again, unless the aliases moved meanwhile."""
    state = registry.rollback(
        model_name, expected_revision=expected_revision, actor=actor, reason=reason
    )
    return _last_change(registry, model_name, "rolled_back", state.revision)


def _last_change(registry: Registry, model: str, event: str, revision: int) -> AliasChange:
    """Read back the history event the registry wrote for this change."""
    found = next(
        e
        for e in reversed(registry.history(model))
        if e["event"] == event and e["revision"] == revision
    )
    return AliasChange(
        model, event, found["from"], found["to"], revision, found["actor"], found["reason"]
    )


@task(name="save-champion-to-bentoml", cache_policy=NO_CACHE)
def save_champion_to_bentoml(registry: Registry, version: ModelVersion, *, flow: str) -> str:
    """Save the new champion into the BentoML model store (a no-op when already there).

    Runs after the alias moved, so a store that cannot take the model is a warning only: the
    flow goes on to ask serving to reload.
    """
    manifest = version.manifest
    labels = {
        "task": str(manifest.get("task", "")),
        "contract": str(manifest.get("contract", {}).get("name", "")),
        "promoted_by": flow,
    }
    saved = try_save_to_bentoml(version, registry, labels=labels)
    if saved.tag is None:
        get_run_logger().warning(saved.describe())
        return f"not saved ({saved.error})"
    get_run_logger().info("BentoML model store: %s", saved.tag)
    return saved.tag


@task(name="request-reload", cache_policy=NO_CACHE)
def request_reload(settings: Settings, timeout_s: float = 5.0) -> str:
    """POST the service's /admin/reload; a service that does not answer is only a warning."""
    log = get_run_logger()
    every = settings.reload_interval_s
    poll = f"serving picks the new champion up on its next poll (every {every:g} s)"
    if not settings.serving_url:
        log.info("MLOPS_SERVING_URL not set: %s", poll)
        return f"not requested: {poll}"
    if not settings.admin_token:
        log.warning("MLOPS_SERVING_URL is set but MLOPS_ADMIN_TOKEN is not: %s", poll)
        return f"not requested (no MLOPS_ADMIN_TOKEN): {poll}"
    url = f"{settings.serving_url.rstrip('/')}/admin/reload"
    headers = {"Authorization": f"Bearer {settings.admin_token}"}
    try:
        response = httpx.post(url, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        log.warning("reload request to %s failed (%s): %s", url, exc, poll)
        return f"{url} did not answer ({type(exc).__name__}): {poll}"
    if response.is_success:
        log.info("serving reloaded: %s", response.text[:500])
        return f"{url} answered {response.status_code}: {response.text[:500]}"
    log.warning("%s answered %s: %s", url, response.status_code, response.text[:500])
    return f"{url} answered {response.status_code}: {response.text[:500]}; {poll}"


@task(name="report-alias-change", cache_policy=NO_CACHE)
def report_alias_change(
    registry: Registry, change: AliasChange, *, bento_tag: str, reload: str
) -> None:
    """Publish the change (from, to, reason, revision) and the last history events."""
    title = "Promotion" if change.event == "promoted" else "Rollback"
    markdown = "\n".join(
        [
            f"# {title} of {change.model}",
            "",
            "| | |",
            "| --- | --- |",
            f"| from | {change.from_version or '(no champion)'} |",
            f"| to | **{change.to_version}** |",
            f"| reason | {change.reason or '-'} |",
            f"| actor | {change.actor} |",
            f"| registry revision | {change.revision} |",
            f"| BentoML model | `{bento_tag}` |",
            f"| serving reload | {reload} |",
        ]
    )
    summary = f"{change.model}: {change.from_version} -> {change.to_version} (r{change.revision})"
    create_markdown_artifact(key="alias-change", markdown=markdown, description=summary)
    create_table_artifact(
        key="registry-history",
        table=history_rows(registry.history(change.model)[-HISTORY_ROWS:]),
        description=f"Last {HISTORY_ROWS} registry events of {change.model}",
    )
    get_run_logger().info(summary)


def history_rows(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return history events as table rows, newest first."""
    keys = ("time", "event", "alias", "from", "to", "revision", "actor", "reason")
    return [{key: event.get(key) for key in keys} for event in reversed(events)]
