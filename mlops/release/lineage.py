"""Record where a model came from: code version, package versions, data fingerprint and window."""

from __future__ import annotations

import hashlib
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
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
# Rows at the end of a model's data whose content hashes the manifest keeps: where they reappear,
# in the same order, in a later read of the same source, that model's data ended. Eight in a row
# cannot match by chance, even where single rows repeat.
TAIL_ROWS = 8
MIN_TAIL_MATCH = 4  # rows of the tail that must match where a window starts inside it


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


def row_hashes(frame: pd.DataFrame, contract: Contract) -> list[str]:
    """Return one content hash per row over the contract's features and target (as hex)."""
    return [f"{int(h):016x}" for h in _row_codes(frame, contract)]


def end_of_data(tail: list[str] | None, frame: pd.DataFrame, contract: Contract) -> int | None:
    """Return the position in `frame` of the last row of a model's data, by its `tail` hashes.

    Time-ordered sources without a timestamp column grow by appending, so the rows after that
    position are the ones the model never saw. None when the tail does not appear in `frame`
    (the model's data ended before it, or came from elsewhere: which, cannot be told).
    """
    if not tail or len(frame) == 0:
        return None
    codes, k = _row_codes(frame, contract), len(tail)
    wanted = np.array([int(h, 16) for h in tail], dtype=np.uint64)
    for end in np.flatnonzero(codes == wanted[-1])[::-1]:
        seen = min(k, int(end) + 1)  # fewer than k where the frame starts inside the tail
        if seen >= min(k, MIN_TAIL_MATCH) and np.array_equal(
            codes[end + 1 - seen : end + 1], wanted[k - seen :]
        ):
            return int(end)
    return None


def _row_codes(frame: pd.DataFrame, contract: Contract) -> np.ndarray:
    columns = [c for c in (*contract.feature_names, contract.target.name) if c in frame]
    return pd.util.hash_pandas_object(frame[columns], index=False).to_numpy(dtype=np.uint64)


def rows_learned(manifest: dict[str, Any], up_to_end: int) -> int:
    """Of the `up_to_end` rows through the end of a model's window, how many it learned.

    A refitted model learned them all; one that was not, none of its validation and holdout
    rows, the newest of its window.
    """
    if manifest.get("refit"):
        return max(0, up_to_end)
    data = manifest.get("data", {})
    return max(0, up_to_end - int(data.get("val_rows") or 0) - int(data.get("holdout_rows") or 0))


def data_lineage(
    data_uri: str,
    labels_uri: str | None,
    splits: Splits,
    contract: Contract,
    rows: pd.DataFrame,
) -> dict[str, Any]:
    """Describe the training data for the manifest: where it came from, its window and splits.

    `rows` are the validated rows that were split; without a timestamp column the window is
    given in row numbers, and `tail` (the content hashes of its last rows) tells later reads of
    the source where this model's data ended (`end_of_data`).
    """
    timestamp = contract.timestamp_column
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
        "tail": row_hashes(rows.iloc[-TAIL_ROWS:], contract),
    }
