"""After a change of concept: where it began (the champion's loss) and which rows to learn."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.contract.loader import parse_contract
from mlops.registry.store import Registry
from mlops.release.build import (
    build_candidate,
    champion_change,
    champion_learned,
    train_and_register,
)
from mlops.release.card import render_model_card
from mlops.release.gating import newer_than_data
from mlops.release.lineage import end_of_data, row_hashes
from mlops.training.change import Change, change_in, find_change, paired_z, row_losses
from mlops.training.evaluate import compute_metrics
from mlops.training.train import TrainParams, predict_torch, split_by_time, train_model
from mlops.training.window import fit_window, learned_that_matters, split_for_gate

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


ROW_ORDER = parse_contract(
    {
        "name": "turn",
        "columns": {
            "x": {"role": "feature", "dtype": "float"},
            "z": {"role": "feature", "dtype": "float"},
            "label": {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]},
        },
    },
    source="turn",
)


def test_without_a_timestamp_the_champion_s_data_is_found_by_its_last_rows(
    tmp_path: object,
) -> None:
    """A source in row order grows by appending: the champion's last rows say where it ended."""
    registry = Registry(str(tmp_path))
    first = _rows(3000, turned=False, seed=1, start="2026-01-01").drop(columns="ts")
    source = pd.concat(
        [
            first,
            _rows(2000, turned=False, seed=2, start="2026-01-10").drop(columns="ts"),
            _rows(1500, turned=True, seed=3, start="2026-01-13").drop(columns="ts"),
        ],
        ignore_index=True,
    )
    train_and_register(
        registry, "turn", ROW_ORDER, first, PARAMS, actor="test", reason="first", promote=True
    )
    manifest = registry.get("turn", "v1").manifest
    assert len(manifest["data"]["tail"]) == 8

    window = source.iloc[2000:].reset_index(drop=True)  # 1,000 rows it learned, then new ones
    newer = newer_than_data(manifest, window, ROW_ORDER)
    assert newer is not None and int((~newer).sum()) == 1000 and bool(newer.iloc[1000:].all())
    change = champion_change(registry, "turn", window, ROW_ORDER)
    assert change is not None and abs(change.index - 3000) < 50, change
    # Its own data alone holds no change, and a window that does not hold its last rows (it may
    # have learned any of them) is not searched.
    assert champion_change(registry, "turn", first, ROW_ORDER) is None
    assert champion_change(registry, "turn", source.iloc[3100:], ROW_ORDER) is None


def test_the_end_of_a_model_s_data_is_found_only_where_its_whole_tail_matches() -> None:
    rows = _rows(40, turned=False, seed=4, start="2026-01-01").drop(columns="ts")
    tail = list(row_hashes(rows.iloc[12:20], ROW_ORDER))

    assert end_of_data(tail, rows, ROW_ORDER) == 19
    assert end_of_data(tail, rows.iloc[15:], ROW_ORDER) == 4  # starts inside: 5 rows of the tail
    assert end_of_data(tail, rows.iloc[17:], ROW_ORDER) is None  # 3 rows: too few to be sure
    assert end_of_data(tail, rows.iloc[20:], ROW_ORDER) is None
    assert end_of_data(None, rows, ROW_ORDER) is None
    # The same last row elsewhere, without the rows before it, is not the end.
    repeated = pd.concat([rows, rows.iloc[[19]], rows.iloc[25:30]], ignore_index=True)
    assert end_of_data(tail, repeated, ROW_ORDER) == 19
    shuffled = rows.iloc[[*range(12), 13, 12, *range(14, 40)]]
    assert end_of_data(tail, shuffled, ROW_ORDER) is None


def test_the_holdout_avoids_the_rows_a_champion_learned_when_enough_are_new() -> None:
    rows = pd.DataFrame({"i": np.arange(1000)})
    fractions = {"val_fraction": 0.15, "holdout_fraction": 0.15}

    def cuts(learned: int) -> tuple[int, int, int]:
        s = split_for_gate(rows, learned=learned, **fractions)
        return len(s.train), len(s.val), len(s.holdout)

    assert cuts(0) == (700, 150, 150)
    # It learned rows 0-899: gated on the 100 newer rows, validated on the 150 before them,
    # trained on the 750 before those: about what the champion saw.
    splits = split_for_gate(rows, learned=900, **fractions)
    assert cuts(900) == (750, 150, 100)
    assert splits.holdout["i"].min() == 900 and splits.val["i"].max() == 899
    assert cuts(800) == (700, 150, 150)  # the usual holdout is new to it anyway
    assert cuts(980) == (700, 150, 150)  # 20 new rows say too little to judge on


