"""Prefect events in tests: read them back, and this process's events worker across servers.

Prefect keeps one events worker per process for a running server, whatever its URL: the first
one created keeps the URL of the server it was created for. After that server stops, the worker
would send every later event (a monitor-model run's retrain event) to the dead server, and
draining it at the end of the session would wait forever. Each fixture that starts a server
drains the worker before starting it and before stopping it.
"""

from __future__ import annotations

import asyncio


def release_events_worker(timeout_s: float = 15.0) -> None:
    """Send what this process's events worker holds, stop it, and forget it."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout_s)


def read_events(name: str, timeout_s: float = 20.0) -> list:
    """Return the events called `name` (they are delivered asynchronously: poll a little)."""

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    async def read() -> list:
        async with get_client() as client:
            for _ in range(int(timeout_s / 0.5)):
                page = await client.read_events(
                    filter=EventFilter(event=EventNameFilter(name=[name])), limit=50
                )  # the server refuses the client's default limit of 100
                if page.events:
                    return list(page.events)
                await asyncio.sleep(0.5)
            return []

    return asyncio.run(read())
