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
# The gate compares a challenger and a champion on the holdout rows the champion never learned
# when they are at least this share of the usual holdout (fewer say too little to judge on).
MIN_UNSEEN_SHARE = 0.25


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


@dataclass(frozen=True)
class WindowFit:
    """The model trained for a window, its splits, and the rows its refit should learn.

    `before_holdout` is set when the champion learned rows that `model` did not (its data
    reaches past the train split): a model refitted on these rows, everything before the
    holdout, has seen what the champion saw, and it is the one to gate and to quote.
    """

    model: TrainedModel
    splits: Splits
    rows: pd.DataFrame
    choice: dict[str, Any]
    before_holdout: pd.DataFrame | None = None


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
    recorded = (manifest.get("window") or {}).get("change")
    if not recorded or data_end <= 0:
        return None
    try:
        known = Change.from_dict(recorded)
    except (KeyError, TypeError, ValueError):
        return None
    index = data_end - known.rows_after
    if index < MIN_SEGMENT_ROWS or n_rows - index < MIN_SEGMENT_ROWS:
        return None
    return replace(known, index=index, rows_after=n_rows - index, inherited=True)


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


def split_for_gate(
    rows: pd.DataFrame, *, learned: int = 0, val_fraction: float, holdout_fraction: float
) -> Splits:
    """Split a time-ordered window so that its holdout holds no row the champion learned.

    The champion learned the first `learned` rows (a refitted one: its whole window, holdout
    included; `rows_learned`). When the usual holdout reaches back into them, the challenger
    would be gated by its model before the refit, which learned fewer rows than the champion:
    on a drifting source it then loses to a champion that is merely fresher, and no retrain is
    ever promoted.
    So the holdout becomes the rows newer than the champion's data, the validation rows the
    ones just before, and the challenger trains on everything older: it has seen about what the
    champion saw, and the refit then adds what is new. The usual split when the champion learned
    none of the holdout, or when too few rows are new to judge on (`MIN_UNSEEN_SHARE`).
    """
    usual = split_by_time(rows, val_fraction=val_fraction, holdout_fraction=holdout_fraction)
    fresh = len(rows) - max(0, int(learned))
    if learned <= 0 or fresh >= len(usual.holdout) or fresh < MIN_UNSEEN_SHARE * len(usual.holdout):
        return usual
    cut = learned - len(usual.val)
    if cut < len(usual.train) or cut < 10:
        return usual
    return Splits(rows.iloc[:cut], rows.iloc[cut:learned], rows.iloc[learned:])


def learned_that_matters(
    n_rows: int,
    learned: int,
    change: Change | None,
    *,
    val_fraction: float,
    holdout_fraction: float,
) -> int:
    """Return `learned` when it changes what `fit_window` does with `n_rows` rows, else 0.

    It matters when the champion learned past the training split that would be used (the holdout
    then moves, or the gated model is refitted): a cache of trainings keys on this, so champions
    whose data ended early enough share one training.
    """
    fractions = {"val_fraction": val_fraction, "holdout_fraction": holdout_fraction}
    try:
        if change is not None:
            since = max(0, learned - change.index)  # an inherited change: learned after it
            recent = split_for_gate(pd.DataFrame(index=range(n_rows - change.index)),
                                    learned=since, **fractions)  # fmt: skip
            train = change.index + len(recent.train)
        else:
            frame = pd.DataFrame(index=range(n_rows))
            train = len(split_for_gate(frame, learned=learned, **fractions).train)
    except ValueError:  # too few rows to split: the training itself says so
        return 0
    return learned if learned > train else 0


def fit_window(
    rows: pd.DataFrame,
    contract: Contract,
    params: TrainParams,
    change: Change | None,
    *,
    learned: int = 0,
) -> WindowFit:
    """Train on a time-ordered window, choosing between all its rows and those since `change`.

    Without a change: the window split so that the champion, which learned its first `learned`
    rows, is gated on rows new to it (`split_for_gate`). With one, the rows since the change
    are split by time; one model learns the rows before the change plus that split's training
    rows, the other only the latter; both are validated on the same newest rows, and the gate's
    holdout is the newest of the rows since the change either way, so that the champion is
    judged on the current concept.
    """
    fractions = {"val_fraction": params.val_fraction, "holdout_fraction": params.holdout_fraction}
    if change is None:
        splits = split_for_gate(rows, learned=learned, **fractions)
        choice: dict[str, Any] = {"rows": "window"}
        if len(splits.holdout) != round(len(rows) * params.holdout_fraction):
            choice["holdout"] = f"the {len(splits.holdout)} rows newer than the champion's data"
        model = train_model(splits, contract, params)
        if len(choice) > 1:
            model = replace(model, window=choice)
        return _for_gate(WindowFit(model, splits, rows, choice), learned)
    before, after = rows.iloc[: change.index], rows.iloc[change.index :]
    # after a change carried over from the champion, it learned the first rows since it
    recent = split_for_gate(after, learned=max(0, learned - change.index), **fractions)
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
        "%s %.2f -> %.2f (z %.1f) %d rows before the window's end; "
        "rows since the change alone %s (paired z %.2f on %d validation rows)",
        "the change the champion was trained across: its predecessor's loss stepped up"
        if change.inherited else "champion's loss stepped up",
        change.loss_before, change.loss_after, change.z, change.rows_after,
        "win" if take_recent else "do not win", z, len(val),
    )  # fmt: skip
    if take_recent:
        fitted = WindowFit(replace(recent_model, window=choice), recent, after, choice)
        return _for_gate(fitted, learned - change.index)
    return _for_gate(WindowFit(replace(whole_model, window=choice), whole, rows, choice), learned)


def _for_gate(fitted: WindowFit, learned: int) -> WindowFit:
    """Mark the rows before the holdout for a refit when the champion learned past the train."""
    if learned <= len(fitted.splits.train):
        return fitted
    before = pd.concat([fitted.splits.train, fitted.splits.val])
    choice = fitted.choice | {
        "gated": f"a refit on the {len(before)} rows before the holdout (the champion learned "
        f"{learned} of the window's rows, its first model {len(fitted.splits.train)})"
    }
    return replace(fitted, model=replace(fitted.model, window=choice), choice=choice,
                   before_holdout=before)  # fmt: skip


def _val_losses(model: TrainedModel, val: pd.DataFrame, contract: Contract) -> np.ndarray:
    classes = model.preprocessor.target.classes
    return row_losses(contract.task, val[contract.target.name], predict_torch(model, val), classes)
