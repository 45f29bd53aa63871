"""The refit: the served model learns the newest rows, while metrics and the gate stay honest."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlops.contract.loader import parse_contract
from mlops.contract.spec import Contract
from mlops.inference.scoring import predict_onnx, score_onnx
from mlops.monitoring.profile import column_counts, profile_from_bytes
from mlops.registry.store import Registry
from mlops.release.build import build_candidate
from mlops.release.candidate import Candidate, register_candidate
from mlops.release.card import render_model_card
from mlops.release.gate import GatePolicy
from mlops.release.gating import challenger_scores, gate_challenger
from mlops.training.features import OOV_INDEX, encode_features
from mlops.training.train import (
    Splits,
    TrainedModel,
    TrainParams,
    evaluate_model,
    predict_torch,
    refit_model,
    refit_threshold,
    split_by_time,
    train_model,
)
from tests.support.synthetic import FAST, make_contract, make_frame

MODEL = "refit-test"
POLICY = GatePolicy(metric="roc_auc", floor=0.5, max_regression=0.05)
# Large steps: early stopping on a validation split of the new concept keeps one epoch only.
FLIP_PARAMS = TrainParams(
    max_epochs=3, batch_size=64, learning_rate=0.05, hidden=(32,), patience=2, seed=3,
    accelerator="cpu",
)  # fmt: skip
FLIP = parse_contract(
    {
        "name": "flip",
        "columns": {
            "ts": {"role": "timestamp", "dtype": "datetime"},
            "x": {"role": "feature", "dtype": "float"},
            "shop": {"role": "feature", "dtype": "string"},
            "label": {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]},
        },
    },
    source="flip",
)


def _concept_rows(n: int, *, new: bool, seed: int, shops: tuple[str, ...]) -> pd.DataFrame:
    """Old concept: x in (-2, 2), label x > 0. New: x in (2, 6), label x < 4 (flipped there)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(2, 6, n) if new else rng.uniform(-2, 2, n)
    start = pd.Timestamp("2026-02-01" if new else "2026-01-01")
    return pd.DataFrame({
        "ts": start + pd.to_timedelta(np.arange(n), unit="min"),
        "x": x,
        "shop": rng.choice(np.array(shops, dtype=object), n),
        "label": ((x < 4) if new else (x > 0)).astype(np.int64),
    })  # fmt: skip


@pytest.fixture(scope="module")
def flipped() -> tuple[pd.DataFrame, Splits, TrainedModel, TrainedModel]:
    """1,500 rows whose concept flips in the newest 30%; shop "c" exists in the holdout only."""
    rows = pd.concat(
        [
            _concept_rows(1050, new=False, seed=1, shops=("a", "b")),
            _concept_rows(225, new=True, seed=2, shops=("a", "b")),
            _concept_rows(225, new=True, seed=3, shops=("a", "b", "c")),
        ],
        ignore_index=True,
    )
    splits = split_by_time(rows)
    first = train_model(splits, FLIP, FLIP_PARAMS)
    return rows, splits, first, refit_model(first, rows, FLIP)


def test_the_refit_model_learns_the_concept_of_the_newest_rows(
    flipped: tuple[pd.DataFrame, Splits, TrainedModel, TrainedModel],
) -> None:
    _, _, first, refit = flipped
    fresh = _concept_rows(1000, new=True, seed=9, shops=("a", "b"))

    before = evaluate_model(first, FLIP, fresh)[0]["accuracy"]
    after = evaluate_model(refit, FLIP, fresh)[0]["accuracy"]

    # Measured: 0.50 before, 0.93 to 0.95 after (seeds 1 to 4).
    assert after - before > 0.3, (before, after)


def test_the_refit_trains_the_chosen_epochs_on_every_row_and_keeps_the_first_run_figures(
    flipped: tuple[pd.DataFrame, Splits, TrainedModel, TrainedModel],
) -> None:
    rows, _, first, refit = flipped

    assert (refit.refit_rows, refit.refit_epochs) == (len(rows), first.best_epoch + 1)
    assert first.refit_rows is None and first.refit_epochs is None
    assert refit.module is not first.module and refit.preprocessor != first.preprocessor
    # The validation figures, history, parameters, threshold objective: all the first run's.
    own = {"preprocessor", "module", "device", "decision_threshold"}
    own |= {"refit_rows", "refit_epochs", "refit_seconds"}
    kept = [f.name for f in dataclasses.fields(TrainedModel) if f.name not in own]
    assert "threshold_objective" in kept and "best_val_loss" in kept
    assert {k: getattr(refit, k) for k in kept} == {k: getattr(first, k) for k in kept}


