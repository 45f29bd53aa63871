"""`mlops train`, `tune`, `promote`, `rollback`, `monitor`, `score`: run a flow in this process.

Each command imports its flow lazily (importing Prefect takes seconds) and runs it like a
function; a temporary Prefect server starts when PREFECT_API_URL is not set.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Annotated, Any

import fsspec
import typer
from rich.console import Console

from mlops.settings import Settings, get_settings, quiet_telemetry
from stack.cli_errors import debug_enabled, quiet_failed_runs

console = Console()


def run_flow(ctx: typer.Context, flow: Callable[..., Any], **parameters: Any) -> Any:
    """Run a flow in-process; Prefect's own logs of a failed run stay off the console."""
    with quiet_failed_runs(debug_enabled(ctx)):
        return flow(**parameters)


def train(
    ctx: typer.Context,
    data_uri: Annotated[
        str | None, typer.Option(help="Data file/folder (default: simulated).")
    ] = None,
    labels_uri: Annotated[str | None, typer.Option(help="Separate label files.")] = None,
    contract: Annotated[str | None, typer.Option(help="Contract YAML.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
    start: Annotated[str | None, typer.Option(help="Window start (ISO time).")] = None,
    end: Annotated[str | None, typer.Option(help="Window end (ISO time, exclusive).")] = None,
    last_rows: Annotated[int | None, typer.Option(help="Keep only the newest N rows.")] = None,
    last: Annotated[
        str | None,
        typer.Option(help="Keep only the span before the newest row (90d, 12h, 2w)."),
    ] = None,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on epochs.")] = 25,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    recency_half_life: Annotated[
        float | None,
        typer.Option(help="Recency weights: half-life as a share of the rows learned (e.g. 1)."),
    ] = None,
    holdout_fraction: Annotated[
        float, typer.Option(help="Newest share of rows held out to evaluate and gate.")
    ] = 0.15,
    floor: Annotated[
        float | None, typer.Option(help="Gate: bound on the metric (default 0.70 AUC).")
    ] = None,
    max_regression: Annotated[
        float, typer.Option(help="Gate: allowed loss vs the champion, in metric units.")
    ] = 0.005,
) -> None:
    """Run the train-model flow in this process and print the outcome.

    Without --data-uri and a window, it trains on the simulated days before the simulator's
    first drift event (the rows a first champion should learn).
    """
    quiet_telemetry()
    from flows.parameters import DataSpec, GateSpec
    from flows.training import train_model_flow
    from mlops.backtest.plan import Span
    from mlops.training.train import TrainParams

    settings = get_settings()
    if not (data_uri or start or end or last_rows or last):
        end = default_train_end(settings)
    span = Span.parse(last) if last else None
    if span is not None and span.duration is None:
        raise typer.BadParameter(f"{last!r} is not a duration (e.g. 90d)", param_hint="--last")
    data = DataSpec(
        contract=contract,
        data_uri=data_uri,
        labels_uri=labels_uri,
        start=dt.datetime.fromisoformat(start) if start else None,
        end=dt.datetime.fromisoformat(end) if end else None,
        last_rows=last_rows,
        last=None if span is None else span.duration,
    )
    training = TrainParams(
        max_epochs=max_epochs, accelerator=accelerator, holdout_fraction=holdout_fraction,
        recency_half_life=recency_half_life,
    )  # fmt: skip
    gate = GateSpec(floor=floor, max_regression=max_regression)
    result = run_flow(
        ctx, train_model_flow, model_name=model_name, data=data, training=training, gate=gate
    )
    console.print(f"\n[bold]{result['verdict']}[/]")
    from stack.cli import status

    name = model_name or settings.model_name
    if not has_champion(settings, name):
        model = f" --model-name {name}" if model_name else ""
        console.print(
            f"[yellow]No champion to serve yet.[/] Next: `mlops promote {result['version']}"
            f"{model}` serves {result['version']} anyway; or train again on other rows "
            "(`mlops train --start ISO --end ISO` or `--last-rows N`)."
        )
    status(model_name)


def default_train_end(settings: Settings) -> str | None:
    """Return the start of the simulator's first event, when training on its default output.

    A simulated world drifts in its later days; a first model learns the days before that.
    Returns None (all rows) without a scenario file or without events (scenario `stable`).
    """
    path = f"{settings.data.rstrip('/')}/simulated/scenario.json"
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        return None
    with fs.open(root, "r") as fh:
        events = json.load(fh).get("events", [])
    if not events:
        return None
    first = min(dt.date.fromisoformat(e["start"]) for e in events)
    console.print(
        f"Training on the simulated days before its first event (until {first}); "
        "--start/--end/--last-rows choose other rows."
    )
    return first.isoformat()


def has_champion(settings: Settings, model_name: str) -> bool:
    """Return whether the registry has a champion for `model_name`."""
    from mlops.registry.store import Registry

    return "champion" in Registry(settings.registry).aliases(model_name).aliases


def promote(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="Registry version (v3) or alias (challenger).")],
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
    reason: Annotated[str, typer.Option(help="Why, recorded in the history.")] = "manual promotion",
    strategy: Annotated[
        str, typer.Option(help="direct, or shadow / canary: a trial on live traffic first.")
    ] = "direct",
    canary_share: Annotated[
        float, typer.Option(help="A canary's first share of the records.")
    ] = 0.05,
) -> None:
    """Make a registered version the champion, or put it on trial (the promote-model flow)."""
    quiet_telemetry()
    from flows.promotion import promote_model_flow

    change = run_flow(
        ctx, promote_model_flow, version=version, model_name=model_name, reason=reason,
        actor="mlops-cli", strategy=strategy, canary_share=canary_share,
    )  # fmt: skip
    if strategy != "direct":
        share = f", {change['share']:.0%} of the records" if strategy == "canary" else ""
        console.print(
            f"[bold]{change['model']}[/] {change['version']} on trial as a {strategy} beside "
            f"{change['champion']}{share}; serving reload: {change['reload']}"
        )
        return
    _print_change(change)


