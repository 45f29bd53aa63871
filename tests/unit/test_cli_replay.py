"""`mlops replay FILE`: batches of a file's records to /predict, counted by answer status."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from stack.cli import app

CONTRACT = Path(__file__).parents[1] / "contracts" / "penguins.yaml"
runner = CliRunner()


class Recorder(BaseHTTPRequestHandler):
    """Answer /predict with 200, or 400 when a record is tagged P9999; keep what was posted."""

    posted: list[tuple[str, dict[str, Any], str | None]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.posted.append((self.path, body, self.headers.get("Authorization")))
        refused = any(r.get("tag") == "P9999" for r in body["records"])
        self.send_response(400 if refused else 200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"detail": []}' if refused else b'{"model_version": "v1"}')

    def log_message(self, *args: Any) -> None:
        """Keep the test output quiet."""


@pytest.fixture
def service() -> Iterator[tuple[str, list[tuple[str, dict[str, Any], str | None]]]]:
    """A local HTTP server that records every request posted to it."""
    posted: list[tuple[str, dict[str, Any], str | None]] = []
    handler = type("Handler", (Recorder,), {"posted": posted})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", posted
    server.shutdown()
    server.server_close()


def _penguins(tags: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "tag": tags,
            "observed_at": pd.date_range("2026-01-01", periods=len(tags), freq="h"),
            "bill_length_mm": [40.5] * len(tags),
            "flipper_length_mm": [None, *[190] * (len(tags) - 1)],
            "island": ["Dream"] * len(tags),
            "banded": [True] * len(tags),
            "species": ["Adelie"] * len(tags),
            "observer": ["kim"] * len(tags),  # not in the contract
        }
    )


def test_replay_posts_batches_without_target_or_unknown_columns(
    tmp_path: Path, service: tuple[str, list[Any]]
) -> None:
    url, posted = service
    path = tmp_path / "penguins.parquet"
    _penguins(["P0001", "P0002", "P0003", "P0004", "P0005"]).to_parquet(path)

    result = runner.invoke(
        app,
        ["replay", str(path), "--url", url, "--batch", "2", "--contract", str(CONTRACT),
         "--token", "s3cret"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert [len(body["records"]) for _, body, _ in posted] == [2, 2, 1]
    assert {path for path, _, _ in posted} == {"/predict"}
    assert {auth for _, _, auth in posted} == {"Bearer s3cret"}
    first = posted[0][1]["records"][0]
    assert set(first) == {"tag", "observed_at", "bill_length_mm", "flipper_length_mm", "island",
                          "banded"}  # fmt: skip
    assert first["flipper_length_mm"] is None and first["tag"] == "P0001"
    assert first["observed_at"].startswith("2026-01-01T00:00:00")
    assert "dropped columns: species, observer" in result.output
    assert "200: 3 answers (5 records)" in result.output


def test_replay_counts_refused_batches_and_exits_1(
    tmp_path: Path, service: tuple[str, list[Any]]
) -> None:
    url, posted = service
    path = tmp_path / "penguins.csv"
    _penguins(["P0001", "P9999", "P0003"]).to_csv(path, index=False)

    result = runner.invoke(
        app, ["replay", str(path), "--url", url, "--batch", "1", "--contract", str(CONTRACT)]
    )

    assert result.exit_code == 1
    assert len(posted) == 3 and posted[0][2] is None
    assert "200: 2 answers (2 records)" in result.stdout
    assert "400: 1 answers (1 records)" in result.stdout
    assert result.stderr == f"error: 1 of 3 requests to {url}/predict were refused\n"


def test_replay_to_a_closed_port_says_to_start_the_service(tmp_path: Path) -> None:
    path = tmp_path / "penguins.csv"
    _penguins(["P0001"]).to_csv(path, index=False)

    result = runner.invoke(
        app,
        ["replay", str(path), "--url", "http://127.0.0.1:9", "--contract", str(CONTRACT)],
    )

    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot reach http://127.0.0.1:9/predict")
    assert result.stderr.endswith("(is `mlops serve` running?)\n")
