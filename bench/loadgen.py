"""A bounded closed-loop HTTP load generator: N keep-alive clients posting one body in a loop.

Each client sends its next request when the previous answer is read. A cell stops after
`max_requests` measured requests or `duration_s` seconds, whichever comes first, after a warm-up
that is not measured.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import numpy as np


@dataclass
class CellResult:
    """What one (server, records per request, clients) cell measured."""

    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    records_per_request: int = 1
    error_samples: list[str] = field(default_factory=list)
    sent: int = 0  # every request answered, warm-up and the in-flight tail included

    def summary(self) -> dict[str, Any]:
        """Return throughput, latency percentiles and errors as a JSON-ready dict."""
        lat = np.asarray(self.latencies_ms or [float("nan")])
        rps = self.requests / self.seconds if self.seconds else 0.0
        return {
            "requests": self.requests,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(rps, 1),
            "records_per_s": round(rps * self.records_per_request, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 3),
            "p95_ms": round(float(np.percentile(lat, 95)), 3),
            "p99_ms": round(float(np.percentile(lat, 99)), 3),
            "error_samples": self.error_samples[:3],
        }


async def _client(
    session: aiohttp.ClientSession, url: str, body: bytes, state: dict[str, Any]
) -> None:
    headers = {"Content-Type": "application/json"}
    while not state["stop"]:
        started = time.perf_counter()
        try:
            async with session.post(url, data=body, headers=headers) as response:
                payload = await response.read()
                ok = response.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            ok, payload = False, repr(exc).encode()
        elapsed = (time.perf_counter() - started) * 1000
        state["sent"] += 1
        if not state["measuring"]:
            continue
        state["latencies"].append(elapsed)
        if not ok:
            state["errors"] += 1
            if len(state["samples"]) < 3:
                state["samples"].append(payload[:200].decode("utf-8", "replace"))
        if len(state["latencies"]) >= state["max_requests"]:
            state["stop"] = True


async def run_cell(
    url: str,
    body: bytes,
    *,
    clients: int,
    records_per_request: int,
    duration_s: float,
    max_requests: int,
    warmup_s: float,
    timeout_s: float = 30.0,
) -> CellResult:
    """Drive `clients` concurrent keep-alive connections; return the measured window."""
    state: dict[str, Any] = {
        "stop": False, "measuring": False, "latencies": [], "errors": 0, "samples": [],
        "max_requests": max_requests, "sent": 0,
    }  # fmt: skip
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        tasks = [asyncio.create_task(_client(session, url, body, state)) for _ in range(clients)]
        await asyncio.sleep(warmup_s)
        state["measuring"] = True
        started = time.perf_counter()
        deadline = started + duration_s
        while not state["stop"] and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)
        state["stop"], state["measuring"] = True, False  # later answers are not counted
        seconds = time.perf_counter() - started
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout_s + 5)
    return CellResult(
        requests=len(state["latencies"]),
        errors=state["errors"],
        seconds=seconds,
        latencies_ms=state["latencies"],
        records_per_request=records_per_request,
        error_samples=state["samples"],
        sent=state["sent"],
    )