@pytest.mark.parametrize(
    ("objective", "served"),
    [("accuracy", 0.5), ("balanced_accuracy", "rate"), ("f1", 0.62), ("fixed:0.62", 0.62),
     (None, 0.62)],
)  # fmt: skip
def test_a_refit_serves_accuracy_objectives_at_their_anchor_and_keeps_other_cuts(
    flipped: tuple[pd.DataFrame, Splits, TrainedModel, TrainedModel],
    objective: str | None,
    served: float | str,
) -> None:
    """The offset of a cut tuned for accuracy was evidence about the model before the refit."""
    rows, _, first, _ = flipped
    tuned = dataclasses.replace(first, threshold_objective=objective, decision_threshold=0.62)
    some = rows[rows["x"] > -1]  # a subset with more positives
    assert abs(float(rows["label"].mean()) - float(some["label"].mean())) > 0.05

    for learned in (rows, some):  # the positive rate of the rows the refit learns
        expected = float(learned["label"].mean()) if served == "rate" else served
        assert refit_threshold(tuned, learned, FLIP) == pytest.approx(expected)


def test_refit_model_takes_the_threshold_of_the_rows_it_learns(
    flipped: tuple[pd.DataFrame, Splits, TrainedModel, TrainedModel],
) -> None:
    rows, _, first, refit = flipped
    moved = dataclasses.replace(first, decision_threshold=0.62)

    assert first.threshold_objective == "accuracy"  # auto on balanced classes
    assert refit.decision_threshold == 0.5
    assert refit_model(moved, rows, FLIP).decision_threshold == 0.5
    fixed = dataclasses.replace(moved, threshold_objective="fixed:0.62")
    assert refit_model(fixed, rows, FLIP).decision_threshold == 0.62


def test_a_category_seen_only_in_the_holdout_gets_its_own_index_after_the_refit(
    flipped: tuple[pd.DataFrame, Splits, TrainedModel, TrainedModel],
) -> None:
    _, splits, first, refit = flipped
    assert "c" not in set(splits.train["shop"]) | set(splits.val["shop"])
    row = splits.holdout[splits.holdout["shop"] == "c"].head(1)

    assert "c" not in first.preprocessor.categorical[0].values
    assert encode_features(row, first.preprocessor)[1][0, 0] == OOV_INDEX
    assert "c" in refit.preprocessor.categorical[0].values
    assert encode_features(row, refit.preprocessor)[1][0, 0] != OOV_INDEX


# -- the release path ------------------------------------------------------------------------


def _build(refit: bool, folder: Path) -> tuple[Candidate, TrainedModel, Splits]:
    params = dataclasses.replace(FAST, refit=refit)
    return build_candidate(
        make_contract("binary"), make_frame("binary", 1200, seed=4), params, workdir=folder,
        reason="unit test", prefer_gpu=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def refitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Candidate, TrainedModel, Splits]:
    return _build(True, tmp_path_factory.mktemp("refit"))


@pytest.fixture(scope="module")
def not_refitted(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Candidate, TrainedModel, Splits]:
    return _build(False, tmp_path_factory.mktemp("no-refit"))


def _first_model(splits: Splits, contract: Contract) -> TrainedModel:
    """Train the model before the refit again: seeded training gives the same weights."""
    return train_model(splits, contract, dataclasses.replace(FAST, refit=True))


def test_a_refit_candidate_reports_the_first_models_holdout_metrics_and_says_so(
    refitted: tuple[Candidate, TrainedModel, Splits],
) -> None:
    candidate, model, splits = refitted
    contract = make_contract("binary")
    first = _first_model(splits, contract)

    manifest = candidate.manifest
    assert manifest["refit"] == {
        "rows": 1200,
        "epochs": first.best_epoch + 1,
        "seconds": round(model.refit_seconds, 2),
        "metrics_from": "the model before the refit, on a holdout the refit then learned",
    }
    # Scored at the cut the refitted model serves with: 0.5 for `auto` on balanced classes,
    # where the first model's cut was tuned to 0.45 on its validation rows.
    assert model.threshold_objective == "accuracy" and model.decision_threshold == 0.5
    assert abs(first.decision_threshold - 0.5) > 0.01
    served = dataclasses.replace(first, decision_threshold=model.decision_threshold)
    metrics, slices = evaluate_model(served, contract, splits.holdout)
    assert manifest["metrics"] == metrics and manifest["slice_metrics"] == slices
    assert manifest["decision_threshold"] == 0.5
    assert evaluate_model(model, contract, splits.holdout)[0] != metrics  # it learned them
    assert "Refitted on all 1200 rows (holdout included)" in render_model_card(manifest)


def test_a_refit_candidate_exports_verifies_and_profiles_the_refit_model(
    refitted: tuple[Candidate, TrainedModel, Splits],
) -> None:
    candidate, model, splits = refitted
    contract = make_contract("binary")
    rows = pd.concat([splits.holdout, splits.val, splits.train], ignore_index=True)
    first = _first_model(splits, contract)

    onnx = predict_onnx(candidate.onnx_path.read_bytes(), rows, contract, prefer_gpu=False)

    report = candidate.verification
    assert report.parity_rows == 1200 and report.max_abs_diff <= report.tolerance
    np.testing.assert_allclose(onnx, predict_torch(model, rows), atol=1e-4)
    assert np.abs(onnx - predict_torch(first, rows)).max() > 1e-3
    reference = profile_from_bytes(candidate.reference)
    assert column_counts(reference, "prediction") == column_counts(reference, "label")
    counted = column_counts(reference, "prediction")
    assert counted is not None and counted.n == 1200  # every row it learned, not the train split


