"""The Prefect UI in headless Chromium: a custom run of train-model from its form, to Completed;
the drift report's verdict, chart and table where users look; a promotion approved in the form
of its paused run.

Needs Debian's `chromium` (apt-get install -y chromium) and Python's `playwright`
(pip install playwright; never `playwright install`: it drives the system Chromium).
The screenshots stay in test-artifacts/e2e/.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from mlops.contract.loader import load_contract
from mlops.monitoring.drift import feature_drift
from mlops.monitoring.drift_view import CHART_WIDTH, drift_headline, drift_markdown, saved_at
from mlops.monitoring.profile import profile_frame
from mlops.release.build import train_and_register
from mlops.settings import DEFAULT_CONTRACT, REPO_ROOT
from mlops.training.train import TrainParams
from tests.support.e2e import MODEL, E2EStack
from tests.support.service import simulated_rows

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "e2e"
REASON = "browser: custom run from the UI form"


@pytest.fixture(scope="module")
def browser() -> Any:
    """Headless system Chromium driven by playwright (skipped when either is missing)."""
    if not CHROMIUM.exists() and shutil.which("chromium") is None:
        pytest.skip("no Chromium: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="no playwright: `pip install playwright` into .venv"
    )
    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=args)
        try:
            yield chromium
        finally:
            chromium.close()


def test_custom_run_of_train_model_from_the_ui_form_reaches_completed(
    prefect_api: E2EStack, browser: Any
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    deployment = read_deployment("train-model/train-model")
    wait_until_idle(timeout_s=300)  # a retrain an earlier test triggered must not race the form
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    try:
        # The deployment's page, its Run menu, the custom run form
        page.goto(f"{prefect_api.ui}/deployments/deployment/{deployment.id}")
        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_text("Custom run", exact=True).click()
        page.wait_for_url(re.compile(r".*/run(\?.*)?$"))

        # Change two parameters: the reason, and the epochs inside `training`
        form_field(page, "reason").locator("textarea").fill(REASON)
        epochs = form_field(page, "Max Epochs").locator("input[type=number]")
        epochs.fill("1")
        page.screenshot(path=str(ARTIFACTS / "custom-run-form.png"), full_page=True)
        submit = page.get_by_role("button", name="Submit", exact=True)
        submit_once_more_if_refused(
            page, submit, lambda: bool(runs_with_reason(REASON)), shot="custom-run-refused"
        )

        run = wait_for_run(REASON, timeout_s=240, e2e=prefect_api)
        assert run.state.is_completed(), f"{run.state}\n{prefect_api.logs()}"
        assert run.parameters["training"]["max_epochs"] == 1

        # The run's page shows Completed
        page.goto(f"{prefect_api.ui}/runs/flow-run/{run.id}")
        page.get_by_text("Completed").first.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / "flow-run-completed.png"), full_page=True)
    except BaseException:  # pytest.fail too
        page.screenshot(path=str(ARTIFACTS / "failure.png"), full_page=True)
        raise
    finally:
        page.close()
    # (a state's result() is a coroutine inside playwright's event loop: read the registry)
    (version,) = [
        v for v in prefect_api.registry.list_versions(MODEL)
        if v.manifest["flow_run_id"] == str(run.id)
    ]  # fmt: skip
    assert version.manifest["reason"] == REASON
    assert version.manifest["parameters"]["max_epochs"] == 1


def submit_once_more_if_refused(
    page: Any, button: Any, done: Any, *, shot: str, wait_s: float = 30.0
) -> None:
    """Click `button` (a form's Submit); click it once more if the server refused the request.

    Prefect's server on SQLite answers a write with an error when the database stays locked
    ("database is locked" in its log, seen under load while workers heartbeat); the UI then shows
    "Something went wrong", keeps the form, and nothing happened: a user submits again, and so
    does this, once, when `done()` still says nothing happened. A second refusal fails the test.
    """
    button.click()
    refused = page.get_by_text("Something went wrong")
    deadline = time.time() + wait_s
    while time.time() < deadline:
        if done():
            return
        if refused.count():
            page.screenshot(path=str(ARTIFACTS / f"{shot}.png"), full_page=True)
            if not done() and button.count():
                button.click()
            return
        time.sleep(1)


def is_paused(run_id: Any) -> bool:
    """Tell whether the flow run is still paused."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        state = client.read_flow_run(run_id).state
    return state is not None and state.is_paused()


def train_model_runs() -> list[Any]:
    """The runs of the train-model deployment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["train-model"]))
        )


def runs_with_reason(reason: str) -> list[Any]:
    """The train-model runs whose `reason` parameter is `reason`."""
    return [r for r in train_model_runs() if r.parameters.get("reason") == reason]


def form_field(page: Any, label: str, within: Any = None) -> Any:
    """Return the schema form's property whose label starts with `label` (in `within`)."""
    title = page.locator(".schema-form-property__label", has_text=re.compile(f"^{label}"))
    return (within or page).locator(".schema-form-property", has=title).last


def read_deployment(name: str) -> Any:
    """Read a deployment by flow/deployment name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def wait_until_idle(timeout_s: float) -> None:
    """Wait until no flow run of the stack is pending or running (SQLite serialises writers)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    busy = [StateType.PENDING, StateType.RUNNING]
    deadline = time.time() + timeout_s
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            active = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=busy))
                )
            )
            if not active:
                return
            time.sleep(2)


