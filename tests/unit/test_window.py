"""After a change of concept: where it began (the champion's loss) and which rows to learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlops.contract.loader import parse_contract
from mlops.registry.store import Registry
from mlops.release.build import champion_change, train_and_register
from mlops.training.evaluate import compute_metrics
from mlops.training.train import TrainParams, predict_torch, split_by_time, train_model
from mlops.training.window import (
    Change,
    change_in,
    find_change,
    fit_window,
    paired_z,
    row_losses,
)

PARAMS = TrainParams(
    max_epochs=4, batch_size=64, learning_rate=0.03, hidden=(16,), patience=2, seed=5,
    accelerator="cpu", refit=False,
)  # fmt: skip
TURN = parse_contract(
    {
        "name": "turn",
        "columns": {
            "ts": {"role": "timestamp", "dtype": "datetime"},
            "x": {"role": "feature", "dtype": "float"},
            "z": {"role": "feature", "dtype": "float"},
            "label": {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]},
        },
    },
    source="turn",
)
MANIFEST = {"task": "binary", "classes": [0, 1]}


def _rows(n: int, *, turned: bool, seed: int, start: str) -> pd.DataFrame:
    """Concept A: label = x > 0. Turned: label = x < 0, over the same inputs."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, n)
    label = (x < 0) if turned else (x > 0)
    noisy = rng.random(n) < 0.05
    return pd.DataFrame({
        "ts": pd.Timestamp(start) + pd.to_timedelta(np.arange(n), unit="min"),
        "x": x, "z": rng.normal(size=n), "label": (label ^ noisy).astype(np.int64),
    })  # fmt: skip


@pytest.fixture(scope="module")
def old_model() -> object:
    rows = _rows(3000, turned=False, seed=1, start="2026-01-01")
    return train_model(split_by_time(rows), TURN, PARAMS)


@pytest.fixture(scope="module")
def turned_window() -> pd.DataFrame:
    """3,000 rows of concept A, then 1,500 rows where it turned around."""
    return pd.concat(
        [
            _rows(3000, turned=False, seed=2, start="2026-01-10"),
            _rows(1500, turned=True, seed=3, start="2026-01-13"),
        ],
        ignore_index=True,
    )


def test_a_step_in_the_mean_loss_is_found_where_it_is() -> None:
    rng = np.random.default_rng(0)
    losses = np.concatenate([rng.exponential(0.3, 4000), rng.exponential(0.6, 1500)])

    change = find_change(losses)

    assert change is not None
    assert abs(change.index - 4000) < 100, change
    assert change.rows_after == len(losses) - change.index
    assert change.loss_after > 2 * change.loss_before * 0.8


def test_no_change_is_found_in_noise_and_a_late_one_is_cut_at_the_last_allowed_row() -> None:
    rng = np.random.default_rng(1)
    for seed in range(5):
        noise = np.random.default_rng(seed).exponential(0.4, 6000)
        assert find_change(noise) is None  # the largest of 4,001 statistics stays under 4
    late = np.concatenate([rng.exponential(0.3, 5600), rng.exponential(3.0, 400)])
    # 400 rows after it are too few to train on alone: the cut keeps the last 1,000 rows.
    found = find_change(late)
    assert found is not None and 4900 <= found.index <= 5000 and found.rows_after >= 1000
    closer = find_change(late, min_segment=300)
    assert closer is not None and abs(closer.index - 5600) < 20


def test_row_losses_are_log_loss_and_absolute_error() -> None:
    y = pd.Series([1, 0])
    probs = np.array([[0.2, 0.8], [0.9999, 0.0001]])
    assert row_losses("binary", y, probs, [0, 1]) == pytest.approx([-np.log(0.8), -np.log(0.9999)])
    assert row_losses("binary", pd.Series([0]), np.array([[0.0, 1.0]]), [0, 1])[0] == (
        pytest.approx(-np.log(1e-3))  # a confident miss counts as p = 0.001, not infinity
    )
    assert row_losses("regression", pd.Series([3.0, 1.0]), np.array([2.5, 2.0])) == (
        pytest.approx([0.5, 1.0])
    )
    assert paired_z(np.array([1.0, 1.2, 0.9, 1.1]), np.array([0.5, 0.6, 0.4, 0.5])) > 2
    assert paired_z(np.ones(4), np.ones(4)) == 0.0


def test_the_champion_s_loss_marks_the_turn_and_learned_rows_are_not_searched(
    old_model: object, turned_window: pd.DataFrame
) -> None:
    outputs = predict_torch(old_model, turned_window)  # type: ignore[arg-type]

    change = change_in(turned_window, TURN, outputs, MANIFEST)
    assert change is not None and abs(change.index - 3000) < 50, change
    assert change.loss_after > change.loss_before + 1

    # The rows a model learned look better than any it did not: they are left out of the search.
    assert change_in(turned_window, TURN, outputs, MANIFEST, learned=3600) is None
    shifted = change_in(turned_window, TURN, outputs, MANIFEST, learned=1000)
    assert shifted is not None and abs(shifted.index - 3000) < 50
    # Labels the model never knew say nothing.
    assert change_in(turned_window, TURN, outputs, {"task": "binary", "classes": [5, 6]}) is None


def test_after_a_turn_the_rows_since_it_win_and_the_holdout_is_the_new_concept(
    old_model: object, turned_window: pd.DataFrame
) -> None:
    change = change_in(turned_window, TURN, predict_torch(old_model, turned_window), MANIFEST)  # type: ignore[arg-type]
    assert change is not None

    fitted = fit_window(turned_window, TURN, PARAMS, change)
    fresh = _rows(2000, turned=True, seed=9, start="2026-01-20")
    accuracy = compute_metrics(
        "binary", fresh["label"], predict_torch(fitted.model, fresh), [0, 1]
    )["accuracy"]

    assert fitted.choice["rows"] == "since change", fitted.choice
    assert fitted.choice["recent_better_z"] >= 2
    assert len(fitted.rows) == len(turned_window) - change.index
    assert fitted.splits.holdout["ts"].min() > turned_window["ts"].iloc[change.index - 1]
    assert fitted.model.window == fitted.choice
    assert accuracy > 0.85, accuracy  # the whole window's model learned mostly concept A


def test_without_a_real_turn_the_whole_window_is_kept() -> None:
    rows = _rows(4500, turned=False, seed=4, start="2026-01-10")
    supposed = Change(index=3000, rows_after=1500, loss_before=0.2, loss_after=0.4, z=6.0)

    fitted = fit_window(rows, TURN, PARAMS, supposed)

    assert fitted.choice["rows"] == "window", fitted.choice
    assert len(fitted.rows) == len(rows)
    assert len(fitted.splits.train) == 3000 + len(split_by_time(rows.iloc[3000:]).train)


def test_train_model_finds_the_turn_through_the_registered_champion(
    turned_window: pd.DataFrame, tmp_path: object
) -> None:
    registry = Registry(str(tmp_path))
    first = _rows(3000, turned=False, seed=1, start="2026-01-01")
    train_and_register(
        registry, "turn", TURN, first, PARAMS, actor="test", reason="first", promote=True
    )

    change = champion_change(registry, "turn", turned_window, TURN)
    assert change is not None and abs(change.index - 3000) < 50, change
    # Rows up to the champion's own data are not searched: a window of them alone finds nothing.
    assert champion_change(registry, "turn", first, TURN) is None
    assert champion_change(registry, "nobody", turned_window, TURN) is None
