"""Model outputs as named columns: what serving logs and what reference profiles hold."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def output_frame(output: np.ndarray, manifest: dict[str, Any]) -> pd.DataFrame:
    """Return `prediction` (class after the threshold, or value) and `probability_<class>` columns.

    `manifest` needs `task`, and for classification `classes` and `decision_threshold`.
    """
    if manifest["task"] == "regression":
        return pd.DataFrame({"prediction": np.asarray(output, dtype=np.float64)})
    classes = list(manifest.get("classes") or range(output.shape[1]))
    frame = pd.DataFrame(output, columns=[f"probability_{c}" for c in classes])
    if manifest["task"] == "binary":
        chosen = (output[:, 1] >= float(manifest.get("decision_threshold", 0.5))).astype(int)
    else:
        chosen = output.argmax(axis=1)
    frame.insert(0, "prediction", [classes[i] for i in chosen])
    return frame