def test_a_challenger_is_gated_by_a_refit_that_saw_what_the_champion_saw(tmp_path: Path) -> None:
    registry = Registry(str(tmp_path / "registry"))
    source = _rows(3400, turned=False, seed=6, start="2026-01-01").drop(columns="ts")
    params = replace(PARAMS, refit=True)
    train_and_register(
        registry, "turn", ROW_ORDER, source.iloc[:3000], params, actor="test", reason="first",
        promote=True,
    )  # fmt: skip
    assert champion_learned(registry, "turn", source, ROW_ORDER) == 3000  # refitted: all
    learned = 3000
    candidate, model, splits = build_candidate(
        ROW_ORDER, source, params, workdir=tmp_path / "export", reason="test", learned=learned
    )
    # Gated on the 400 rows it never learned, by a model refitted on the 3,000 before them.
    assert len(splits.holdout) == 400 and splits.holdout.index.min() == 3000
    window = candidate.manifest["window"]
    assert window["holdout"] == "the 400 rows newer than the champion's data"
    assert window["gated"].startswith("a refit on the 3000 rows before the holdout")
    assert "- Gated and measured as a refit on the 3000 rows" in render_model_card(
        candidate.manifest
    )
    assert model.refit_rows == 3400  # what it serves learned every row
    assert candidate.manifest["refit"]["metrics_from"].startswith("a refit on the rows before")
    assert "those of a refit on the rows before the holdout" in render_model_card(
        candidate.manifest
    )
    # One that was not refitted did not learn its validation and holdout rows (900 of 3,000).
    train_and_register(
        registry, "turn", ROW_ORDER, source.iloc[:3000], PARAMS, actor="test", reason="plain",
        promote=True,
    )  # fmt: skip
    assert champion_learned(registry, "turn", source, ROW_ORDER) == 2100
    # Without a champion's rows in the window, the usual split and no extra refit.
    plain = fit_window(source, ROW_ORDER, params, None, learned=0)
    assert plain.before_holdout is None and len(plain.splits.holdout) == 510


def test_what_a_champion_learned_matters_only_past_the_training_split() -> None:
    fractions = {"val_fraction": 0.15, "holdout_fraction": 0.15}
    assert learned_that_matters(1000, 700, None, **fractions) == 0  # train is rows 0-699
    assert learned_that_matters(1000, 701, None, **fractions) == 701  # gated by a refit
    assert learned_that_matters(1000, 900, None, **fractions) == 900  # holdout moves too
    change = Change(index=400, rows_after=600, loss_before=0.2, loss_after=0.9, z=6.0)
    assert learned_that_matters(1000, 820, change, **fractions) == 0  # 400 + 420 train rows
    assert learned_that_matters(1000, 821, change, **fractions) == 821
    assert learned_that_matters(5, 3, None, **fractions) == 0  # too few rows: training says so


def test_a_change_the_champion_was_trained_across_is_handed_on_until_a_new_one() -> None:
    from mlops.monitoring.window import catch_up_rows
    from mlops.training.change import inherited_change

    recorded = Change(index=3000, rows_after=1500, loss_before=0.1, loss_after=0.9, z=8.0)
    manifest = {**MANIFEST, "window": {"rows": "window", "change": recorded.to_dict()}}
    rows = pd.concat([_rows(3000, turned=False, seed=2, start="2026-01-10"),
                      _rows(3000, turned=True, seed=3, start="2026-01-13")],
                     ignore_index=True)  # fmt: skip
    # the champion's data ended at row 4,500 (its window's change 1,500 rows before its end);
    # on the rows since, it is as good as ever: no new step
    good = np.where(rows["label"].to_numpy()[:, None] == 1, [0.1, 0.9], [0.9, 0.1])

    change = change_in(rows, TURN, good, manifest, learned=4500)

    assert change == replace(recorded, index=3000, rows_after=3000, inherited=True)
    assert Change.from_dict(change.to_dict()) == change
    assert change_in(rows, TURN, good, MANIFEST, learned=4500) is None  # it had no change
    assert inherited_change(manifest, 6000, 2000) is None  # 500 rows before it: nothing to weigh
    # only a change the champion found itself makes a catch-up due: one per change
    assert catch_up_rows(manifest) == 1500
    assert catch_up_rows({"window": {"change": change.to_dict()}}) is None
    assert catch_up_rows(MANIFEST) is None


def test_after_a_handed_on_change_the_gate_holds_out_rows_the_champion_did_not_learn() -> None:
    rows = pd.concat([_rows(3000, turned=False, seed=2, start="2026-01-10"),
                      _rows(3000, turned=True, seed=3, start="2026-01-13")],
                     ignore_index=True)  # fmt: skip
    change = Change(index=3000, rows_after=3000, loss_before=0.1, loss_after=0.9, z=8.0,
                    inherited=True)  # fmt: skip

    # the champion learned 2,700 rows since the change: the usual holdout (the newest 450 rows
    # since it) would hold 150 of them
    fitted = fit_window(rows, TURN, PARAMS, change, learned=5700)

    assert len(fitted.splits.holdout) == 300
    assert fitted.splits.holdout["ts"].min() > rows["ts"].iloc[5699]
    assert fitted.choice["change"]["inherited"] is True