def wait_for_run(reason: str, timeout_s: float, e2e: E2EStack) -> Any:
    """Wait for the train-model run with this reason to reach a final state; return it."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        mine = runs_with_reason(reason)
        if mine and mine[0].state is not None and mine[0].state.is_final():
            return mine[0]
        time.sleep(2)
    seen = [(r.name, r.parameters.get("reason"), r.state_name) for r in train_model_runs()]
    pytest.fail(f"the UI's run did not finish in {timeout_s} s; runs: {seen}\n{e2e.logs()}")


def test_the_drift_report_artifact_shows_its_verdict_chart_and_table_in_the_ui(
    prefect_api: E2EStack, browser: Any
) -> None:
    """The report monitor-model writes needs no file: the UI renders its embedded chart."""
    contract = load_contract(DEFAULT_CONTRACT)
    rows = simulated_rows(days=3, rows_per_day=1000)
    shifted = rows.assign(amount=rows["amount"] * 1.6)  # one feature drifts, the rest do not
    report = feature_drift(profile_frame(rows), profile_frame(shifted), contract)
    assert report.drifted_features == ("amount",)
    markdown = drift_markdown(report, "the reference rows", saved_at("s3://b/r.html", "whylogs"))
    artifact_id = show_markdown("drift-report", markdown)

    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{prefect_api.ui}/artifacts/artifact/{artifact_id}")
        page.get_by_text(drift_headline(report)).wait_for()
        image = page.locator('img[src^="data:image/svg+xml;base64,"]').first
        image.wait_for()
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(ARTIFACTS / "drift-report.png"), full_page=True)
        # the browser decoded the chart: an image of the SVG's own size, not a broken icon
        size = image.evaluate("img => [img.complete, img.naturalWidth, img.naturalHeight]")
        assert size[0] and size[1] == CHART_WIDTH and size[2] > 100, size
        cells = page.locator("td").all_inner_texts()
        assert cells[:2] == ["drifted", "amount"], cells[:12]
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure-drift-report.png"), full_page=True)
        raise
    finally:
        page.close()


def show_markdown(key: str, markdown: str) -> str:
    """Publish `markdown` as a markdown artifact through the API; return the artifact's id.

    Through the client, not an in-process flow run: a flow run here would start this process's
    events worker against this package's server, and the worker (one per process, whatever the
    API URL) would keep sending the next packages' events to that server once it is gone.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import ArtifactCreate

    with get_client(sync_client=True) as client:
        artifact = client.create_artifact(ArtifactCreate(key=key, type="markdown", data=markdown))
    return str(artifact.id)


