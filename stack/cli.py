"""The `mlops` command: simulate data, run the flows in-process, serve, show the registry's state.

This is the composition root for local work: the flow commands (stack/cli_flows.py) import
Prefect lazily. A failing command prints one line, `error: <message>`, and exits 1.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from mlops.settings import get_settings, quiet_telemetry
from stack.backtest_cli import backtest
from stack.cli_errors import CliGroup
from stack.cli_flows import monitor, promote, rollback, score, train, tune
from stack.cli_replay import replay

app = typer.Typer(
    cls=CliGroup,
    help="Continuous training on Prefect: simulate, train, promote, serve, monitor.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks and Prefect's logs of failed runs.")
    ] = False,
) -> None:
    """Continuous training on Prefect: simulate, train, promote, serve, monitor."""
    # The option is read where a command fails (CliGroup) and by the flow commands.


@app.command()
def simulate(
    out: Annotated[str | None, typer.Option(help="Output folder or URL.")] = None,
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 30,
    rows_per_day: Annotated[int, typer.Option(help="Transactions per day.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    scenario: Annotated[str, typer.Option(help="drift or stable.")] = "drift",
    label_delay_days: Annotated[int, typer.Option(help="Days until labels arrive.")] = 3,
    start_date: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")] = "2026-01-01",
) -> None:
    """Write simulated card transactions, delayed labels and the scenario's ground truth."""
    from mlops.data.scenario import SimulationConfig
    from mlops.data.simulate import simulate as run

    out = out or f"{get_settings().data.rstrip('/')}/simulated"
    config = SimulationConfig(
        days=days,
        rows_per_day=rows_per_day,
        seed=seed,
        label_delay_days=label_delay_days,
        start_date=dt.date.fromisoformat(start_date),
        scenario=scenario,  # type: ignore[arg-type]  # checked by SimulationConfig
    )
    result = run(out, config, progress=True)
    console.print(f"[bold]{result.rows}[/] rows ({result.fraud_rows} fraud) in {result.out}")
    for event in result.events:
        console.print(f"  {event.start} .. {event.end}  {event.kind:16} {event.description}")


for command in (train, tune, promote, rollback, monitor, score, replay, backtest):
    app.command()(command)


