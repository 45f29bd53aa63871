"""Record where a model came from: code version, package versions, data fingerprint and window."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.training.train import Splits

PACKAGES = (
    "torch",
    "pytorch-lightning",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxscript",
    "prefect",
    "pandera",
    "pandas",
    "numpy",
    "whylogs",
    "bentoml",
)


def code_version(repo: Path) -> dict[str, object]:
    """Return the git commit of `repo` and whether the work tree has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "dirty": None}
    return {"git_sha": sha, "dirty": dirty}


def package_versions() -> dict[str, str]:
    """Return the installed versions of the packages a model depends on."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def data_fingerprint(frame: pd.DataFrame) -> str:
    """Return a sha256 over the frame's column names and row-wise content hashes."""
    digest = hashlib.sha256(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def data_lineage(
    data_uri: str, labels_uri: str | None, splits: Splits, timestamp: str | None, rows: pd.DataFrame
) -> dict[str, Any]:
    """Describe the training data for the manifest: where it came from, its window and splits.

    `rows` are the validated rows that were split; without a timestamp column the window is
    given in row numbers.
    """
    described = {row["split"]: row for row in splits.describe(timestamp)}
    return {
        "uri": data_uri,
        "labels_uri": labels_uri,
        "fingerprint": data_fingerprint(rows),
        "window_from": described["train"]["from"] if timestamp else "row 0",
        "window_to": described["holdout"]["to"] if timestamp else f"row {len(rows) - 1}",
        "train_rows": described["train"]["rows"],
        "val_rows": described["val"]["rows"],
        "holdout_rows": described["holdout"]["rows"],
    }
