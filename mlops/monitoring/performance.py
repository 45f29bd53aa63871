"""Join served predictions with labels that arrived later, and measure each version on them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.training.evaluate import PRIMARY_METRIC, compute_metrics


class LabelJoinError(ValueError):
    """Predictions and labels that cannot be joined as asked."""


def join_labels(
    predictions: pd.DataFrame, labels: pd.DataFrame, contract: Contract
) -> pd.DataFrame:
    """Return the served rows that have a label, with the target added (newest label wins)."""
    key, target = contract.id_column, contract.target.name
    if key is None:
        raise LabelJoinError(f"contract {contract.name!r} has no id column to join labels on")
    for frame, what in ((predictions, "prediction log"), (labels, "labels")):
        if key not in frame.columns:
            raise LabelJoinError(f"the {what} has no {key!r} column")
    if target not in labels.columns:
        raise LabelJoinError(f"the labels have no {target!r} column")
    latest = labels[[key, target]].dropna().drop_duplicates(key, keep="last")
    served = predictions.drop(columns=[target], errors="ignore")
    joined = served.astype({key: str}).merge(latest.astype({key: str}), on=key, how="inner")
    return joined.drop_duplicates(subset=[key, "model_version"], keep="last")


def outputs_from_log(frame: pd.DataFrame, manifest: dict[str, Any]) -> np.ndarray:
    """Rebuild the model output array from the logged output columns."""
    if manifest["task"] == "regression":
        return frame["prediction"].to_numpy(dtype=np.float64)
    columns = [f"probability_{c}" for c in manifest["classes"]]
    return frame[columns].to_numpy(dtype=np.float64)


def performance_by_version(
    joined: pd.DataFrame,
    contract: Contract,
    manifests: dict[str, dict[str, Any]],
    *,
    metric: str | None = None,
) -> list[dict[str, Any]]:
    """Return one row per model version: labelled rows, live metric, and its training figure."""
    metric = metric or PRIMARY_METRIC[contract.task]
    rows = []
    for version, part in joined.groupby("model_version", sort=True):
        manifest = manifests.get(str(version))
        if manifest is None or len(part) == 0:
            continue
        live = compute_metrics(
            manifest["task"],
            part[contract.target.name],
            outputs_from_log(part, manifest),
            manifest.get("classes") or None,
            float(manifest.get("decision_threshold", 0.5)),
        )
        holdout = manifest.get("metrics", {}).get(metric)
        value = live.get(metric)
        rows.append(
            {
                "version": str(version),
                "labelled_rows": len(part),
                "metric": metric,
                "live": _finite(value),
                "holdout": _finite(holdout),
                "delta": None if value is None or holdout is None else _finite(value - holdout),
                **{f"live_{k}": _finite(v) for k, v in live.items() if k != metric},
            }
        )
    return rows


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None
