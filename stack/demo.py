"""`mlops demo`: the continuous-training loop on a local stack, played day by day.

simulate -> train v1 (train-model deployment) -> serve it (Bento) -> replay days of traffic with
delayed labels -> monitor-model each day -> drift found -> the deployment trigger runs
train-model -> the gate promotes v2 -> serving reloads it; then a timeline and the URLs.

This is a composition root like the CLI: it drives Prefect through its API (imported lazily) and
the processes of `stack.services`; what it measures comes from the library.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from mlops.contract.loader import load_contract
from mlops.data.scenario import SimulationConfig
from mlops.data.simulate import simulate
from mlops.monitoring.loop_chart import save_loop_chart
from mlops.registry.store import Registry
from mlops.settings import REPO_ROOT, Settings
from stack import orchestration, replay
from stack import services as stack
from stack.timeline import DayRow, recovery, render_timeline, short_decision

STORES = ("registry", "data", "profiles", "predictions", "monitoring", "reports", "bentoml")


@dataclass(frozen=True)
class DemoConfig:
    """The story's size: a 20-day story, then 4 days of its last state, in which a catch-up
    retrain learns the new concept; v1 trained on the first days, the rest replayed."""

    days: int = 24
    story_days: int = 20
    rows_per_day: int = 3000
    train_days: int = 8
    label_delay_days: int = 1
    seed: int = 42
    max_epochs: int = 8
    cooldown_days: float = 2.5  # no retrain within this many replayed days of the last one
    release: str = "shadow"  # a retrained challenger that passes the gate shadows the champion
    prefect_port: int = 4200
    serve_port: int = 3000


@dataclass
class Stack:
    """The URLs of what the demo started."""

    api: str = ""
    ui: str = ""
    service: str = ""
    env: dict[str, str] = field(default_factory=dict)


class Demo:
    """Play the story against a fresh local stack under `settings.home`."""

    def __init__(self, settings: Settings, config: DemoConfig, console: Console) -> None:
        self.config, self.console = config, console
        self.home = Path(settings.home).resolve()
        # serving writes 1 s profile windows, so that each day's monitoring reads that day only
        self.settings = settings.model_copy(update={"home": str(self.home), "profile_window_s": 1})
        self.run_dir = self.home / "run"
        self.world = self.home / "demo-world"
        self.landed = Path(self.settings.data) / "simulated"
        self.sim = SimulationConfig(
            days=config.days,
            story_days=config.story_days,
            rows_per_day=config.rows_per_day,
            seed=config.seed,
            label_delay_days=config.label_delay_days,
        )
        self.stack = Stack()
        self.rows: list[DayRow] = []
        self.spans: dict[int, tuple[dt.datetime, dt.datetime]] = {}
        self.admin_token = secrets.token_hex(16)
        self.seen_runs: set[str] = set()  # train-model runs already accounted for
        self.retrains = 0  # train-model runs the automation started
        self.serve_port = config.serve_port
        self.day_seconds = 0.0  # wall-clock length of a replayed day (measured on the first)

    # -- the story ------------------------------------------------------------------------------

    def run(self) -> None:
        """Play the whole story; leave the server, workers and service running."""
        began = time.monotonic()
        self.reset()
        self.step(f"Simulating {self.sim.days} days x {self.sim.rows_per_day} transactions")
        simulate(str(self.world), self.sim)
        for index in range(self.config.train_days):
            self.land(index)
        self.start_orchestration()
        self.train_first_model()
        self.start_serving()
        for index in range(self.config.train_days, self.config.days):
            self.play_day(index)
        self.fill_live_metrics()
        wide = Console(width=max(self.console.width, 126))  # a narrower table wraps every cell
        wide.print(render_timeline(self.rows, self.sim))
        if said := recovery(self.rows, self.sim):
            self.console.print(said)
        chart = self.write_loop_chart()
        minutes = (time.monotonic() - began) / 60
        self.step(f"Done in {minutes:.1f} min. Left running (stop them with `make stop`):")
        self.console.print(f"  Prefect UI       {self.stack.ui}")
        self.console.print(f"  Bento Swagger UI {self.stack.service}/docs")
        self.console.print(f"  loop chart       {chart}")
        self.console.print(f"  logs and pids    {self.run_dir}")

    def reset(self) -> None:
        """Refuse to run over a live stack; start from empty stores."""
        if any(p.alive() for p in stack.recorded(self.run_dir)):
            raise stack.StackError(f"a stack already runs from {self.run_dir}: `mlops stop` first")
        stack.stop_all(self.run_dir)  # forget stale records
        self.step(f"Resetting the demo's state under {self.home}")
        for name in (*STORES, "prefect", "demo-world"):
            shutil.rmtree(self.home / name, ignore_errors=True)

    def land(self, index: int) -> None:
        """Land a day: its raw feed, and the labels that arrive on it."""
        day = self.sim.date_of(index)
        replay.land_partition(self.world, self.landed, "raw", day)
        replay.land_partition(self.world, self.landed, "labels", day)

    def start_orchestration(self) -> None:
        """Start the Prefect server, bootstrap it, deploy prefect.yaml, start the workers."""
        port = stack.port_or_free(self.config.prefect_port)
        self.serve_port = stack.port_or_free(self.config.serve_port)
        api = f"http://127.0.0.1:{port}/api"
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLOPS_"))}
        env = stack.prefect_env(base, self.home / "prefect", api) | {
            "MLOPS_HOME": str(self.home),
            "BENTOML_HOME": str(self.home / "bentoml"),
            "MLOPS_ADMIN_TOKEN": self.admin_token,
            # promote-model and rollback-model (from the UI) tell the service to reload at once
            "MLOPS_SERVING_URL": f"http://127.0.0.1:{self.serve_port}",
            # monitor-model must read the profile windows with serving's length
            "MLOPS_PROFILE_WINDOW_S": str(self.settings.profile_window_s),
            # serving polls the registry every second, and monitor-model leaves out the rows
            # of the first 3 polls after a rollout changes (a replayed day lasts seconds)
            "MLOPS_RELOAD_INTERVAL_S": "1",
            "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        }
        self.stack = Stack(api=api, ui=f"http://127.0.0.1:{port}", env=env)
        os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
        self.step(f"Starting the Prefect server on {self.stack.ui} (SQLite in {self.home}/prefect)")
        stack.start_prefect_server(self.run_dir, env, REPO_ROOT, port=port)
        self.step("Bootstrapping work pools, the gpu concurrency limit and variables")
        self.bootstrap()
        self.step("Deploying prefect.yaml (prefect deploy --all)")
        deploy = [str(stack.BIN / "prefect"), "--no-prompt", "deploy", "--all"]
        stack.run_checked(deploy, env, REPO_ROOT, "prefect deploy --all")
        for pool in stack.POOLS:
            self.step(f"Starting a process worker on {pool}")
            stack.start_worker(pool, self.run_dir, env, REPO_ROOT)

    def bootstrap(self) -> None:
        """Run deployments/bootstrap.py with the demo's variables (small, fast training)."""
        c = self.config
        values = {
            "mlops_train_data": {},  # every landed day
            "mlops_train_hyperparameters": {"max_epochs": c.max_epochs, "patience": 2},
            "mlops_train_gate": {"release": c.release},
            "mlops_monitor_labels_uri": str(self.landed / "labels"),
        }
        command = [sys.executable, str(REPO_ROOT / "deployments" / "bootstrap.py")]
        for name, value in values.items():
            command += ["--set", f"{name}={json.dumps(value)}"]
        for line in stack.run_checked(command, self.stack.env, REPO_ROOT, "bootstrap").splitlines():
            self.console.print(f"  {line}")

    def train_first_model(self) -> None:
        """Train v1 on every landed day through the train-model deployment."""
        self.step(f"Training v1 on days 1-{self.config.train_days} through train-model/train-model")
        state, result = self.run_deployment(
            "train-model/train-model", {"reason": "demo: the first model"}
        )
        if not state.is_completed() or not result.get("promoted"):
            raise stack.StackError(f"the first training did not promote a model: {state} {result}")
        self.console.print(f"  {result['verdict']}")

    def start_serving(self) -> None:
        """Serve the champion with `mlops serve` (polls the registry every second)."""
        port = self.serve_port
        env = self.stack.env | {"MLOPS_LOG_FLUSH_S": "1"}
        self.step(f"Serving the champion with BentoML on http://127.0.0.1:{port}")
        service = stack.start_service(self.run_dir, env, REPO_ROOT, port=port)
        self.stack.service = service.url or ""

    def play_day(self, index: int) -> None:
        """Land the day, send its traffic, monitor it, and follow a retrain it triggers."""
        began = time.monotonic()
        self.land(index)
        day = self.sim.date_of(index)
        trial = Registry(self.settings.registry).aliases(self.settings.model_name).rollout
        served = replay.send_traffic(self.stack.service, replay.day_records(self.world, day))
        start, end = served.span
        replay.wait_logged(self.settings, served)
        self.spans[index] = (start, end)
        row = DayRow(index, day, served.rows, served.rejected, sorted(served.versions))
        if trial:
            row.trial = f"{trial['version']} {trial['strategy']}"
        self.rows.append(row)
        monitor = self.monitor(index, start, end)
        row.drift_share = monitor.get("drift_share")
        row.drifted = list(monitor.get("drifted_features") or [])
        row.decision = short_decision(monitor)
        self.console.print(
            f"[bold]day {index + 1:2d}[/] {day}  served {served.rows} (refused {served.rejected}) "
            f"with {','.join(row.versions)}; {monitor.get('explanation', '')}"
        )
        self.day_seconds = self.day_seconds or time.monotonic() - began
        actions = [self.follow_rollout(monitor["rollout"])] if monitor.get("rollout") else []
        if monitor.get("event_emitted") and monitor.get("retrain"):
            row.action = "; ".join([a for a in actions if a] + [self.follow_retrain(monitor)])
        elif monitor.get("event_emitted"):  # a data-quality incident: nothing to wait for
            self.console.print(
                f"  [yellow]event {monitor['event']}[/]: no retrain on a broken feed"
            )
            row.action = "; ".join([a for a in actions if a] + ["incident raised, no retrain"])
        else:
            row.action = "; ".join(a for a in actions if a)

    def monitor(self, index: int, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        """Run monitor-model on the day's window; performance on yesterday's labelled rows."""
        since = self.spans.get(index - self.config.label_delay_days, (start, end))[0]
        thresholds = {
            "cooldown_hours": self.cooldown_hours(),
            "min_new_rows": 1000,
            "min_labelled_rows": 500,
            "performance_lookback_hours": (end - since).total_seconds() / 3600 + 0.001,
        }
        parameters = {
            "window": {"start": start.isoformat(), "end": end.isoformat()},
            "thresholds": thresholds,
            "labels_uri": str(self.landed / "labels"),
        }
        state, result = self.run_deployment("monitor-model/monitor-model", parameters)
        if not state.is_completed():
            raise stack.StackError(f"monitor-model failed on day {index + 1}: {state}")
        return result

    def cooldown_hours(self) -> float:
        """Return the policy's cooldown: `cooldown_days` replayed days after a triggered retrain.

        The policy's clock is the wall clock, on which a replayed day lasts `day_seconds`; v1
        was trained before the traffic began, so no cooldown holds before the first retrain.
        """
        if not self.retrains:
            return 0.0
        return self.config.cooldown_days * self.day_seconds / 3600

    # -- Prefect ----------------------------------------------------------------------------------

    def run_deployment(self, name: str, parameters: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Run a deployment through the workers; return its final state and result."""
        run = orchestration.run_deployment(name, parameters)
        self.seen_runs.add(str(run.id))
        return run.state, orchestration.result_of(run.state)

    def follow_retrain(self, monitor: dict[str, Any]) -> str:
        """Wait for the train-model run the automation started; wait for serving to reload."""
        self.console.print(f"  [yellow]event {monitor['event']}[/]: waiting for the automation")
        run = orchestration.new_run("train-model", self.seen_runs, timeout_s=120)
        if run is None:
            return "no train-model run started"
        self.retrains += 1
        self.seen_runs.add(str(run.id))
        self.console.print(f"  automation started train-model run {run.name!r}; training...")
        state = orchestration.wait_final(run.id, timeout_s=900)
        result = orchestration.result_of(state)
        if not state.is_completed():
            return f"retrain failed: {state.name}"
        version = result["version"]
        if result.get("on_trial"):
            strategy = result["on_trial"]["strategy"]
            self.console.print(
                f"  [cyan]{version} on trial as a {strategy}[/]: {result['verdict']}"
            )
            return f"{version} passed the gate: {strategy}"
        if not result.get("promoted"):
            self.console.print(f"  [red]{version} refused[/]: {result['verdict']}")
            return f"{version} refused"
        waited = self.wait_served(version)
        self.console.print(f"  [green]{version} promoted[/]; serving reloaded it in {waited:.0f} s")
        return f"{version} promoted"

    def follow_rollout(self, verdict: dict[str, Any]) -> str:
        """Say what monitor-model decided on the version on trial; follow a promotion it asked."""
        version, strategy, action = verdict["version"], verdict["strategy"], verdict["action"]
        self.console.print(f"  [cyan]{strategy} {version}: {action}[/], {verdict['reason']}")
        if action == "wait":
            return ""
        if action != "won":
            return f"{strategy} {version}: {action}"
        run = orchestration.new_run("promote-model", self.seen_runs, timeout_s=120)
        if run is None:
            return f"shadow {version} won; no promote-model run started"
        self.seen_runs.add(str(run.id))
        state = orchestration.wait_final(run.id, timeout_s=300)
        if not state.is_completed():
            return f"shadow {version} won; promotion failed: {state.name}"
        waited = self.wait_served(version)
        self.console.print(f"  [green]{version} promoted[/] by the shadow-won trigger; serving "
                           f"reloaded it in {waited:.0f} s")  # fmt: skip
        return f"shadow {version} won, promoted"

    def wait_served(self, version: str, timeout_s: float = 60) -> float:
        """Wait until the service answers with `version`; return the seconds it took."""
        began = time.monotonic()
        stack.wait_until(
            lambda: (
                httpx.get(f"{self.stack.service}/model", timeout=5).json().get("version") == version
            ),
            timeout_s,
            f"serving to reload {version}",
        )
        return time.monotonic() - began

    # -- measuring ------------------------------------------------------------------------------

    def fill_live_metrics(self) -> None:
        """Score each served day on its labels, for the days whose labels have landed."""
        contract = load_contract(self.settings.contract)
        registry = Registry(self.settings.registry)
        manifests = {
            v.version: v.manifest for v in registry.list_versions(self.settings.model_name)
        }
        for row in self.rows:
            start, end = self.spans[row.index]
            with warnings.catch_warnings():  # float32 probabilities: sklearn's log-loss warns
                warnings.simplefilter("ignore", UserWarning)
                row.live = replay.live_performance(
                    self.settings.store("predictions"),
                    self.settings.model_name,
                    str(self.landed / "labels"),
                    contract,
                    manifests,
                    start,
                    end,
                )

    def write_loop_chart(self) -> str:
        """Draw the monitoring history of the replayed days as loop.html (and loop.svg)."""
        from tasks.monitoring import read_history  # imports Prefect: lazily, like orchestration

        name = self.settings.model_name
        history = read_history(self.settings, name)
        events = Registry(self.settings.registry).history(name)
        return save_loop_chart(self.settings.store("reports"), name, history, events)

    def step(self, text: str) -> None:
        self.console.print(f"[bold cyan]==>[/] {text}")
