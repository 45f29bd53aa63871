"""Real registry versions for flow tests, trained once per session and copied into each test."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, labelled_rows
from mlops.registry.store import Registry
from mlops.release.build import train_and_register
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams

MODEL = "flows-test"


@functools.cache
def registry_template(versions: int = 2) -> str:
    """Return a registry folder holding small trained versions v1, v2, ... of MODEL, no aliases."""
    root = Path(tempfile.mkdtemp(prefix="mlops-flow-registry-"))
    contract = load_contract(DEFAULT_CONTRACT)
    rows = labelled_rows(SimulationConfig(days=7, rows_per_day=1000, scenario="stable", seed=5))
    registry = Registry(str(root / "registry"))
    for seed in range(1, versions + 1):
        params = TrainParams(max_epochs=1, seed=seed, accelerator="cpu")
        train_and_register(
            registry, MODEL, contract, rows, params,
            actor="tests", reason="flow tests' template", data_uri="test", prefer_gpu=False,
        )  # fmt: skip
    return str(root / "registry")


def copy_registry(dest: str) -> Registry:
    """Copy the session's trained registry (MODEL v1 and v2) to `dest` and return it."""
    shutil.copytree(registry_template(), dest)
    return Registry(dest)
