"""A human approval before a promotion: the flow run pauses with a typed form in the Prefect UI.

The reviewer resumes the paused run from the UI (or `prefect flow-run resume`, or the API's
`resume_flow_run`) and fills in `PromotionDecision`. No decision within the timeout falls back to
the default the deployment configured: reject unless told otherwise, since an unreviewed model
replacing the champion is the riskier of the two mistakes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from prefect.artifacts import create_markdown_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.events import emit_event
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from prefect.logging import get_run_logger
from prefect.states import Running
from pydantic import Field

from mlops.registry.store import ModelVersion


class PromotionDecision(RunInput):
    """The form a paused promote-model run shows: approve or reject, and why."""

    approve: bool = Field(description="Promote this version to champion (on) or keep the champion.")
    reason: str = Field("", description="Why: recorded in the registry history and the artifact.")
    reviewer: str = Field("", description="Who decided (recorded as the promotion's actor).")


@dataclass(frozen=True)
class Approval:
    """What the review decided, and whether it came from a person or the timeout's default."""

    approved: bool
    reason: str
    reviewer: str
    timed_out: bool

    def describe(self) -> str:
        verdict = "approved" if self.approved else "rejected"
        who = "by default: no decision in time" if self.timed_out else f"by {self.reviewer or '?'}"
        return f"{verdict} {who}" + (f" ({self.reason})" if self.reason else "")


def await_approval(
    version: ModelVersion,
    champion: str | None,
    *,
    timeout_s: int,
    approve_on_timeout: bool,
    poll_s: int = 5,
) -> Approval:
    """Pause this flow run until a reviewer decides on `version`, or `timeout_s` passes.

    Called from the flow body (a pause stops the whole run). The artifact published first says
    what awaits the decision, so the reviewer sees it next to the form.
    """
    log = get_run_logger()
    subject = f"{version.model} {version.version}"
    metrics = version.manifest.get("metrics", {})
    rows = [f"| {name} | {value} |" for name, value in sorted(metrics.items()) if _plain(value)]
    create_markdown_artifact(
        key="promotion-approval",
        markdown="\n".join(
            [
                f"# Approve {subject} as champion?",
                "",
                f"Champion now: **{champion or '(none)'}**. Resume this run and fill in the form: "
                f"approve, or reject with a reason. No decision within {timeout_s} s: "
                f"{'approve' if approve_on_timeout else 'reject'}.",
                "",
                "| metric | value |",
                "| --- | --- |",
                *rows,
            ]
        ),
        description=f"{subject} awaits approval",
    )
    form = PromotionDecision.with_initial_data(
        description=f"Promote **{subject}** (champion now: {champion or 'none'})?", approve=False
    )
    log.info("waiting up to %d s for a decision on %s", timeout_s, subject)
    try:
        decision = pause_flow_run(
            wait_for_input=form, timeout=timeout_s, poll_interval=poll_s, key=_pause_key(version)
        )
    except FlowPauseTimeout:
        _run_again()
        approval = Approval(approve_on_timeout, f"no decision within {timeout_s} s", "", True)
    else:
        approval = Approval(
            decision.approve, decision.reason.strip(), decision.reviewer.strip(), False
        )
    log.info("%s: %s", subject, approval.describe())
    return approval


def report_rejection(version: ModelVersion, champion: str | None, approval: Approval) -> None:
    """Publish and emit that `version` was not promoted, and why."""
    subject = f"{version.model} {version.version}"
    create_markdown_artifact(
        key="alias-change",
        markdown="\n".join(
            [
                f"# {subject} not promoted",
                "",
                f"The review {approval.describe()}. The champion stays **{champion or '(none)'}**.",
            ]
        ),
        description=f"{subject}: {approval.describe()}",
    )
    emit_event(
        event="mlops.model.promotion-rejected",
        resource={
            "prefect.resource.id": f"mlops.model.{version.model}",
            "prefect.resource.name": version.model,
        },
        payload={
            "version": version.version,
            "champion": champion,
            "reason": approval.reason,
            "reviewer": approval.reviewer,
            "timed_out": approval.timed_out,
        },
    )


def _run_again() -> None:
    """Move this run from its expired pause back to running, so its last tasks may run."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:  # pragma: no cover - only called in a flow
        return
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(context.flow_run.id, Running(), force=True)


def _pause_key(version: ModelVersion) -> str:
    # Flow run input keys take lowercase letters, digits and dashes only
    raw = f"approve-{version.model}-{version.version}".lower()
    return re.sub(r"[^a-z0-9-]+", "-", raw)


def _plain(value: object) -> bool:
    return isinstance(value, int | float | str) and not isinstance(value, bool)
