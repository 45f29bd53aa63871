"""Tests of the release steps: prepare a candidate, register it, gate it, promote it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops.contract.loader import parse_contract
from mlops.contract.spec import Contract
from mlops.inference.scoring import score_onnx
from mlops.monitoring.profile import profile_columns, profile_from_bytes
from mlops.registry.store import ConcurrentUpdateError, ModelVersion, Registry
from mlops.release.build import train_and_register
from mlops.release.candidate import (
    CHALLENGER_REASON,
    Candidate,
    prepare_candidate,
    register_candidate,
    register_challenger,
)
from mlops.release.card import render_model_card
from mlops.release.gate import GatePolicy
from mlops.release.gating import gate_challenger, promote_challenger
from mlops.release.lineage import data_lineage
from mlops.training.train import Splits, TrainedModel, evaluate_model, split_by_time, train_model
from tests.support.synthetic import FAST, FEATURES, TARGETS, make_contract, make_frame, trained

MODEL = "release-test"
POLICY = GatePolicy(metric="roc_auc", floor=0.55, max_regression=0.05)  # the tiny model: ~0.6


def _holdout() -> pd.DataFrame:
    """Fresh rows after the training rows, enough for the export's parity check."""
    return make_frame("binary", 1200, seed=11, start="2026-03-01")


def _splits(frame: pd.DataFrame, holdout: pd.DataFrame) -> Splits:
    """Split like training, with the given holdout."""
    base = split_by_time(frame)
    return Splits(base.train, base.val, holdout)


