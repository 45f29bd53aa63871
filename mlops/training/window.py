"""Which rows to learn and how to weigh them, and which rows a fair gate holds out.

The rows before a change (`mlops.training.change`) may help (more rows of a concept that barely
moved) or hurt (a concept that turned around); no fixed window length is right for both. So when
the step is clear, two models are trained, on the whole window and on the rows since the change,
and the newest rows after the change decide between them by a paired test on the same per-row
loss. A source that moves steadily (a trend no feature explains) has no step to find, but its old
rows still teach a stale answer: so a model that weighs the rows by recency is weighed against the
unweighted one the same way. Nothing here depends on a dataset's size or columns: the thresholds
are in standard errors, the half-life is a share of the rows learned, and the one row count is
what a training split of its own needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlops.contract.spec import Contract
from mlops.training.change import Change, paired_z, row_losses
from mlops.training.train import (
    Splits,
    TrainedModel,
    TrainParams,
    predict_torch,
    split_by_time,
    train_model,
)

log = logging.getLogger(__name__)

# The model of the rows since the change is taken only when it beats the whole window's by two
# standard errors of the paired loss difference: with less evidence more rows are the safer bet.
CHOICE_Z = 2.0
# The gate compares a challenger and a champion on the holdout rows the champion never learned
# when they are at least this share of the usual holdout (fewer say too little to judge on).
MIN_UNSEEN_SHARE = 0.25
# The recency-weighted alternative halves a row's weight every quarter of the rows learned: the
# newest quarter carries about half the weight (0.53), the oldest row 1/16. Stronger weighting
# would leave too few effective rows to beat the unweighted model on data that does not move
# (effective sample 64% of the rows here); weaker would barely move a model off the window's
# average (half-life 1: the weighted mean age of the rows falls from 0.50 to 0.44 of the window).
RECENCY_HALF_LIFE = 0.25


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
    """Train on a time-ordered window: all its rows, those since `change`, or all weighted.

    Without a change: the window split so that the champion, which learned its first `learned`
    rows, is gated on rows new to it (`split_for_gate`). With one, the rows since the change
    are split by time; one model learns the rows before the change plus that split's training
    rows, the other only the latter; both are validated on the same newest rows, and the gate's
    holdout is the newest of the rows since the change either way, so that the champion is
    judged on the current concept. Unless the rows since the change won, a recency-weighted model
    of the whole window is weighed against the unweighted one on the same validation rows
    (`adapt_recency`).
    """
    fractions = {"val_fraction": params.val_fraction, "holdout_fraction": params.holdout_fraction}
    if change is None:
        splits = split_for_gate(rows, learned=learned, **fractions)
        choice: dict[str, Any] = {"rows": "window"}
        if len(splits.holdout) != round(len(rows) * params.holdout_fraction):
            choice["holdout"] = f"the {len(splits.holdout)} rows newer than the champion's data"
        model = _weigh_recency(train_model(splits, contract, params), splits, contract, choice)
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
    z = _better_z(whole_model, recent_model, val, contract)
    take_recent = z >= CHOICE_Z
    choice = {
        "rows": "since change" if take_recent else "window",
        "change": change.to_dict(),
        "validation_rows": len(val),
        "recent_better_z": _rounded(z),
    }
    # The rows since a clear change learn the new concept alone; where they do not win, the
    # whole window may still do better with its newest rows weighing more.
    if not take_recent:
        whole_model = _weigh_recency(whole_model, whole, contract, choice)
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


def _weigh_recency(
    model: TrainedModel, splits: Splits, contract: Contract, choice: dict[str, Any]
) -> TrainedModel:
    """Train the recency-weighted alternative to `model` on the same splits and return the one
    to keep: the alternative when it beats `model` on the validation rows by `CHOICE_Z` standard
    errors. Records the comparison in `choice["recency"]`; nothing is trained when the weights
    are fixed or adapting is off."""
    params = model.params
    if not params.adapt_recency or params.recency_half_life is not None:
        return model
    weighted = train_model(splits, contract, replace(params, recency_half_life=RECENCY_HALF_LIFE))
    z = _better_z(model, weighted, splits.val, contract)
    kept = bool(z >= CHOICE_Z)
    log.info("recency weights (half-life %.2f of the rows learned) %s (paired z %.2f on %d "
             "validation rows)", RECENCY_HALF_LIFE, "win" if kept else "do not win", z,
             len(splits.val))  # fmt: skip
    choice["recency"] = {"half_life": RECENCY_HALF_LIFE, "better_z": _rounded(z),
                         "validation_rows": len(splits.val), "kept": kept}  # fmt: skip
    return weighted if kept else model


def _better_z(base: TrainedModel, other: TrainedModel, val: pd.DataFrame, c: Contract) -> float:
    """How many standard errors `other`'s mean loss on `val` is below `base`'s (paired)."""
    return paired_z(_val_losses(base, val, c), _val_losses(other, val, c))


def _rounded(z: float) -> float:
    return round(z, 3) if np.isfinite(z) else z


def _val_losses(model: TrainedModel, val: pd.DataFrame, contract: Contract) -> np.ndarray:
    classes = model.preprocessor.target.classes
    return row_losses(contract.task, val[contract.target.name], predict_torch(model, val), classes)