@app.command()
def status(
    model_name: Annotated[str | None, typer.Argument(help="Registry model name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show the champion, its metrics and files, and the versions in the registry."""
    from mlops.registry.store import AliasNotSetError, Registry

    settings = get_settings()
    name = model_name or settings.model_name
    registry = Registry(settings.registry)
    versions = registry.list_versions(name)
    state = registry.aliases(name)
    aliases = state.aliases
    if as_json:
        doc = {"model": name, "aliases": aliases, "rollout": state.rollout,
               "versions": [v.manifest for v in versions]}  # fmt: skip
        console.print_json(json.dumps(doc, default=str))
        return
    if not versions:
        console.print(f"No versions of {name!r} in {settings.registry}. Run `mlops train`.")
        raise typer.Exit(1)
    try:
        champion = registry.get(name, "champion")
        console.print(f"[bold green]Champion[/]: {name} {champion.version} at {champion.uri}")
    except AliasNotSetError:
        console.print(f"[yellow]No champion yet for {name!r}[/]")
    if state.rollout:
        trial = state.rollout
        share = f", {trial['share']:.0%} of the records" if trial["strategy"] == "canary" else ""
        console.print(f"[bold cyan]On trial[/]: {trial['version']} as a {trial['strategy']}{share}"
                      f" since {str(trial['started_at'])[:19]}")  # fmt: skip
    table = Table("version", "aliases", "created", "device", "metrics", title=f"{name} versions")
    for v in versions:
        tags = ", ".join(a for a, target in aliases.items() if target == v.version)
        metrics = ", ".join(f"{k} {val:.4f}" for k, val in v.manifest.get("metrics", {}).items())
        device = v.manifest.get("training", {}).get("device", "?")
        table.add_row(v.version, tags, v.manifest.get("created_at", "")[:19], device, metrics)
    console.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 3000,
) -> None:
    """Serve the registry's champion with `bentoml serve` (hot-reloads on promotion).

    This process becomes `bentoml serve` (exec): a signal to its pid reaches the server. Relative
    MLOPS_* paths are made absolute first, so they mean here what they mean for `mlops train`.
    """
    import sys

    from mlops.registry.store import Registry
    from mlops.settings import REPO_ROOT

    quiet_telemetry()
    settings = get_settings()
    env = absolute_paths(dict(os.environ), settings.home)
    settings = settings.model_copy(update={"home": env["MLOPS_HOME"]})
    name = settings.model_name
    try:
        champion = Registry(settings.registry).get(name, "champion").version
        console.print(f"Serving {name} {champion} on http://{host}:{port} (docs at /docs)")
    except LookupError:
        console.print(
            f"[yellow]{name} has no champion in {settings.registry} yet:[/] /predict answers "
            "503 until one is promoted (`mlops train`, or `mlops promote VERSION`; `mlops status` "
            "lists the versions)"
        )
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:PredictionService",
               "--host", host, "--port", str(port)]  # fmt: skip
    sys.stdout.flush()
    os.chdir(REPO_ROOT)  # bentoml imports the service from the checkout
    os.execve(sys.executable, command, env)


def absolute_paths(env: dict[str, str], home: str) -> dict[str, str]:
    """Return `env` with MLOPS_HOME set and every relative local MLOPS_* path made absolute."""
    env = {**env, "MLOPS_HOME": env.get("MLOPS_HOME") or home}
    for key, value in env.items():
        local = (
            key == "MLOPS_HOME"
            or key.endswith("_URL")
            or key in ("MLOPS_CONTRACT", "MLOPS_SERVE_MODEL_DIR")
        )
        if key.startswith("MLOPS_") and local and value and "://" not in value:
            env[key] = os.path.abspath(value)
    return env


@app.command("build-bento")
def build_bento(
    version: Annotated[str, typer.Option(help="Registry version (or alias) to pin.")],
    model_name: Annotated[str | None, typer.Option(help="Registry model name.")] = None,
) -> None:
    """Build a Bento that serves one registry version, pinned at build time."""
    from serving.packaging import build_pinned_bento

    quiet_telemetry()
    settings = get_settings()
    bento = build_pinned_bento(settings, model_name or settings.model_name, version)
    console.print(f"Built Bento [bold]{bento}[/]; run it with `bentoml serve {bento}`")


def _deployments_module(name: str) -> Any:
    """Load a module of deployments/ (a folder of scripts, not an installed package)."""
    import importlib.util

    from mlops.settings import REPO_ROOT

    path = REPO_ROOT / "deployments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"mlops_deployments_{name}", path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@app.command()
def bootstrap(
    pool_type: Annotated[
        str, typer.Option("--type", help="Work pool type: process, docker or kubernetes.")
    ] = "process",
    gpu_slots: Annotated[int, typer.Option(help="Slots of the `gpu` concurrency limit.")] = 1,
    set_values: Annotated[
        list[str] | None, typer.Option("--set", help="Set a variable: NAME=JSON (repeatable).")
    ] = None,
) -> None:
    """Create the work pools, the `gpu` concurrency limit and the variables (idempotent)."""
    import asyncio

    quiet_telemetry()
    module = _deployments_module("bootstrap")
    values = module.parse_values(set_values or [])
    for line in asyncio.run(module.bootstrap(pool_type, gpu_slots, values)):
        console.print(line)


@app.command()
def deploy(
    workdir: Annotated[
        str | None,
        typer.Option(help="Directory flow runs start in (default: this checkout)."),
    ] = None,
) -> None:
    """Deploy every flow of prefect.yaml (`prefect deploy --all`, no prompts)."""
    import subprocess
    import sys
    from pathlib import Path

    from mlops.settings import REPO_ROOT

    quiet_telemetry()
    # prefect.yaml's pull step enters `{{ $PWD }}`, read when deploying.
    env = os.environ | {"PREFECT_CLI_PROMPT": "false", "PWD": workdir or str(REPO_ROOT)}
    command = [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"]
    raise typer.Exit(subprocess.call(command, cwd=REPO_ROOT, env=env))


@app.command()
def demo(
    days: Annotated[int, typer.Option(help="Days in the simulated world (>= story days).")] = 24,
    story_days: Annotated[
        int,
        typer.Option(
            help="Days over which the story's events are placed (>= 12); later days "
            "keep its last state."
        ),
    ] = 20,
    rows_per_day: Annotated[int, typer.Option(help="Transactions per day.")] = 3000,
    train_days: Annotated[int, typer.Option(help="Days v1 trains on; the rest are replayed.")] = 8,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on epochs per training.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the simulated world.")] = 42,
    prefect_port: Annotated[int, typer.Option(help="Prefect UI/API port if free.")] = 4200,
    serve_port: Annotated[int, typer.Option(help="Prediction API port if free.")] = 3000,
    release: Annotated[
        str,
        typer.Option(
            help="How a retrained challenger that passes the gate is released: "
            "shadow (judged on live labels first), canary or direct."
        ),
    ] = "shadow",
) -> None:
    """Play the continuous-training loop on a local stack and leave it running (`mlops stop`)."""
    from mlops.registry.rollouts import STRATEGIES
    from stack.demo import Demo, DemoConfig

    if release not in STRATEGIES:
        raise typer.BadParameter(f"must be one of {', '.join(STRATEGIES)}", param_hint="--release")
    quiet_telemetry()
    config = DemoConfig(
        days=days,
        story_days=story_days,
        rows_per_day=rows_per_day,
        train_days=train_days,
        max_epochs=max_epochs,
        seed=seed,
        prefect_port=prefect_port,
        serve_port=serve_port,
        release=release,
    )
    Demo(get_settings(), config, console).run()


@app.command()
def stop() -> None:
    """Stop what `mlops demo` left running (pids in <MLOPS_HOME>/run)."""
    from pathlib import Path

    from stack.services import stop_all

    run_dir = Path(get_settings().home) / "run"
    stopped = stop_all(run_dir)
    console.print(f"stopped {', '.join(stopped)}" if stopped else f"nothing runs from {run_dir}")


if __name__ == "__main__":
    app()
