"""promote-model, rollback-model: check -> move the champion alias -> package -> reload serving."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from prefect import flow
from pydantic import Field

from mlops.registry.rollouts import CANARY_STEPS
from mlops.registry.store import Registry
from mlops.settings import get_settings
from tasks.approval import await_approval, report_rejection
from tasks.promotion import (
    check_version,
    promote_version,
    report_alias_change,
    request_reload,
    rollback_champion,
    save_champion_to_bentoml,
)
from tasks.rollout import start_rollout


@flow(name="promote-model", log_prints=True)
def promote_model_flow(
    version: str,
    model_name: str | None = None,
    reason: str = "manual promotion",
    actor: str = "prefect-ui",
    approval: bool = False,
    approval_timeout_s: int = 3600,
    approve_on_timeout: bool = False,
    strategy: Literal["direct", "shadow", "canary"] = "direct",
    canary_share: Annotated[float, Field(gt=0, lt=1)] = CANARY_STEPS[0],
) -> dict[str, Any]:
    """Make a registered version the champion after checking that it loads and answers.

    With `strategy` shadow or canary the version is put on trial instead: serving scores the
    same records with it (shadow) or answers `canary_share` of the records with it (canary), and
    monitor-model promotes it, widens it or ends it on what it sees.

    Args:
        version: Registry version to promote ("v3"), or an alias ("challenger").
        model_name: Registry name of the model (default: MLOPS_MODEL_NAME).
        reason: Why, recorded in the registry history.
        actor: Who, recorded in the registry history.
        approval: Pause after the checks until a reviewer approves or rejects in the Prefect UI.
        approval_timeout_s: How long to wait for that decision.
        approve_on_timeout: What no decision in time means (default: reject).
        strategy: direct (the champion now), shadow or canary (a trial on live traffic first).
        canary_share: The canary's first share of the records (it widens in steps).
    """
    settings = get_settings()
    registry = Registry(settings.registry)
    model_name = model_name or settings.model_name

    # 1. Check: ONNX checksum, onnxruntime load and probe
    checked = check_version(registry, model_name, version, purpose="promote")

    # 2. Optionally, a person decides (the run pauses with a form in the UI)
    if approval:
        if approval_timeout_s < 1:
            raise ValueError(f"approval_timeout_s must be at least 1, not {approval_timeout_s}")
        champion = registry.aliases(model_name).aliases.get("champion")
        decided = await_approval(
            checked,
            champion,
            timeout_s=approval_timeout_s,
            approve_on_timeout=approve_on_timeout,
        )
        if not decided.approved:
            report_rejection(checked, champion, decided)
            return {
                "model": model_name,
                "event": "rejected",
                "from_version": champion,
                "to_version": champion,
                "candidate": checked.version,
                "approval": decided.describe(),
            }
        actor = decided.reviewer or actor
        reason = f"{reason}; {decided.describe()}"

    # 3. A trial on live traffic: put it beside the champion and tell serving
    if strategy != "direct":
        share = canary_share if strategy == "canary" else 0.0
        trial = start_rollout(registry, checked, strategy, share=share, actor=actor, reason=reason)
        return {
            "model": model_name,
            "event": f"{strategy} started",
            **trial.to_dict(),
            "reload": request_reload(settings),
        }

    # 4. Move the alias (the registry writes its history), package, tell serving
    change = promote_version(registry, checked, actor=actor, reason=reason)
    tag = save_champion_to_bentoml(registry, checked, flow="promote-model")
    reload = request_reload(settings)

    # 5. Report
    report_alias_change(registry, change, bento_tag=tag, reload=reload)
    return {**asdict(change), "bento_tag": tag, "reload": reload}


@flow(name="rollback-model", log_prints=True)
def rollback_model_flow(
    model_name: str | None = None,
    reason: str = "manual rollback",
    actor: str = "prefect-ui",
) -> dict[str, Any]:
    """Make the previous champion the champion again, after checking that it still loads.

    Args:
        model_name: Registry name of the model (default: MLOPS_MODEL_NAME).
        reason: Why, recorded in the registry history.
        actor: Who, recorded in the registry history.
    """
    settings = get_settings()
    registry = Registry(settings.registry)
    model_name = model_name or settings.model_name
    revision = registry.aliases(model_name).revision

    # 1. Check the version `previous` points at
    checked = check_version(registry, model_name, "previous", purpose="roll back to")

    # 2. Swap champion and previous unless the aliases moved since, package, tell serving
    change = rollback_champion(
        registry, model_name, expected_revision=revision, actor=actor, reason=reason
    )
    tag = save_champion_to_bentoml(registry, checked, flow="rollback-model")
    reload = request_reload(settings)

    # 3. Report
    report_alias_change(registry, change, bento_tag=tag, reload=reload)
    return {**asdict(change), "bento_tag": tag, "reload": reload}
