"""Set up the serving benchmark: one trained model, its ONNX export as champion, its PyTorch copy.

The service ((2), (3)) serves the registry's champion; the FastAPI baseline ((4)) loads the very
model that was exported, saved with torch.save; the requests are raw simulator records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODEL = "card-fraud"
MAX_RECORDS = 64


@dataclass(frozen=True)
class Setup:
    """What the setup step left in the work folder."""

    work: Path
    version: str
    torch_path: Path
    records: list[dict[str, Any]]


def prepare(work: Path, *, seed: int = 1, max_epochs: int = 2) -> Setup:
    """Train once; register the ONNX export as champion and keep the PyTorch model."""
    import torch

    from mlops.contract.loader import load_contract
    from mlops.registry.store import Registry
    from mlops.release.build import train_and_register
    from mlops.settings import DEFAULT_CONTRACT
    from mlops.training.train import TrainParams

    contract = load_contract(DEFAULT_CONTRACT)
    rows = simulated_rows()
    built = train_and_register(
        Registry(str(work / "registry")), MODEL, contract, rows,
        TrainParams(max_epochs=max_epochs, seed=seed), actor="bench", reason="serving benchmark",
        data_uri="bench", promote=True, prefer_gpu=False, workdir=work,
    )  # fmt: skip
    version, model = built.version.version, built.model
    torch_path = work / "torch_model.pt"
    torch.save(model, torch_path)
    raw = rows.drop(columns=[contract.target.name]).head(MAX_RECORDS)
    records = json.loads(raw.to_json(orient="records", date_format="iso"))
    return Setup(work, version, torch_path, records)


def prepare_shadow(setup: Setup, *, seed: int = 2, max_epochs: int = 2) -> str:
    """Copy the registry to `registry-shadow` and put a second trained version there as a shadow.

    Return the shadow's version.
    """
    import shutil

    from mlops.contract.loader import load_contract
    from mlops.registry.store import Registry
    from mlops.release.build import train_and_register
    from mlops.settings import DEFAULT_CONTRACT
    from mlops.training.train import TrainParams

    shutil.copytree(setup.work / "registry", setup.work / "registry-shadow")
    registry = Registry(str(setup.work / "registry-shadow"))
    built = train_and_register(
        registry, MODEL, load_contract(DEFAULT_CONTRACT), simulated_rows(),
        TrainParams(max_epochs=max_epochs, seed=seed), actor="bench", reason="serving benchmark",
        data_uri="bench", prefer_gpu=False, workdir=setup.work / "shadow",
    )  # fmt: skip
    version = built.version.version
    registry.start_rollout(MODEL, version, "shadow", actor="bench", reason="serving benchmark")
    return version


def simulated_rows(days: int = 8, rows_per_day: int = 1000, seed: int = 11) -> Any:
    """Return labelled simulator rows (features, id, timestamp and target), as the tests do."""
    from mlops.data.simulate import SimulationConfig, labelled_rows

    config = SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=seed)
    return labelled_rows(config)
