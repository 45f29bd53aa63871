"""Where a concept changed: the step up in a model's per-row loss, found or handed on.

A model that was right and then turned wrong marks the change: its per-row loss steps up, and the
rows after the step are the current concept. The step is found by Welch's statistic over every cut
(`find_change`); a model trained across a change hands it on to the next training while its own
loss shows no new one (`inherited_change`). Light: no training stack, so monitoring can read a
manifest's change without importing it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.training.evaluate import class_indices

# Rows a concept needs on each side of a change: 700 to train on, 150 to validate, 150 to hold
# out with the default fractions. A change closer to the window's edge is not looked for.
MIN_SEGMENT_ROWS = 1000
# How many standard errors the mean loss after a cut must exceed the mean before it. The largest
# of these statistics over all cuts of a series without change stays under 4 with probability
# about 0.999 for the lengths trained on here (it grows like sqrt(2 log log n)). A higher bar
# misses real changes where positives are rare: their log loss is heavy-tailed, so its standard
# error is large (3% positives, ROC AUC falling from 0.87 to 0.62: z 4.4). A false step costs
# little: the rows since it must still beat the whole window by CHOICE_Z to be taken alone.
CHANGE_Z = 4.0
LOSS_FLOOR = 1e-3  # probabilities below this count as this: one confident miss must not dominate


@dataclass(frozen=True)
class Change:
    """Where the champion's per-row loss stepped up in a window, and by how much."""

    index: int  # position of the first row after the change
    rows_after: int
    loss_before: float
    loss_after: float
    z: float
    inherited: bool = False  # the champion's change, carried over: no new step in this window

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Change:
        before, after, z = (float(data[k]) for k in ("loss_before", "loss_after", "z"))
        inherited = bool(data.get("inherited"))
        return cls(int(data["index"]), int(data["rows_after"]), before, after, z, inherited)


def row_losses(
    task: str, y: pd.Series, output: np.ndarray, classes: Any | None = None
) -> np.ndarray:
    """Return each row's loss: log loss (probabilities floored) or absolute error (regression)."""
    values = np.asarray(output, dtype=np.float64)
    if task == "regression":
        return np.abs(y.astype("float64").to_numpy() - values.reshape(len(y), -1)[:, 0])
    codes = class_indices(y, list(classes or []))
    picked = values.reshape(len(y), -1)[np.arange(len(y)), codes]
    return -np.log(np.clip(picked, LOSS_FLOOR, 1.0))


def find_change(
    losses: np.ndarray, *, min_segment: int = MIN_SEGMENT_ROWS, z_min: float = CHANGE_Z
) -> Change | None:
    """Return the cut where the mean loss steps up the most, if it does by `z_min` std errors.

    Every cut leaving at least `min_segment` rows on each side is tried (Welch's statistic of
    the two means, from running sums); None when the window is too short or no step is clear.
    A step nearer the end than `min_segment` rows shows at the last allowed cut, whose rows
    after it then hold all the new ones.
    """
    x = np.asarray(losses, dtype=np.float64)
    n = len(x)
    if n < 2 * min_segment or not np.isfinite(x).all():
        return None
    s1 = np.concatenate([[0.0], np.cumsum(x)])
    s2 = np.concatenate([[0.0], np.cumsum(x * x)])
    k = np.arange(min_segment, n - min_segment + 1)
    before, after = k.astype(np.float64), (n - k).astype(np.float64)
    mean_b, mean_a = s1[k] / before, (s1[n] - s1[k]) / after
    var_b = np.maximum(s2[k] / before - mean_b**2, 0.0)
    var_a = np.maximum((s2[n] - s2[k]) / after - mean_a**2, 0.0)
    se = np.sqrt(var_b / before + var_a / after)
    z = np.where(se > 0, (mean_a - mean_b) / np.where(se > 0, se, 1.0), 0.0)
    best = int(np.argmax(z))
    if z[best] < z_min:
        return None
    cut = int(k[best])
    return Change(cut, n - cut, float(mean_b[best]), float(mean_a[best]), float(z[best]))


def change_in(
    rows: pd.DataFrame,
    contract: Contract,
    outputs: np.ndarray,
    manifest: dict[str, Any],
    *,
    learned: int = 0,
) -> Change | None:
    """Find where a model's loss on labelled, time-ordered `rows` stepped up (its `outputs`).

    Only the rows after the first `learned` (those the model trained on; its data ends there)
    are searched: its loss on rows it learned is lower anyway, which would pass for a change
    where its data ended. Without a new step, the change the model was itself trained across,
    if any, still marks where the current concept began (`inherited_change`). None when there is
    no change to go by, or when its outputs cannot be scored on these labels (a class it never
    knew): a model from before a change of contract says nothing here.
    """
    learned = max(0, min(int(learned), len(rows)))
    try:
        losses = row_losses(
            manifest["task"], rows[contract.target.name].iloc[learned:], outputs[learned:],
            manifest.get("classes"),
        )  # fmt: skip
    except (KeyError, ValueError, IndexError):
        return None
    found = find_change(losses)
    if found is None:
        return inherited_change(manifest, len(rows), learned)
    return replace(found, index=found.index + learned)


def inherited_change(manifest: dict[str, Any], n_rows: int, data_end: int) -> Change | None:
    """Place the change a model was trained across in a window whose first `data_end` rows end
    with its data; None when it had none, or when either side would be too short to learn.

    A champion trained after a change learned few rows of the new concept: the next training,
    with more of them, must again choose between all rows and the rows since that change, or
    the old concept's rows outnumber the new ones as they did before. The change stays where
    it was until the champion's own loss shows a new one.
    """
    known = recorded_change(manifest)
    if known is None or data_end <= 0:
        return None
    index = data_end - known.rows_after
    if index < MIN_SEGMENT_ROWS or n_rows - index < MIN_SEGMENT_ROWS:
        return None
    return replace(known, index=index, rows_after=n_rows - index, inherited=True)


def recorded_change(manifest: dict[str, Any]) -> Change | None:
    """Return the change a model's manifest records it was trained across (`window.change`)."""
    recorded = (manifest.get("window") or {}).get("change")
    if not recorded:
        return None
    try:
        return Change.from_dict(recorded)
    except (KeyError, TypeError, ValueError):
        return None


def paired_z(losses_a: np.ndarray, losses_b: np.ndarray) -> float:
    """Return how many standard errors the mean of `losses_a - losses_b` is above zero."""
    d = np.asarray(losses_a, dtype=np.float64) - np.asarray(losses_b, dtype=np.float64)
    if len(d) < 2:
        return 0.0
    se = float(d.std(ddof=1)) / np.sqrt(len(d))
    mean = float(d.mean())
    if se == 0.0:
        return 0.0 if mean == 0.0 else float(np.sign(mean) * np.inf)
    return mean / se
