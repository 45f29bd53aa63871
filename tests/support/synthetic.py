"""Synthetic contracts, frames and small trained models shared by the unit tests."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.loader import parse_contract
from mlops.contract.spec import Contract
from mlops.release.card import build_manifest
from mlops.release.export import export_onnx
from mlops.training.train import TrainedModel, TrainParams, split_by_time, train_model

TASKS = ("binary", "multiclass", "regression")
CITIES = ("berlin", "lyon", "madrid", "oslo", "paris")
CHANNELS = ("app", "web", "shop")
CLASSES = ("low", "mid", "high")
FAST = TrainParams(
    max_epochs=3, batch_size=128, hidden=(16,), patience=2, seed=7, accelerator="cpu"
)

# Numeric and categorical features interleave: the ONNX inputs must still follow this order.
FEATURES: dict[str, dict[str, Any]] = {
    "amount": {"role": "feature", "dtype": "float", "nullable": True},
    "city": {"role": "feature", "dtype": "string", "slice": True},
    "age": {"role": "feature", "dtype": "int"},
    "is_member": {"role": "feature", "dtype": "bool"},
    "rating": {"role": "feature", "dtype": "float"},
    "tier": {"role": "feature", "dtype": "int", "kind": "categorical"},
    "channel": {"role": "feature", "dtype": "string", "nullable": True},
}
TARGETS: dict[str, dict[str, Any]] = {
    "binary": {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]},
    "multiclass": {
        "role": "target",
        "dtype": "string",
        "task": "multiclass",
        "classes": list(CLASSES),
    },
    "regression": {"role": "target", "dtype": "float", "task": "regression"},
}


def make_contract(task: str, **target_overrides: Any) -> Contract:
    """Build a contract with id, timestamp, the shared features and a target for `task`."""
    columns: dict[str, Any] = {
        "txn_id": {"role": "id", "dtype": "string"},
        "ts": {"role": "timestamp", "dtype": "datetime"},
        **FEATURES,
        "label": {**TARGETS[task], **target_overrides},
    }
    return parse_contract({"name": f"synthetic-{task}", "columns": columns}, source=task)


def make_frame(task: str, n: int, *, seed: int = 0, start: str = "2026-01-01") -> pd.DataFrame:
    """Draw `n` time-ordered rows whose target depends on rating, city, membership and tier."""
    rng = np.random.default_rng(seed)
    amount = rng.gamma(2.0, 30.0, n)
    amount[rng.random(n) < 0.1] = np.nan
    channel = rng.choice(np.array(CHANNELS, dtype=object), n)
    channel[rng.random(n) < 0.1] = None
    frame = pd.DataFrame({
        "txn_id": [f"t{seed}-{i}" for i in range(n)],
        "ts": pd.Timestamp(start) + pd.to_timedelta(np.arange(n) * 60, unit="s"),
        "amount": amount,
        "age": rng.integers(18, 80, n),
        "rating": rng.normal(0.0, 1.0, n),
        "is_member": rng.random(n) < 0.4,
        "tier": rng.integers(1, 4, n),
        "city": rng.choice(np.array(CITIES, dtype=object), n),
        "channel": channel,
    })  # fmt: skip
    z = (
        1.5 * frame["rating"]
        + 1.0 * frame["city"].isin(["paris", "oslo"])
        + 0.8 * frame["is_member"]
        + 0.4 * frame["tier"]
        - 1.6
        + rng.normal(0.0, 0.3, n)
    )
    frame["label"] = target_from_score(task, z.to_numpy())
    return frame


STEP = 60.0  # how far `stepped_frame`'s target level moves half way through


def stepped_frame(n: int = 3000) -> pd.DataFrame:
    """Regression rows whose level steps up by `STEP` half way, with nothing in the features
    telling when: a model can only learn an average level, weighted as its loss weighs rows."""
    frame = make_frame("regression", n, seed=4)
    frame["label"] = frame["label"] + np.where(np.arange(n) < n // 2, 0.0, STEP)
    return frame


def target_from_score(task: str, z: np.ndarray) -> Any:
    """Turn a latent score into a binary, multiclass or regression target."""
    if task == "binary":
        return (z > 0).astype(np.int64)
    if task == "multiclass":
        return np.array(CLASSES, dtype=object)[np.digitize(z, [-0.7, 0.7])]
    return 25.0 * z + 100.0


@functools.cache
def trained(task: str) -> tuple[Contract, TrainedModel]:
    """Train (once per session) a small model for `task`; callers must not mutate it."""
    contract = make_contract(task)
    splits = split_by_time(make_frame(task, 800, seed=1))
    return contract, train_model(splits, contract, FAST)


def unseen_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Return a copy with unseen categories in every categorical column and NaN amounts."""
    out = frame.copy()
    out["city"] = "atlantis"
    out["channel"] = "carrier-pigeon"
    out["tier"] = 99
    out["amount"] = np.nan
    return out


def exported(task: str, folder: Path) -> tuple[Contract, bytes, dict[str, Any]]:
    """Return the trained model of a task exported to ONNX: contract, bytes and manifest (v1)."""
    contract, model = trained(task)
    path = export_onnx(model, contract, folder / "model.onnx")
    manifest = build_manifest(
        model=model, contract=contract, data={}, metrics={}, slice_metrics=[], verification={},
        flow_run_id=None,
    )  # fmt: skip
    return contract, path.read_bytes(), {**manifest, "version": "v1"}
