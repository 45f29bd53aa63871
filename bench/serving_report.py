"""Compare the serving benchmark's systems with each other and the targets; render markdown."""

from __future__ import annotations

from typing import Any

SYSTEMS = {
    "onnxruntime": "(1) onnxruntime in process",
    "bentoml_floor": "(0) BentoML, empty endpoint",
    "service_batching": "(2) service, batching on",
    "service_profile_in_process": "(2a) service, batching on, profiling in process",
    "service_2_workers": "(2b) service, batching on, 2 workers",
    "service_shadow": "(2c) service, batching on, with a shadow",
    "service_no_batching": "(3) service, batching off",
    "fastapi_pytorch": "(4) FastAPI + PyTorch eager",
}
SERVICES = (
    "service_batching", "service_profile_in_process", "service_2_workers", "service_shadow",
    "service_no_batching",
)  # fmt: skip
TARGET_SPEEDUP = 3.0  # (2) / (4) throughput, 1-record requests, 64 clients
TARGET_P99_MS = 50.0  # (2) p99 there
TARGET_P50_GAP_MS = 1.5  # (2) unloaded 1-record p50 minus (1)'s
TARGET_P99_BATCH_MS = 100.0  # (2) p99 with 64-record requests, 64 clients
TARGET_SHADOW_CPU = 1.3  # (2c) server CPU per request over (2)'s, the whole run


def compare(results: dict[str, Any]) -> dict[str, Any]:
    """Return (2)/(4) and (3)/(4) throughput ratios, (2)-(1) unloaded p50, and the targets."""
    base = results["fastapi_pytorch"]
    ratios: dict[str, Any] = {}
    for system in (s for s in SERVICES if s in results):
        ratios[system] = {
            records: {
                clients: round(cell["requests_per_s"] / base[records][clients]["requests_per_s"], 2)
                for clients, cell in cells.items()
            }
            for records, cells in results[system].items()
            if records.startswith("records_")
        }
    service = results["service_batching"]["records_1"]
    raw_p50 = results["onnxruntime"]["records_1"]["clients_1"]["p50_ms"]
    loaded = service["clients_64"]
    gap = round(service["clients_1"]["p50_ms"] - raw_p50, 3)
    speedup = ratios["service_batching"]["records_1"]["clients_64"]
    batch = results["service_batching"]["records_64"]["clients_64"]
    lost = results["service_batching"].get("log", {}).get("lost_from_log")
    shadow = shadow_cpu(results)
    return {
        "throughput_ratio_vs_baseline": ratios,
        **({"shadow_cpu_vs_service": shadow} if shadow else {}),
        "unloaded_1_record_p50_minus_onnxruntime_ms": gap,
        "targets": {
            "speedup_1_record_64_clients": _target(speedup, ">=", TARGET_SPEEDUP),
            "p99_ms_1_record_64_clients": _target(loaded["p99_ms"], "<=", TARGET_P99_MS),
            "errors_1_record_64_clients": _target(loaded["errors"], "<=", 0),
            "unloaded_p50_gap_ms": _target(gap, "<=", TARGET_P50_GAP_MS),
            "p99_ms_64_records_64_clients": _target(batch["p99_ms"], "<=", TARGET_P99_BATCH_MS),
            **({} if lost is None else {"log_rows_lost": _target(lost, "<=", 0)}),
            **(
                {"shadow_cpu_per_request_ratio": _target(shadow["run"], "<=", TARGET_SHADOW_CPU)}
                if shadow
                else {}
            ),
        },
    }


def shadow_cpu(results: dict[str, Any]) -> dict[str, Any] | None:
    """Return (2c)'s server CPU per request over (2)'s: per cell, and over the whole run."""
    if "service_shadow" not in results or "server_cpu_s" not in results["service_batching"]:
        return None
    shadow, base = results["service_shadow"], results["service_batching"]

    def per_request(system: dict[str, Any]) -> float:
        return float(system["server_cpu_s"]) / max(1, system["requests"])

    cells = {
        records: {
            clients: round(
                cell["server_cpu_ms_per_request"]
                / base[records][clients]["server_cpu_ms_per_request"],
                2,
            )
            for clients, cell in by_clients.items()
        }
        for records, by_clients in shadow.items()
        if records.startswith("records_")
    }
    return {
        "run": round(per_request(shadow) / per_request(base), 3),
        "service_cpu_ms_per_request": round(per_request(base) * 1000, 3),
        "shadow_cpu_ms_per_request": round(per_request(shadow) * 1000, 3),
        "cells": cells,
    }


def _target(value: float, op: str, goal: float) -> dict[str, Any]:
    met = value >= goal if op == ">=" else value <= goal
    return {"value": value, "goal": f"{op} {goal:g}", "met": bool(met)}


