"""Benchmark serving over loopback: onnxruntime alone, the service, and a hand-written baseline.

On one model, machine and load generator, with 1- and 64-record requests at 1, 16 and 64
concurrent keep-alive clients, measures throughput, latency percentiles and errors of
(1) onnxruntime in process on the same feeds, without HTTP (the limit; concurrency emulated by
threads), (2) the service (`bentoml serve`, micro-batching on), (3) the service with batching off,
(4) FastAPI + uvicorn serving the PyTorch pipeline eagerly (bench/baseline_fastapi.py); and, to
tell what limits (2), (0) the same `bentoml serve` stack with an empty endpoint
(bench/floor_service.py) and (2b) the service with 2 worker processes; and (2c) the service
with a shadow (a second version scoring every served record off the response path), whose server
CPU per request is compared with (2)'s. Setup trains one model,
registers its ONNX export as champion for (2)/(3) and keeps its PyTorch weights for (4). Writes
bench/results/serving.{json,md}. `--quick` runs short cells.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import servers
from bench.loadgen import CellResult, run_cell
from bench.serving_report import compare, to_markdown
from bench.serving_setup import MODEL, Setup, prepare, prepare_shadow
from stack.processes import Child

RESULTS = Path(__file__).resolve().parent / "results"
RECORDS = (1, 64)
CLIENTS = (1, 16, 64)


@dataclass(frozen=True)
class Plan:
    """How long each cell runs: seconds measured, most requests, seconds of warm-up."""

    duration_s: float
    max_requests: int
    warmup_s: float


def bench_onnxruntime(setup: Setup, plan: Plan) -> dict[str, Any]:
    """Time session.run on the service's feeds, alone and from concurrent threads."""
    from mlops.contract.api_model import RecordColumns, build_record_model
    from mlops.contract.loader import load_contract
    from mlops.inference.model import load_from_registry
    from mlops.registry.store import Registry
    from mlops.settings import DEFAULT_CONTRACT, get_settings

    settings = get_settings()
    model = load_from_registry(
        Registry(str(setup.work / "registry")), MODEL, "champion",
        prefer_gpu=settings.prefer_gpu, intra_op_threads=settings.onnx_threads,
    )  # fmt: skip
    record = build_record_model(load_contract(DEFAULT_CONTRACT))
    cells: dict[str, Any] = {"device": model.device, "onnx_threads": settings.onnx_threads}
    for n in RECORDS:
        validated = [record.model_validate(r) for r in setup.records[:n]]
        columns = RecordColumns.from_records(validated, tuple(record.model_fields)).values
        feed, _ = model.feed_values(columns)
        features = _timed_loop(lambda c=columns: model.predict_values(c), 1, plan)
        cells[f"records_{n}"] = {
            f"clients_{c}": _timed_loop(lambda f=feed: model.session.run(None, f), c, plan)
            for c in CLIENTS
        } | {"with_features_clients_1": features}
    return cells


