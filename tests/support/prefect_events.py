"""This process's Prefect events worker, across the test servers one session starts.

Prefect keeps one events worker per process for a running server, whatever its URL: the first
one created keeps the URL of the server it was created for. After that server stops, the worker
would send every later event (a monitor-model run's retrain event) to the dead server, and
draining it at the end of the session would wait forever. Each fixture that starts a server
drains the worker before starting it and before stopping it.
"""

from __future__ import annotations


def release_events_worker(timeout_s: float = 15.0) -> None:
    """Send what this process's events worker holds, stop it, and forget it."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=timeout_s)