def test_the_gate_takes_a_refit_challengers_figure_from_its_manifest_not_its_onnx(
    refitted: tuple[Candidate, TrainedModel, Splits],
    not_refitted: tuple[Candidate, TrainedModel, Splits],
    tmp_path: Path,
) -> None:
    registry, contract = Registry(str(tmp_path / "registry")), make_contract("binary")
    champion = register_candidate(registry, MODEL, not_refitted[0], actor="tests")
    registry.promote(MODEL, champion.version, actor="tests", reason="a fixture")
    candidate, _, splits = refitted
    challenger = register_candidate(registry, MODEL, candidate, actor="tests")

    outcome = gate_challenger(registry, challenger, contract, splits.holdout, POLICY)

    holdout = splits.holdout
    own = score_onnx(registry.read_onnx(MODEL, "v2"), challenger.manifest, holdout, contract)
    old = score_onnx(registry.read_onnx(MODEL, "v1"), champion.manifest, holdout, contract)
    decision = outcome.decision
    assert decision.challenger == challenger.manifest["metrics"]["roc_auc"]
    assert decision.challenger != own["roc_auc"]
    # Its thresholded figures too: the first model's outputs at the cut the manifest serves.
    scored = challenger_scores(registry, challenger, contract, holdout)
    assert scored == pytest.approx(challenger.manifest["metrics"], abs=1e-6)
    assert decision.champion == old["roc_auc"]  # the champion is still scored through ONNX


def test_without_refit_the_candidate_is_the_first_model_as_before(
    refitted: tuple[Candidate, TrainedModel, Splits],
    not_refitted: tuple[Candidate, TrainedModel, Splits],
    tmp_path: Path,
) -> None:
    candidate, model, splits = not_refitted
    contract = make_contract("binary")

    assert "refit" not in candidate.manifest and model.refit_rows is None
    assert "Refitted" not in render_model_card(candidate.manifest)
    # The same first model: equal probabilistic metrics; the refit serves at 0.5, not the cut
    # tuned for the first model, so the thresholded ones differ.
    same, theirs = candidate.manifest["metrics"], refitted[0].manifest["metrics"]
    probabilistic = ("roc_auc", "pr_auc", "log_loss")
    assert {k: same[k] for k in probabilistic} == {k: theirs[k] for k in probabilistic}
    assert candidate.manifest["decision_threshold"] != refitted[0].manifest["decision_threshold"]
    onnx = candidate.onnx_path.read_bytes()
    scored = score_onnx(onnx, candidate.manifest, splits.holdout, contract)
    assert scored == pytest.approx(candidate.manifest["metrics"], abs=1e-3)
    reference = profile_from_bytes(candidate.reference)
    counted = column_counts(reference, "prediction")
    assert counted is not None and counted.n == len(splits.train)
    registry = Registry(str(tmp_path / "registry"))
    version = register_candidate(registry, MODEL, candidate, actor="tests")
    outcome = gate_challenger(registry, version, contract, splits.holdout, POLICY)
    assert outcome.decision.challenger == scored["roc_auc"]


def test_the_gate_compares_on_the_holdout_rows_a_refit_champion_did_not_learn(
    tmp_path: Path,
) -> None:
    registry, contract = Registry(str(tmp_path / "registry")), make_contract("binary")
    frame = make_frame("binary", 2100, seed=21)
    old, _, _ = build_candidate(contract, frame.iloc[:2000], FAST, workdir=tmp_path / "v1",
                                reason="champion", prefer_gpu=False)  # fmt: skip
    champion = register_candidate(registry, MODEL, old, actor="tests")
    registry.promote(MODEL, champion.version, actor="tests", reason="a fixture")
    # the challenger's holdout is rows 1785-2099: the champion's refit learned rows up to 1999
    new, _, splits = build_candidate(contract, frame.iloc[:2100], FAST, workdir=tmp_path / "v2",
                                     reason="challenger", prefer_gpu=False)  # fmt: skip
    challenger = register_candidate(registry, MODEL, new, actor="tests")

    outcome = gate_challenger(registry, challenger, contract, splits.holdout, POLICY)

    unseen = splits.holdout[splits.holdout["ts"] > frame["ts"].iloc[1999]]
    assert len(unseen) == 100 and len(splits.holdout) == 315
    assert "Compared on the 100 holdout rows newer than champion v1's data" in outcome.note
    fresh = score_onnx(registry.read_onnx(MODEL, "v1"), champion.manifest, unseen, contract)
    assert outcome.decision.champion == pytest.approx(fresh["roc_auc"])
    assert outcome.decision.challenger != challenger.manifest["metrics"]["roc_auc"]  # a subset
    # without the first model's outputs the subset cannot be scored for the challenger: all rows
    bare = splits.holdout[[c for c in splits.holdout.columns if not c.startswith("__")]]
    fallback = gate_challenger(registry, challenger, contract, bare, POLICY)
    assert "learned 215 of the 315 holdout rows" in fallback.note
    assert fallback.decision.challenger == challenger.manifest["metrics"]["roc_auc"]
