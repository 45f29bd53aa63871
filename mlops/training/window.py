"""Which rows to learn after a change of concept: the champion's own errors say where it began.

A model that was right and then turned wrong marks the change: its per-row loss steps up. The rows
after the step are the current concept. The rows before it may help (more rows of a concept that
barely moved) or hurt (a concept that turned around); no fixed window length is right for both.
So when the step is clear, two models are trained, on the whole window and on the rows since the
change, and the newest rows after the change decide between them by a paired test on the same
per-row loss. Nothing here depends on a dataset's size or columns: the thresholds are in standard
errors, and the one row count is what a training split of its own needs.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.training.evaluate import class_indices
from mlops.training.train import (
    Splits,
    TrainedModel,
    TrainParams,
    predict_torch,
    split_by_time,
    train_model,
)

log = logging.getLogger(__name__)

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
# The model of the rows since the change is taken only when it beats the whole window's by two
# standard errors of the paired loss difference: with less evidence more rows are the safer bet.
CHOICE_Z = 2.0
LOSS_FLOOR = 1e-3  # probabilities below this count as this: one confident miss must not dominate


@dataclass(frozen=True)
class Change:
    """Where the champion's per-row loss stepped up in a window, and by how much."""

    index: int  # position of the first row after the change
    rows_after: int
    loss_before: float
    loss_after: float
    z: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class WindowFit:
    """The model trained for a window, its splits, and the rows its refit should learn."""

    model: TrainedModel
    splits: Splits
    rows: pd.DataFrame
    choice: dict[str, Any]


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

    Only the rows after the first `learned` (those the model trained on) are searched: its loss
    on rows it learned is lower anyway, which would pass for a change where its data ended.
    None when there is no clear step, or when its outputs cannot be scored on these labels
    (a class it never knew): a model from before a change of contract says nothing here.
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
    return None if found is None else replace(found, index=found.index + learned)


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


def fit_window(
    rows: pd.DataFrame, contract: Contract, params: TrainParams, change: Change | None
) -> WindowFit:
    """Train on a time-ordered window, choosing between all its rows and those since `change`.

    Without a change: the usual split of the whole window. With one, the rows since the change
    are split by time; one model learns the rows before the change plus that split's training
    rows, the other only the latter; both are validated on the same newest rows, and the gate's
    holdout is the newest of the rows since the change either way, so that the champion is
    judged on the current concept.
    """
    fractions = {"val_fraction": params.val_fraction, "holdout_fraction": params.holdout_fraction}
    if change is None:
        splits = split_by_time(rows, **fractions)
        return WindowFit(train_model(splits, contract, params), splits, rows, {"rows": "window"})
    before, after = rows.iloc[: change.index], rows.iloc[change.index :]
    recent = split_by_time(after, **fractions)
    whole = Splits(pd.concat([before, recent.train]), recent.val, recent.holdout)
    whole_model = train_model(whole, contract, params)
    recent_model = train_model(recent, contract, params)
    val = recent.val
    z = paired_z(_val_losses(whole_model, val, contract), _val_losses(recent_model, val, contract))
    take_recent = z >= CHOICE_Z
    choice = {
        "rows": "since change" if take_recent else "window",
        "change": change.to_dict(),
        "validation_rows": len(val),
        "recent_better_z": round(z, 3) if np.isfinite(z) else z,
    }
    log.info(
        "champion's loss stepped up %.2f -> %.2f (z %.1f) %d rows before the window's end; "
        "rows since the change alone %s (paired z %.2f on %d validation rows)",
        change.loss_before, change.loss_after, change.z, change.rows_after,
        "win" if take_recent else "do not win", z, len(val),
    )  # fmt: skip
    if take_recent:
        return WindowFit(replace(recent_model, window=choice), recent, after, choice)
    return WindowFit(replace(whole_model, window=choice), whole, rows, choice)


def _val_losses(model: TrainedModel, val: pd.DataFrame, contract: Contract) -> np.ndarray:
    classes = model.preprocessor.target.classes
    return row_losses(contract.task, val[contract.target.name], predict_torch(model, val), classes)
