"""Start and stop the HTTP servers the serving benchmark drives, each in its own session.

They run through `stack.processes`, which owns every background process: a free port, a log,
a readiness check, a stop that reaches their workers, and the CPU time of their process tree.
"""

from __future__ import annotations

import os
import sys
from contextlib import AbstractContextManager
from pathlib import Path

from mlops.settings import REPO_ROOT, TELEMETRY_OPT_OUTS
from stack import processes

BIN = Path(sys.executable).parent


def quiet_env(**extra: str) -> dict[str, str]:
    """Return this environment without MLOPS_/BENTOML_ settings, telemetry off, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLOPS_", "BENTOML_"))}
    return env | {**TELEMETRY_OPT_OUTS, **extra}


def bentoml_command(service: str) -> list[str]:
    """Return the command serving a BentoML service on 127.0.0.1, its port left as {port}."""
    return [str(BIN / "bentoml"), "serve", service, "--host", "127.0.0.1", "--port", "{port}"]


def uvicorn_command(app: str) -> list[str]:
    """Return the command serving an ASGI app with uvicorn's defaults, its port left as {port}."""
    return [str(BIN / "python"), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "{port}"]


def running(
    name: str, command: list[str], env: dict[str, str], log_path: Path, ready_timeout_s: float = 120
) -> AbstractContextManager[processes.Child]:
    """Run a server on a free port (its command's {port}) from the repository root.

    The block starts once /readyz answers; the server stops, with its workers, when it ends.
    """
    port = processes.free_port()
    url = f"http://127.0.0.1:{port}"
    return processes.running(
        name, [arg.format(port=port) for arg in command], log_path=log_path, env=env,
        cwd=REPO_ROOT, url=url, ready=processes.http_ok(f"{url}/readyz"),
        ready_timeout_s=ready_timeout_s,
    )  # fmt: skip
