"""`mlops build-bento` packages one registry version; the Bento serves it without the registry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from tests.support.service import bentoml_server, served_records, server_env

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def test_built_bento_serves_the_pinned_version_with_an_empty_registry(
    serving_home: Path, tmp_path: Path
) -> None:
    env = server_env(tmp_path / "home", serving_home / "registry")
    built = subprocess.run(
        [str(BIN / "mlops"), "build-bento", "--version", "v2"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    listed = subprocess.run(
        [str(BIN / "bentoml"), "list", "mlops-prediction", "-o", "json"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    tag = json.loads(listed.stdout)[0]["tag"]
    bento_dir = Path(env["BENTOML_HOME"], "bentos", *tag.split(":"))
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    tags = [m["tag"] for m in info["services"][0]["models"]]
    assert len(tags) == 1 and tags[0].startswith("card-fraud:v2-")  # v2 and the registry's suffix
    assert (bento_dir / "src" / "contracts" / "card_fraud.yaml").exists()
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime" in requirements
    assert "torch" not in requirements and "prefect" not in requirements

    empty = server_env(tmp_path / "served", tmp_path / "no-registry")
    empty["BENTOML_HOME"] = env["BENTOML_HOME"]
    with bentoml_server(empty, tmp_path / "bento.log", target=tag, cwd=tmp_path) as server:
        model = httpx.get(f"{server.url}/model", timeout=30).json()
        answer = httpx.post(
            f"{server.url}/predict", json={"records": served_records(3)}, timeout=30
        )
    assert model["version"] == "v2"
    assert answer.status_code == 200, answer.text
    assert answer.json()["model_version"] == "v2"
