"""A real S3 API on loopback for tests: `moto_server` in a process of its own, with one bucket.

The environment it yields (dummy credentials, a region, `AWS_ENDPOINT_URL`) is all botocore
needs, so a plain `fsspec.filesystem("s3")` reaches the server in this process and in any child
started with it (a Prefect flow, `bentoml serve`, a Dask worker): no storage options in code.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from stack import processes


@dataclass(frozen=True)
class S3Server:
    """A running S3 API server, the bucket made on it, and the environment that reaches it."""

    endpoint: str
    bucket: str
    child: processes.Child
    env: dict[str, str] = field(default_factory=dict)

    def url(self, prefix: str = "") -> str:
        """Return `s3://<bucket>/<prefix>`, a fresh prefix for each caller that wants one."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def fresh_url(self, what: str = "home") -> str:
        """Return a URL under a prefix no other test uses."""
        return self.url(f"{what}-{uuid.uuid4().hex[:8]}")


def aws_variables(endpoint: str) -> dict[str, str]:
    """Return the variables that point botocore (and so s3fs) at `endpoint` with dummy keys."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",  # moto refuses to create a bucket without one
        "AWS_ENDPOINT_URL": endpoint,
    }


def moto_command(port: int) -> list[str]:
    """Return the command of moto's S3 server on 127.0.0.1:`port`."""
    binary = Path(sys.executable).parent / "moto_server"
    head = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
    return [*head, "-H", "127.0.0.1", "-p", str(port)]


@contextmanager
def s3_server(directory: Path, bucket: str = "mlops") -> Iterator[S3Server]:
    """Run moto's S3 server on a free loopback port with `bucket` made, until the block ends.

    The server's log goes to `directory`; at the end it gets SIGTERM, then SIGKILL after 10 s.
    """
    directory.mkdir(parents=True, exist_ok=True)
    port = processes.free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = aws_variables(endpoint)
    with processes.running(
        "moto-server", moto_command(port), log_path=directory / "moto.log",
        env={**os.environ, **env}, cwd=directory,
        ready=lambda: httpx.get(f"{endpoint}/moto-api/", timeout=2).status_code < 500,
        ready_timeout_s=60, stop_timeout_s=10,
    ) as child:  # fmt: skip
        import boto3

        boto3.client(
            "s3", endpoint_url=endpoint, region_name=env["AWS_DEFAULT_REGION"],
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=bucket)  # fmt: skip
        yield S3Server(endpoint, bucket, child, env)


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """Run one S3 API server for the session (a test takes a fresh prefix of its bucket)."""
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """Point this process's S3 variables (and so its children's) at the server."""
    import s3fs

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()  # one made before would keep its own endpoint
    return s3


@pytest.fixture
def s3_home(s3_env: S3Server, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the S3 variables at the server and MLOPS_HOME at a fresh prefix of its bucket."""
    home = s3_env.fresh_url()
    monkeypatch.setenv("MLOPS_HOME", home)
    return home
