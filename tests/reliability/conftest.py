"""Fixtures for reliability tests: the serving fixtures, and one real `bentoml serve` per session.

The serving fixtures (`serving_home`, `service_env`, `client`, `registry_copy`) are those of
tests/serving; `serving_home`'s trained registry is built once per session and shared with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from stack import processes
from tests.serving.conftest import client, registry_copy, service_env, serving_home
from tests.support.service import bentoml_server, server_env

__all__ = ["client", "registry_copy", "service_env", "serving_home"]

API_TOKEN = "api-secret"
ADMIN_TOKEN = "admin-secret"


@dataclass(frozen=True)
class LiveServer:
    """A running `bentoml serve` of the fixture registry's champion, with both tokens set."""

    url: str
    child: processes.Child

    @property
    def auth(self) -> dict[str, str]:
        """Return the headers of an authorised /predict call."""
        return {"Authorization": f"Bearer {API_TOKEN}"}

    def log(self) -> str:
        """Return everything the server has written to stdout and stderr so far."""
        return self.child.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def live_server(
    serving_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """Serve the fixture registry's champion in a real process, shared by the whole session."""
    tmp = tmp_path_factory.mktemp("live-server")
    env = server_env(
        tmp / "home",
        serving_home / "registry",
        MLOPS_API_TOKEN=API_TOKEN,
        MLOPS_ADMIN_TOKEN=ADMIN_TOKEN,
    )
    with bentoml_server(env, tmp / "server.log") as server:
        assert server.url is not None
        yield LiveServer(server.url, server)
