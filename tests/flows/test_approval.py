"""promote-model with approval: the run pauses with a form; approve, reject, bad input, timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter
from prefect.client.schemas.objects import FlowRun
from prefect.flow_runs import resume_flow_run

from flows.promotion import promote_model_flow
from mlops.registry.store import Registry
from tests.support.artifacts import run_artifacts
from tests.support.models import MODEL

pytestmark = pytest.mark.slow


class Background:
    """A promote-model run with approval, in a thread, so the test can act as the reviewer."""

    def __init__(self, **parameters: Any) -> None:
        self.state: Any = None
        self.error: BaseException | None = None
        self.started = time.time()
        self.thread = threading.Thread(target=self._run, args=(parameters,), daemon=True)
        self.thread.start()

    def _run(self, parameters: dict[str, Any]) -> None:
        try:
            self.state = promote_model_flow(
                version="v2", approval=True, return_state=True, **parameters
            )
        except BaseException as exc:  # surfaced by result()
            self.error = exc

    def result(self, timeout_s: float = 90) -> Any:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "promote-model did not finish"
        if self.error is not None:
            raise self.error
        return self.state.result()


def _paused_run(since: float, timeout_s: float = 60) -> FlowRun:
    """Wait for the paused promote-model run created after `since`, with its form saved."""
    deadline = time.time() + timeout_s
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["promote-model"])),
                flow_run_filter=FlowRunFilter(),
            )
            for run in runs:
                keyset = run.state.state_details.run_input_keyset if run.state else None
                if (
                    run.state is not None
                    and run.state.is_paused()
                    and keyset
                    and run.created.timestamp() >= since - 1
                    and _form_saved(client, run.id, keyset)
                ):
                    return run
            time.sleep(0.3)
    raise AssertionError("no promote-model run paused for approval")


def _form_saved(client: Any, run_id: UUID, keyset: dict[str, str]) -> bool:
    try:
        client.read_flow_run_input(run_id, keyset["schema"])
    except Exception:
        return False
    return True


def _review(registry: Registry, decide: Callable[[UUID], None], **parameters: Any) -> Any:
    run = Background(**parameters)
    paused = _paused_run(run.started)
    assert registry.aliases(MODEL).aliases["champion"] == "v1"  # nothing moves while it waits
    decide(paused.id)
    return run, paused


def test_approved_promotion_records_the_reviewer(prefect_server: None, registry: Registry) -> None:
    run, paused = _review(
        registry,
        lambda run_id: resume_flow_run(
            run_id, run_input={"approve": True, "reason": "recall up 4 points", "reviewer": "ana"}
        ),
    )
    result = run.result()

    assert registry.aliases(MODEL).aliases == {"champion": "v2", "previous": "v1"}
    assert result["to_version"] == "v2" and result["actor"] == "ana"
    last = registry.history(MODEL)[-1]
    assert last["actor"] == "ana"
    assert "approved by ana (recall up 4 points)" in last["reason"]
    artifacts = run_artifacts(paused.id)
    assert f"# Approve {MODEL} v2 as champion?" in artifacts["promotion-approval"]
    assert "| to | **v2** |" in artifacts["alias-change"]


def test_rejected_promotion_keeps_the_champion(prefect_server: None, registry: Registry) -> None:
    def reject(run_id: UUID) -> None:
        # A form whose field has the wrong type is refused, and the run stays paused
        with pytest.raises(Exception, match="approve"):
            resume_flow_run(run_id, run_input={"approve": "maybe", "reason": "unsure"})
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        assert state is not None and state.is_paused()
        resume_flow_run(
            run_id, run_input={"approve": False, "reason": "bias review pending", "reviewer": "bo"}
        )

    run, paused = _review(registry, reject)
    result = run.result()

    assert registry.aliases(MODEL).aliases == {"champion": "v1"}
    assert result["event"] == "rejected" and result["candidate"] == "v2"
    assert result["approval"] == "rejected by bo (bias review pending)"
    assert registry.history(MODEL)[-1]["event"] == "promoted"  # v1's promotion, nothing after
    assert "v2 not promoted" in run_artifacts(paused.id)["alias-change"]


@pytest.mark.parametrize("approve_on_timeout", [False, True])
def test_no_decision_falls_back_to_the_configured_default(
    prefect_server: None, registry: Registry, approve_on_timeout: bool
) -> None:
    result = promote_model_flow(
        version="v2", approval=True, approval_timeout_s=2, approve_on_timeout=approve_on_timeout
    )

    champion = registry.aliases(MODEL).aliases["champion"]
    if approve_on_timeout:
        assert champion == "v2"
        assert "approved by default: no decision in time" in registry.history(MODEL)[-1]["reason"]
    else:
        assert champion == "v1"
        assert result["event"] == "rejected"
        assert result["approval"].startswith("rejected by default: no decision in time")