def to_markdown(result: dict[str, Any]) -> str:
    """Render the figures as a markdown report."""
    plan, machine = result["plan"], result["machine"]
    lines = [
        "# Serving benchmark",
        "",
        f"- Model {result['model']['name']} {result['model']['version']}; "
        f"onnxruntime on {result['results']['onnxruntime']['device']} with "
        f"{result['results']['onnxruntime']['onnx_threads']} thread(s) per call",
        f"- Machine: {machine['cpu_count']} CPUs, {machine['platform']}, Python "
        f"{machine['python']}; load average before/after "
        f"{machine['load_average_before'][0]} / {machine['load_average_after'][0]}",
        f"- Load: {result['load_generator']}, on the same machine; per cell "
        f"{plan['warmup_s']} s warm-up, then {plan['duration_s']} s or "
        f"{plan['max_requests']} requests. (1) emulates clients with threads calling "
        "session.run on prepared feeds (no HTTP, no validation, no features).",
        "",
        _features_line(result["results"]["onnxruntime"]),
        "",
        "| system | records/req | clients | req/s | records/s | p50 ms | p95 ms | p99 ms "
        "| errors | server CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for system, label in SYSTEMS.items():
        for records, cells in result["results"].get(system, {}).items():
            if not records.startswith("records_"):
                continue
            for clients, cell in cells.items():
                if not clients.startswith("clients_"):
                    continue
                lines.append(_row(label, records, clients, cell))
    lines += ["", *_log_lines(result["results"]), *_comparison_lines(result)]
    return "\n".join(lines) + "\n"


def _log_lines(results: dict[str, Any]) -> list[str]:
    """The prediction log and profiles of each service, counted after it stopped."""
    logs = {s: results[s]["log"] for s in SYSTEMS if "log" in results.get(s, {})}
    if not logs:
        return []
    lines = ["## Prediction log after the run", "",
             "Rows each service logged and profiled (counted after it stopped) against the records "
             "it answered over the whole run, warm-ups included.", "",
             "| system | answered | logged | profiled | lost from log | lost from profiles "
             "| shadow logged |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for system, log in logs.items():
        lines.append(
            f"| {SYSTEMS[system]} | {log['answered']} | {log['logged']} | {log['profiled']} | "
            f"{log['lost_from_log']} | {log['lost_from_profiles']} | "
            f"{log.get('shadow_logged', '')} |"
        )
    return [*lines, ""]


def _features_line(onnxruntime: dict[str, Any]) -> str:
    figures = ", ".join(
        f"{records.split('_')[1]} records {cells['with_features_clients_1']['p50_ms']:.3f} ms"
        for records, cells in onnxruntime.items()
        if records.startswith("records_")
    )
    return f"- (1) with the service's feature building (feed_values + run), p50: {figures}"


def _row(label: str, records: str, clients: str, c: dict[str, Any]) -> str:
    cpu = c.get("server_cpu_ms_per_request")
    return (
        f"| {label} | {records.split('_')[1]} | {clients.split('_')[1]} | "
        f"{c['requests_per_s']:.0f} | {c['records_per_s']:.0f} | {c['p50_ms']:.2f} | "
        f"{c['p95_ms']:.2f} | {c['p99_ms']:.2f} | {c['errors']} | "
        f"{'' if cpu is None else f'{cpu:.2f}'} |"
    )


def _comparison_lines(result: dict[str, Any]) -> list[str]:
    comparison = result["comparison"]
    ratios = comparison["throughput_ratio_vs_baseline"]
    lines = ["## Throughput vs (4), same run", "", "| system | records/req | 1 | 16 | 64 clients |",
             "|---|---|---|---|---|"]  # fmt: skip
    for system, by_records in ratios.items():
        for records, by_clients in by_records.items():
            values = " | ".join(f"{v:.2f}x" for v in by_clients.values())
            lines.append(f"| {SYSTEMS[system]} | {records.split('_')[1]} | {values} |")
    lines += _shadow_lines(comparison.get("shadow_cpu_vs_service"))
    lines += ["", "## Targets", ""]
    for name, target in comparison["targets"].items():
        mark = "met" if target["met"] else "NOT met"
        lines.append(f"- {name}: {target['value']} (goal {target['goal']}): {mark}")
    gap = comparison["unloaded_1_record_p50_minus_onnxruntime_ms"]
    lines.append(f"- (2) unloaded 1-record p50 minus (1): {gap} ms")
    return lines


def _shadow_lines(shadow: dict[str, Any] | None) -> list[str]:
    """(2c)'s server CPU per request against (2)'s, same run."""
    if not shadow:
        return []
    lines = ["", "## Shadow: server CPU per request vs (2), same run", "",
             f"Over the whole run (every cell, warm-ups included): (2) "
             f"{shadow['service_cpu_ms_per_request']} ms, (2c) "
             f"{shadow['shadow_cpu_ms_per_request']} ms per request: {shadow['run']:.2f}x.", "",
             "| records/req | 1 | 16 | 64 clients |", "|---|---|---|---|"]  # fmt: skip
    for records, by_clients in shadow["cells"].items():
        values = " | ".join(f"{v:.2f}x" for v in by_clients.values())
        lines.append(f"| {records.split('_')[1]} | {values} |")
    return lines