def rollback(
    ctx: typer.Context,
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
    reason: Annotated[str, typer.Option(help="Why, recorded in the history.")] = "manual rollback",
) -> None:
    """Make the previous champion the champion again (the rollback-model flow, in this process)."""
    quiet_telemetry()
    from flows.promotion import rollback_model_flow

    change = run_flow(
        ctx, rollback_model_flow, model_name=model_name, reason=reason, actor="mlops-cli"
    )
    _print_change(change)


def _print_change(change: dict[str, Any]) -> None:
    before = change["from_version"] or "none"
    console.print(
        f"[bold]{change['model']}[/] champion: {before} -> [bold green]{change['to_version']}[/] "
        f"({change['event']}); serving reload: {change['reload']}"
    )


def monitor(
    ctx: typer.Context,
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
    labels_uri: Annotated[
        str | None,
        typer.Option(help="Label files to measure live performance (default: simulated)."),
    ] = None,
    window_hours: Annotated[float, typer.Option(help="Hours of served traffic to check.")] = 1.0,
    contract: Annotated[str | None, typer.Option(help="Contract YAML.")] = None,
) -> None:
    """Check the champion's served traffic for drift and decay (the monitor-model flow)."""
    quiet_telemetry()
    from flows.monitoring import monitor_model_flow
    from flows.parameters import MonitorWindow

    settings = get_settings()
    if labels_uri is None:
        simulated = f"{settings.data.rstrip('/')}/simulated/labels"
        fs, root = fsspec.core.url_to_fs(simulated)
        labels_uri = simulated if fs.exists(root) else None
    window = MonitorWindow(minutes=max(1, round(window_hours * 60)))
    result = run_flow(
        ctx, monitor_model_flow, model_name=model_name, window=window, labels_uri=labels_uri,
        contract=contract,
    )  # fmt: skip
    console.print(f"[bold]{result['explanation']}[/]")
    if result.get("drift_report"):
        console.print(f"drift report: {result['drift_report']}")


def score(
    ctx: typer.Context,
    data_uri: Annotated[
        str | None, typer.Option(help="CSV/Parquet file or folder (default: simulated raw).")
    ] = None,
    out: Annotated[
        str | None,
        typer.Option(help="Output folder/URL (default: <MLOPS_HOME>/predictions-batch)."),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
    contract: Annotated[str | None, typer.Option(help="Contract YAML.")] = None,
) -> None:
    """Score every file of a data URI with the champion (the score-batch flow, on Dask)."""
    quiet_telemetry()
    from flows.scoring import score_batch_flow

    settings = get_settings()
    result = run_flow(
        ctx, score_batch_flow, data_uri=data_uri, model_name=model_name, contract=contract,
        output_uri=out,
    )  # fmt: skip
    where = out or f"{settings.home.rstrip('/')}/predictions-batch"
    console.print(
        f"{result['model']} {result['version']} scored {result['rows']} rows: "
        f"{result['valid']} valid, {result['quarantined']} quarantined -> {where}"
    )


def tune(
    ctx: typer.Context,
    data_uri: Annotated[
        str | None, typer.Option(help="Data file/folder (default: simulated).")
    ] = None,
    contract: Annotated[str | None, typer.Option(help="Contract YAML.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
    trials: Annotated[int, typer.Option(help="Trials this run adds to the study.")] = 16,
    parallel: Annotated[int, typer.Option(help="Trials at once (Dask worker processes).")] = 2,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on epochs per trial.")] = 25,
    storage: Annotated[
        str | None, typer.Option(help="Study database URL (default: SQLite under MLOPS_HOME).")
    ] = None,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
) -> None:
    """Search hyperparameters, then register and gate the best (the tune-model flow)."""
    quiet_telemetry()
    from flows.parameters import DataSpec, SearchSpec
    from flows.tuning import tune_model_flow
    from mlops.training.train import TrainParams

    end = None if data_uri else default_train_end(get_settings())
    result = run_flow(
        ctx, tune_model_flow, model_name=model_name,
        data=DataSpec(contract=contract, data_uri=data_uri,
                      end=dt.datetime.fromisoformat(end) if end else None),
        training=TrainParams(max_epochs=max_epochs, accelerator=accelerator),
        search=SearchSpec(n_trials=trials, parallel=parallel, storage=storage),
    )  # fmt: skip
    counts = result["trials"]
    console.print(
        f"study: {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} "
        f"failed; best trial {result['best_trial']} (val_loss {result['best_value']:.4f})"
    )
    console.print(f"[bold]{result['verdict']}[/]")