def _prepare(model: TrainedModel, contract: Contract, splits: Splits, workdir: Path) -> Candidate:
    metrics, slices = evaluate_model(model, contract, splits.holdout)
    rows = pd.concat([splits.train, splits.val, splits.holdout], ignore_index=True)
    return prepare_candidate(
        model, contract, splits, workdir=workdir,
        data=data_lineage("memory://rows", None, splits, contract, rows),
        metrics=metrics, slice_metrics=slices, flow_run_id="run-1", reason="unit test",
        prefer_gpu=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def candidate(tmp_path_factory: pytest.TempPathFactory) -> Candidate:
    """A candidate of the session's small binary model."""
    contract, model = trained("binary")
    splits = _splits(make_frame("binary", 800, seed=1), _holdout())
    return _prepare(model, contract, splits, tmp_path_factory.mktemp("candidate"))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(str(tmp_path / "registry"))


def _champion(registry: Registry, candidate: Candidate) -> ModelVersion:
    version = register_challenger(registry, MODEL, candidate, actor="tests")
    outcome = gate_challenger(registry, version, make_contract("binary"), _holdout(), POLICY)
    assert promote_challenger(registry, outcome, actor="tests")
    return version


def test_prepared_candidate_holds_a_verified_export_its_manifest_and_reference(
    candidate: Candidate,
) -> None:
    contract, _ = trained("binary")
    manifest = candidate.manifest

    assert candidate.onnx_path.name == "model.onnx" and candidate.onnx_path.is_file()
    assert candidate.verification.parity_rows >= 1000
    assert manifest["verification"] == candidate.verification.to_dict()
    assert (manifest["reason"], manifest["flow_run_id"]) == ("unit test", "run-1")
    assert manifest["data"]["uri"] == "memory://rows" and manifest["data"]["holdout_rows"] == 1200
    assert set(manifest["metrics"]) >= {"roc_auc"} and manifest["slice_metrics"]
    columns = set(profile_columns(profile_from_bytes(candidate.reference)))
    outputs = {"prediction", "probability_0", "probability_1"}
    assert columns == {*contract.feature_names, contract.target.name, *outputs}


def test_registered_challenger_gets_the_alias_and_the_model_card(
    registry: Registry, candidate: Candidate
) -> None:
    version = register_challenger(registry, MODEL, candidate, actor="alice")

    assert version.version == "v1"
    assert registry.aliases(MODEL).aliases == {"challenger": "v1"}
    last = registry.history(MODEL)[-1]
    assert (last["actor"], last["reason"]) == ("alice", CHALLENGER_REASON)
    card = (Path(version.uri) / "model_card.md").read_text()
    assert card == render_model_card(candidate.manifest)
    assert registry.read_reference_profile(MODEL, "v1") == candidate.reference


def test_first_version_is_gated_on_the_floor_and_promoted(
    registry: Registry, candidate: Candidate
) -> None:
    version = register_challenger(registry, MODEL, candidate, actor="tests")

    outcome = gate_challenger(registry, version, make_contract("binary"), _holdout(), POLICY)

    assert outcome.decision.promote and outcome.decision.champion is None
    assert outcome.decision.verdict.startswith("v1 is promoted as the first champion")
    assert outcome.note == ""
    assert promote_challenger(registry, outcome, actor="bob")
    assert registry.aliases(MODEL).aliases == {"champion": "v1"}
    last = registry.history(MODEL)[-1]
    assert (last["event"], last["actor"], last["reason"]) == (
        "promoted",
        "bob",
        outcome.decision.verdict,
    )


def test_challenger_and_champion_are_scored_through_onnx_on_the_same_holdout(
    registry: Registry, candidate: Candidate
) -> None:
    contract, holdout = make_contract("binary"), _holdout()
    first = _champion(registry, candidate)
    second = register_challenger(registry, MODEL, candidate, actor="tests")

    outcome = gate_challenger(registry, second, contract, holdout, POLICY)

    expected = score_onnx(registry.read_onnx(MODEL, "v1"), first.manifest, holdout, contract)
    decision = outcome.decision
    assert (decision.champion_version, decision.champion) == ("v1", expected["roc_auc"])
    assert decision.challenger == expected["roc_auc"]  # the same export, scored the same way
    assert decision.promote and "vs champion v1" in decision.verdict


def test_refused_challenger_is_not_promoted(registry: Registry, candidate: Candidate) -> None:
    _champion(registry, candidate)
    challenger = register_challenger(registry, MODEL, candidate, actor="tests")
    strict = GatePolicy(metric="roc_auc", floor=0.9999, max_regression=0.0)

    outcome = gate_challenger(registry, challenger, make_contract("binary"), _holdout(), strict)

    assert not outcome.decision.promote and "misses the floor" in outcome.decision.verdict
    assert not promote_challenger(registry, outcome, actor="tests")
    assert registry.aliases(MODEL).aliases == {"champion": "v1", "challenger": "v2"}


def test_a_stale_expected_revision_does_not_promote(
    registry: Registry, candidate: Candidate
) -> None:
    _champion(registry, candidate)
    challenger = register_challenger(registry, MODEL, candidate, actor="tests")
    outcome = gate_challenger(registry, challenger, make_contract("binary"), _holdout(), POLICY)
    assert outcome.decision.promote
    registry.set_alias(MODEL, "canary", "v1", actor="someone else")  # moves the revision on

    with pytest.raises(ConcurrentUpdateError, match="someone changed them"):
        promote_challenger(registry, outcome, actor="tests")

    assert registry.aliases(MODEL).aliases["champion"] == "v1"
    assert [h["event"] for h in registry.history(MODEL)].count("promoted") == 1


def _wider() -> tuple[Contract, pd.DataFrame]:
    """A contract with one more feature than the synthetic one, and rows that have it."""
    columns: dict[str, Any] = {
        "txn_id": {"role": "id", "dtype": "string"},
        "ts": {"role": "timestamp", "dtype": "datetime"},
        **FEATURES,
        "loyalty": {"role": "feature", "dtype": "float"},
        "label": TARGETS["binary"],
    }
    contract = parse_contract({"name": "synthetic-wider", "columns": columns}, source="wider")
    frame = make_frame("binary", 800, seed=3)
    return contract, frame.assign(loyalty=np.random.default_rng(3).normal(size=len(frame)))


def test_a_champion_the_rows_cannot_feed_leaves_the_decision_to_the_floor(
    registry: Registry, candidate: Candidate, tmp_path: Path
) -> None:
    wide, frame = _wider()
    splits = _splits(frame, _holdout().assign(loyalty=0.5))
    old = _prepare(train_model(splits, wide, FAST), wide, splits, tmp_path)
    champion = register_candidate(registry, MODEL, old, actor="tests")
    registry.promote(MODEL, champion.version, actor="tests", reason="an older contract")
    challenger = register_challenger(registry, MODEL, candidate, actor="tests")

    outcome = gate_challenger(registry, challenger, make_contract("binary"), _holdout(), POLICY)

    decision = outcome.decision
    assert decision.champion is None and decision.champion_version is None
    assert decision.promote and decision.floor_passed
    assert outcome.note.startswith("\n\nChampion v1 cannot score these rows (")
    assert "['loyalty']" in outcome.note and outcome.note.endswith("; floor only.\n")


def test_train_and_register_builds_a_version_as_the_flow_does(registry: Registry) -> None:
    contract = make_contract("binary")
    params = dataclasses.replace(FAST, holdout_fraction=0.45)  # 1080 holdout rows for parity
    rows = make_frame("binary", 2400, seed=5)

    built = train_and_register(
        registry, MODEL, contract, rows, params,
        actor="tests", reason="a fixture", data_uri="memory://x", promote=True, prefer_gpu=False,
    )  # fmt: skip

    manifest = built.version.manifest
    assert registry.aliases(MODEL).aliases == {"champion": built.version.version}
    assert manifest["data"]["uri"] == "memory://x" and manifest["data"]["holdout_rows"] == 1080
    assert manifest["reason"] == "a fixture" and manifest["metrics"]["roc_auc"] > 0.5
    assert manifest["verification"] == built.verification.to_dict()
    reference = profile_from_bytes(registry.read_reference_profile(MODEL, built.version.version))
    assert {"label", "prediction", "probability_1"} <= set(profile_columns(reference))


def test_a_challenger_whose_own_threshold_costs_accuracy_is_refused_despite_the_same_auc(
    registry: Registry, candidate: Candidate
) -> None:
    contract, holdout = make_contract("binary"), _holdout()
    _champion(registry, candidate)
    manifest = {
        **candidate.manifest,
        "decision_threshold": 0.999,
        "threshold_objective": "accuracy",
    }
    worse = register_challenger(
        registry, MODEL, dataclasses.replace(candidate, manifest=manifest), actor="tests"
    )

    outcome = gate_challenger(registry, worse, contract, holdout, POLICY)

    decision = outcome.decision
    own = score_onnx(registry.read_onnx(MODEL, "v1"), candidate.manifest, holdout, contract)
    assert decision.delta == 0.0 and decision.regression_passed  # same export: same AUC
    assert decision.decision_metric == "accuracy"
    assert decision.decision_champion == own["accuracy"]
    assert decision.decision_champion - decision.decision_challenger > 0.02
    assert not decision.promote and "its accuracy at its own threshold" in decision.verdict