def test_a_promotion_waits_for_approval_given_in_the_paused_runs_form(
    prefect_api: E2EStack, browser: Any
) -> None:
    """promote-model with approval pauses on a worker; the reviewer approves in the UI's form."""
    from prefect.client.orchestration import get_client

    registry = prefect_api.registry
    candidate = train_and_register(
        registry, MODEL, load_contract(DEFAULT_CONTRACT), simulated_rows(days=4, seed=3),
        TrainParams(max_epochs=1, seed=3, accelerator="cpu"),
        actor="tests", reason="a candidate to approve", data_uri="test", prefer_gpu=False,
    ).version.version  # fmt: skip
    champion = registry.aliases(MODEL).aliases.get("champion")
    wait_until_idle(timeout_s=300)
    parameters = {"version": candidate, "approval": True, "approval_timeout_s": 600}
    with get_client(sync_client=True) as client:  # (run_deployment is async inside playwright)
        run = client.create_flow_run_from_deployment(
            read_deployment("promote-model/promote-model").id, parameters=parameters
        )
    wait_paused_for_input(run.id, timeout_s=180, e2e=prefect_api)
    assert registry.aliases(MODEL).aliases.get("champion") == champion  # nothing moved yet

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    try:
        page.goto(f"{prefect_api.ui}/runs/flow-run/{run.id}")
        page.get_by_role("button", name="Resume", exact=True).click()
        modal = page.locator(".p-modal__card")
        modal.get_by_text(f"Promote {MODEL} {candidate}").wait_for()
        form_field(page, "Approve", within=modal).get_by_role("switch").click()
        form_field(page, "Reason", within=modal).locator("textarea").fill("browser: looks right")
        form_field(page, "Reviewer", within=modal).locator("textarea").fill("ana")
        page.screenshot(path=str(ARTIFACTS / "approval-form.png"), full_page=True)
        submit_once_more_if_refused(
            page, modal.get_by_role("button", name="Submit", exact=True),
            lambda: not is_paused(run.id), shot="approval-refused",
        )  # fmt: skip
        with get_client(sync_client=True) as client:
            deadline = time.time() + 120
            while time.time() < deadline:
                state = client.read_flow_run(run.id).state
                if state is not None and state.is_final():
                    break
                time.sleep(1)
        assert state is not None and state.is_completed(), f"{state}\n{prefect_api.logs()}"
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failure-approval.png"), full_page=True)
        raise
    finally:
        page.close()
    assert registry.aliases(MODEL).aliases["champion"] == candidate
    last = registry.history(MODEL)[-1]
    assert (last["event"], last["to"], last["actor"]) == ("promoted", candidate, "ana")
    assert "approved by ana (browser: looks right)" in last["reason"]


def wait_paused_for_input(run_id: Any, timeout_s: float, e2e: E2EStack) -> None:
    """Wait until the run is paused and its form's schema is saved (the UI shows it then)."""
    from prefect.client.orchestration import get_client

    deadline = time.time() + timeout_s
    with get_client(sync_client=True) as client:
        while time.time() < deadline:
            state = client.read_flow_run(run_id).state
            keyset = state.state_details.run_input_keyset if state is not None else None
            if state is not None and state.is_paused() and keyset:
                try:
                    client.read_flow_run_input(run_id, keyset["schema"])
                    return
                except Exception:  # the schema is saved just after the pause
                    pass
            if state is not None and state.is_final():
                pytest.fail(f"promote-model ended before asking: {state}\n{e2e.logs()}")
            time.sleep(1)
    pytest.fail(f"promote-model did not pause for approval in {timeout_s} s\n{e2e.logs()}")
