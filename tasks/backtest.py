"""Tasks of the backtest-policy flow: plan, first model, one task per policy, report."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from flows.parameters import ReplaySpec
from mlops.backtest.build import build_backtest, default_out, local_dir, publish_report
from mlops.backtest.policies import PolicySpec
from mlops.backtest.replay import Backtest
from mlops.backtest.report import render_markdown, summary_rows
from mlops.backtest.trainings import Training
from mlops.contract.spec import Contract
from mlops.data.sources import LoadedData
from mlops.monitoring.thresholds import RetrainPolicy
from mlops.release.gate import GatePolicy
from mlops.settings import Settings
from mlops.training.train import TrainParams


@task(name="plan-backtest", cache_policy=NO_CACHE)
def plan_backtest(
    loaded: LoadedData,
    contract: Contract,
    replay: ReplaySpec,
    training: TrainParams,
    gate: GatePolicy,
    retrain: RetrainPolicy,
    *,
    settings: Settings,
    model_name: str,
    data_uri: str,
    max_failing_share: float,
) -> tuple[Backtest, tuple[PolicySpec, ...]]:
    """Cut the labelled rows into the initial rows and batches; check the policies."""
    runner, specs = build_backtest(
        loaded.labeled_frame(), contract, initial=replay.initial, batch=replay.batch,
        policies=replay.policies, params=training,
        work_dir=local_dir(settings, "backtests") / model_name,
        cache_dir=local_dir(settings, "cache/backtest"), model_name=model_name,
        data_uri=data_uri, train_window_rows=replay.train_window_rows,
        max_batches=replay.max_batches, gate=gate, retrain=retrain,
        max_failing_share=max_failing_share, prefer_gpu=settings.prefer_gpu,
    )  # fmt: skip
    plan = runner.plan
    create_table_artifact(
        key="backtest-plan",
        table=[
            {
                "item": "initial rows",
                "value": f"{plan.initial_rows} ({plan.initial_start} to {plan.initial_end})",
            },
            {"item": "batches", "value": f"{len(plan.batches)} of {plan.batch_spec}"},
            {"item": "train window", "value": replay.train_window_rows or "all rows seen"},
            {"item": "policies", "value": ", ".join(s.name for s in specs)},
        ],
        description=f"Replay of {data_uri} under {len(specs)} policies",
    )
    return runner, specs


@task(name="train-initial-model", cache_policy=NO_CACHE)
def train_initial_model(runner: Backtest) -> Training:
    """Train (or reuse) the first model every policy starts from."""
    initial = runner.initial()
    get_run_logger().info(
        "initial model on %d rows: %s", initial.rows, "reused" if initial.reused else "trained"
    )
    return initial


@task(name="replay-policy", cache_policy=NO_CACHE, task_run_name="replay-{spec.name}")
def replay_policy(runner: Backtest, spec: PolicySpec, initial: Training) -> dict[str, Any]:
    """Replay one policy over every batch; publish its per-batch decisions."""
    log = get_run_logger()

    def progress(policy: str, done: int, total: int) -> None:
        if done == total or done % max(total // 10, 1) == 0:
            log.info("%s: %d of %d batches", policy, done, total)

    result = runner.replay(spec, initial, progress)
    create_table_artifact(
        key=f"backtest-{re.sub(r'[^a-z0-9-]', '-', spec.name)}",
        table=[
            {k: b.get(k) for k in ("index", "start", "rows", "version", "metric", "decision")}
            for b in result["batches"]
        ],
        description=f"{spec.name} ({spec.description}): mean {result['mean']}, "
        f"{result['retrains']} retrains, {result['promotions']} promoted",
    )
    return result


@task(name="publish-backtest", cache_policy=NO_CACHE)
def publish_backtest(
    runner: Backtest, results: dict[str, Any], *, out: str | None, settings: Settings
) -> dict[str, Any]:
    """Write backtest.json/.md/.svg/.html and publish the summary as artifacts."""
    result = runner.document(results, dt.datetime.now(dt.UTC))
    written = publish_report(result, out or default_out(settings, runner.model_name))
    rows = summary_rows(result)
    create_table_artifact(key="backtest-summary", table=rows, description=_headline(result))
    create_markdown_artifact(
        key="backtest-report",
        markdown=render_markdown(result, plot_name=None)
        + f"\n\nPlot and tables: `{written['html']}`\n",
        description=_headline(result),
    )
    html = written["html"]
    create_link_artifact(
        key="backtest-plot",
        link=html if "://" in html else f"file://{html}",
        link_text="backtest plot (HTML)",
        description="Metric per batch for each policy, with retrain and refusal markers",
    )
    get_run_logger().info(_headline(result))
    return {"report": written, "summary": rows, "trainings": result["trainings"]}


def _headline(result: dict[str, Any]) -> str:
    best = max(
        (p for p in result["policies"].items() if p[1]["mean"] is not None),
        key=lambda p: p[1]["mean"] if result["higher_is_better"] else -p[1]["mean"],
        default=None,
    )
    if best is None:
        return f"no policy had a defined {result['metric']}"
    return f"best mean {result['metric']}: {best[0]} ({best[1]['mean']:.4g})"