def _timed_loop(call: Any, threads: int, plan: Plan) -> dict[str, Any]:
    """Call from `threads` threads until the plan's time or count is spent; summarise."""
    deadline = time.perf_counter() + plan.warmup_s
    while time.perf_counter() < deadline:
        call()
    per_thread = max(1, plan.max_requests // threads)

    def loop(_: int) -> list[float]:
        samples, stop = [], time.perf_counter() + plan.duration_s
        while len(samples) < per_thread and time.perf_counter() < stop:
            started = time.perf_counter()
            call()
            samples.append((time.perf_counter() - started) * 1000)
        return samples

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        latencies = [s for samples in pool.map(loop, range(threads)) for s in samples]
    seconds = time.perf_counter() - started
    return CellResult(len(latencies), 0, seconds, latencies).summary()


def bench_server(server: Child, setup: Setup, plan: Plan) -> dict[str, Any]:
    """Drive one server through every (records, clients) cell; count the records answered."""
    cells: dict[str, Any] = {"answered_records": 0, "requests": 0, "server_cpu_s": 0.0}
    for n in RECORDS:
        body = json.dumps({"records": setup.records[:n]}).encode()
        cells[f"records_{n}"] = {}
        for c in CLIENTS:
            cpu, client_cpu = server.cpu_seconds(), time.process_time()
            result = asyncio.run(
                run_cell(
                    f"{server.url}/predict", body, clients=c, records_per_request=n,
                    duration_s=plan.duration_s, max_requests=plan.max_requests,
                    warmup_s=plan.warmup_s,
                )
            )  # fmt: skip
            summary = result.summary()
            cells["answered_records"] += (result.sent - result.errors) * n
            answered = max(1, result.sent)  # CPU is counted over the warm-up too
            cells["requests"] += answered
            cells["server_cpu_s"] += server.cpu_seconds() - cpu
            summary["server_cpu_ms_per_request"] = round(
                (server.cpu_seconds() - cpu) * 1000 / answered, 3
            )
            summary["client_cpu_ms_per_request"] = round(
                (time.process_time() - client_cpu) * 1000 / answered, 3
            )
            cells[f"records_{n}"][f"clients_{c}"] = summary
            print(f"  {n:>2} records x {c:>2} clients: {_line(summary)}", flush=True)
    return cells


def _line(s: dict[str, Any]) -> str:
    return (
        f"{s['requests_per_s']:>8.1f} req/s  p50 {s['p50_ms']:.2f}  p99 {s['p99_ms']:.2f} ms"
        f"  errors {s['errors']}"
    )


def _check_answer(url: str, setup: Setup, *, shadow: bool = False) -> None:
    import httpx

    answer = httpx.post(f"{url}/predict", json={"records": setup.records[:2]}, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    assert body["model_version"] == setup.version and len(body["predictions"]) == 2, body
    if shadow:
        rollout = httpx.get(f"{url}/model", timeout=30).json()["rollout"]
        assert rollout is not None and rollout["loaded"], rollout


def _systems(setup: Setup) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Return each HTTP system's (command with a {port} slot, extra environment)."""
    bentoml = servers.bentoml_command("serving.service:PredictionService")
    return {
        "bentoml_floor": (servers.bentoml_command("bench.floor_service:Floor"), {}),
        "service_batching": (bentoml, {"MLOPS_BATCHING": "true"}),
        "service_profile_in_process": (
            bentoml,
            {"MLOPS_BATCHING": "true", "MLOPS_PROFILE_PROCESS": "false"},
        ),
        "service_no_batching": (bentoml, {"MLOPS_BATCHING": "false"}),
        "service_2_workers": (bentoml, {"MLOPS_BATCHING": "true", "MLOPS_WORKERS": "2"}),
        "service_shadow": (
            bentoml,
            {"MLOPS_BATCHING": "true", "MLOPS_REGISTRY_URL": str(setup.work / "registry-shadow")},
        ),
        "fastapi_pytorch": (
            servers.uvicorn_command("bench.baseline_fastapi:app"),
            {"BENCH_TORCH_MODEL": str(setup.torch_path), "BENCH_MODEL_VERSION": setup.version},
        ),
    }


def run_servers(setup: Setup, plan: Plan) -> dict[str, Any]:
    """Start each HTTP system in turn, check one answer, drive every cell, stop it."""
    results = {}
    for name, (command, extra) in _systems(setup).items():
        home = setup.work / name
        home.mkdir(parents=True, exist_ok=True)
        env = servers.quiet_env(**{
            "MLOPS_HOME": str(home), "MLOPS_REGISTRY_URL": str(setup.work / "registry"),
            "BENTOML_HOME": str(home / "bentoml"), **extra,
        })  # fmt: skip
        print(f"{name}:", flush=True)
        with servers.running(name, command, env, setup.work / f"{name}.log") as server:
            if name != "bentoml_floor":
                _check_answer(server.url, setup, shadow=name == "service_shadow")
            results[name] = bench_server(server, setup, plan)
        if name.startswith("service_"):  # stopped: its logger has flushed what it had
            results[name]["log"] = log_check(home, setup, results[name]["answered_records"] + 2)
    return results


def log_check(home: Path, setup: Setup, answered: int) -> dict[str, int]:
    """Count the rows a stopped service logged and profiled against the records it answered.

    `answered` includes the two records of the answer check.
    """
    from datetime import UTC, datetime, timedelta

    from mlops.monitoring.prediction_store import read_prediction_log, read_window_profiles
    from mlops.monitoring.window import served_rows

    versions = read_prediction_log(str(home / "predictions"), MODEL)["model_version"]
    logged = int((versions == setup.version).sum())
    shadow_logged = int((versions != setup.version).sum())
    now = datetime.now(UTC)
    view = read_window_profiles(
        str(home / "profiles"), MODEL, setup.version, now - timedelta(days=1), now, 300
    )
    profiled = 0 if view is None else served_rows(view)
    return {
        "answered": answered, "logged": logged, "profiled": profiled,
        "lost_from_log": answered - logged, "lost_from_profiles": answered - profiled,
        **({"shadow_logged": shadow_logged} if shadow_logged else {}),
    }  # fmt: skip


def run(plan: Plan, work: Path) -> dict[str, Any]:
    """Set up, run every system, and return the figures with their comparisons."""
    load_before = os.getloadavg()
    started = time.perf_counter()
    setup = prepare(work)
    prepare_shadow(setup)
    print(f"setup done in {time.perf_counter() - started:.0f}s; onnxruntime in process", flush=True)
    results = {"onnxruntime": bench_onnxruntime(setup, plan), **run_servers(setup, plan)}
    return {
        "model": {"name": MODEL, "version": setup.version},
        "plan": plan.__dict__,
        "load_generator": "aiohttp, closed loop, one keep-alive connection per client",
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()],
        },
        "results": results,
        "comparison": compare(results),
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    """Parse arguments, run, and write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short cells (a smoke run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    plan = Plan(1.5, 3000, 0.3) if args.quick else Plan(5.0, 20000, 1.0)
    with tempfile.TemporaryDirectory(prefix="mlops-bench-serving-") as work:
        result = run(plan, Path(work))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(result, indent=2))
    (args.out / "serving.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
