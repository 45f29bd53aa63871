"""`mlops backtest`: replay a labelled history under retraining policies, with a progress bar."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from mlops.settings import get_settings, quiet_telemetry

console = Console()


def backtest(
    data_uri: Annotated[str, typer.Option(help="CSV/Parquet file or folder, local or URL.")],
    contract: Annotated[str, typer.Option(help="Data contract YAML (path or URL).")],
    labels_uri: Annotated[str | None, typer.Option(help="Separate label files.")] = None,
    model_name: Annotated[str, typer.Option(help="Name of the models in the report.")] = (
        "backtest"
    ),
    initial_rows: Annotated[
        int | None, typer.Option(help="Rows the first model trains on.")
    ] = None,
    batch_rows: Annotated[int | None, typer.Option(help="Rows per replayed batch.")] = None,
    initial: Annotated[
        str | None,
        typer.Option(help="Initial span as a duration (90d, 12h, 2w); needs timestamps."),
    ] = None,
    batch: Annotated[str | None, typer.Option(help="Batch span as a duration (28d, 7d).")] = None,
    policies: Annotated[
        str, typer.Option(help="Comma-separated: static, every, periodic:K, triggered.")
    ] = "static,every,triggered",
    train_window_rows: Annotated[
        int | None, typer.Option(help="Retrain on the newest N rows (default: all rows seen).")
    ] = None,
    max_batches: Annotated[int | None, typer.Option(help="Stop after N batches.")] = None,
    out: Annotated[
        str | None, typer.Option(help="Report folder (default: <reports>/backtests/<name>-<time>).")
    ] = None,
    cache_dir: Annotated[
        str | None, typer.Option(help="Trainings cache (default: <MLOPS_HOME>/cache/backtest).")
    ] = None,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on epochs per training.")] = 25,
    accelerator: Annotated[str, typer.Option(help="auto, cpu or gpu.")] = "auto",
    recency_half_life: Annotated[
        float | None,
        typer.Option(help="Recency weights: half-life as a share of the rows learned (e.g. 1)."),
    ] = None,
    drift_share: Annotated[float, typer.Option(help="triggered: share of features.")] = 0.15,
    consecutive_windows: Annotated[int, typer.Option(help="triggered: batches in a row.")] = 2,
    max_metric_drop: Annotated[float, typer.Option(help="triggered: allowed metric drop.")] = 0.05,
    min_labelled_rows: Annotated[int, typer.Option(help="triggered: rows to judge.")] = 500,
    min_new_rows: Annotated[int, typer.Option(help="triggered: new rows needed.")] = 1000,
    cooldown_hours: Annotated[float, typer.Option(help="triggered: event-time cooldown.")] = 24.0,
    max_regression: Annotated[float, typer.Option(help="gate: allowed loss vs champion.")] = 0.005,
) -> None:
    """Replay a labelled history batch by batch under several retraining policies, side by side."""
    quiet_telemetry()
    from mlops.backtest.build import build_backtest, default_out, local_dir, publish_report
    from mlops.contract.loader import load_contract
    from mlops.data.sources import load_dataset
    from mlops.monitoring.thresholds import RetrainPolicy
    from mlops.release.gate import GatePolicy
    from mlops.training.evaluate import PRIMARY_METRIC
    from mlops.training.train import TrainParams

    first, size = _span(initial_rows, initial, "initial"), _span(batch_rows, batch, "batch")
    settings = get_settings()
    try:
        spec = load_contract(contract)
        frame = load_dataset(data_uri, spec, labels_uri=labels_uri).labeled_frame()
    except (OSError, ValueError) as exc:  # missing files, unreadable data, an invalid contract
        console.print(f"[red]cannot read the history:[/] {exc}")
        raise typer.Exit(2) from exc
    retrain = RetrainPolicy(
        drift_share=drift_share, consecutive_windows=consecutive_windows,
        max_metric_drop=max_metric_drop, min_labelled_rows=min_labelled_rows,
        min_new_rows=min_new_rows, metric=PRIMARY_METRIC[spec.task],
        cooldown=dt.timedelta(hours=cooldown_hours),
    )  # fmt: skip
    try:
        runner, specs = build_backtest(
            frame, spec, initial=first, batch=size, policies=policies,
            params=TrainParams(max_epochs=max_epochs, accelerator=accelerator,
                               recency_half_life=recency_half_life),
            work_dir=local_dir(settings, "backtests") / model_name,
            cache_dir=Path(cache_dir) if cache_dir else local_dir(settings, "cache/backtest"),
            model_name=model_name, data_uri=data_uri, train_window_rows=train_window_rows,
            max_batches=max_batches, gate=GatePolicy(max_regression=max_regression),
            retrain=retrain, prefer_gpu=settings.prefer_gpu,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    total = len(runner.plan.batches) * len(specs)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task("initial model", total=total)

        def advance(policy: str, done: int, batches: int) -> None:
            bar.update(task, advance=1, description=f"{policy}: batch {done}/{batches}")

        result = runner.run(specs, progress=advance)
    written = publish_report(result, out or default_out(settings, model_name))
    _print_summary(result)
    console.print(f"report: {written['markdown']}\nplot:   {written['html']}")


def _span(rows: int | None, duration: str | None, name: str) -> str:
    if (rows is None) == (duration is None):
        raise typer.BadParameter(f"give exactly one of --{name}-rows N or --{name} DURATION")
    return str(rows) if rows is not None else str(duration)


def _print_summary(result: dict) -> None:
    table = Table(title=f"{result['metric']} per batch, by policy")
    columns = ("mean", "mean_second_half", "retrains", "promotions", "refused", "failed")
    for column in ("policy", "mean", "2nd half", "retrains", "promoted", "refused", "failed", "s"):
        table.add_column(column)
    for name, policy in result["policies"].items():
        cells = ["-" if policy[c] is None else f"{policy[c]:.4g}" for c in columns]
        table.add_row(name, *cells, f"{policy['compute_s']:.0f}")
    console.print(table)
