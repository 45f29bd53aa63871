"""Contracts: every rejection names its key; derived properties; schema round trips."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops.contract.loader import load_contract, parse_contract
from mlops.contract.schema import build_schema, load_custom_model
from mlops.contract.spec import ColumnSpec, Contract, ContractError
from mlops.data.validate import validate_frame

ROOT = Path(__file__).resolve().parents[2]
TEST_CONTRACTS = ROOT / "tests" / "contracts"
FAST = settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))

BASE: dict[str, Any] = {
    "name": "toy",
    "description": "A toy contract.",
    "columns": {
        "key": {"role": "id", "dtype": "string"},
        "at": {"role": "timestamp", "dtype": "datetime"},
        "size": {"role": "feature", "dtype": "float", "checks": {"min": 0, "max": 10}},
        "colour": {"role": "feature", "dtype": "string", "checks": {"allowed": ["red", "blue"]}},
        "label": {"role": "target", "dtype": "int", "task": "binary", "classes": [0, 1]},
    },
}


def doc(**column_edits: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of BASE with some columns' keys replaced (None removes the key)."""
    out = copy.deepcopy(BASE)
    for name, edits in column_edits.items():
        spec = out["columns"].setdefault(name, {})
        for key, value in edits.items():
            if value is None:
                spec.pop(key, None)
            else:
                spec[key] = value
    return out


def penguins() -> Contract:
    return load_contract(TEST_CONTRACTS / "penguins.yaml")


@pytest.mark.parametrize(
    ("document", "named"),
    [
        ({**BASE, "owner": "me"}, "'owner'"),
        ({**BASE, "name": "Not Valid"}, "'name'"),
        ({**BASE, "columns": {}}, "'columns'"),
        ({**BASE, "version": "one"}, "'version'"),
        (doc(size={"units": "cm"}), "unknown key 'units'"),
        (doc(size={"checks": {"minimum": 0}}), "unknown key 'minimum'"),
        (doc(size={"checks": {"min": "zero"}}), "'min' must be a number"),
        (doc(size={"checks": {"min": 5, "max": 1}}), "checks.min"),
        (doc(colour={"checks": {"allowed": "red"}}), "'allowed' must be a list"),
        (doc(colour={"checks": {"regex": "([a-z"}}), "checks.regex"),
        (doc(size={"checks": {"regex": "^a"}}), "'regex' needs dtype string"),
        (doc(colour={"checks": {"min": 1}}), "'min'/'max' need dtype float or int"),
        (doc(label={"role": "feature", "task": None, "classes": None}), "'role: target'"),
        (doc(size={"dtype": None}), "'dtype'"),
        (doc(size={"role": "input"}), "'role'"),
        (doc(size={"kind": "ordinal"}), "'kind'"),
        (doc(colour={"kind": "numeric"}), "'kind: numeric'"),
        (doc(key={"kind": "categorical"}), "'kind' applies to features only"),
        (
            doc(stamp={"role": "feature", "dtype": "datetime"}),
            "datetime column cannot be a feature",
        ),
        (doc(label={"task": None}), "'task'"),
        (doc(label={"task": "regression"}), "'classes' does not apply to regression"),
        (doc(label={"classes": [0, 1, 2]}), "exactly 2 classes"),
        (doc(label={"nullable": True}), "target cannot be nullable"),
        (doc(size={"task": "binary"}), "'task' and 'classes' apply to the target only"),
        (doc(second={"role": "timestamp", "dtype": "datetime"}), "role 'timestamp'"),
        (doc(other={"role": "id", "dtype": "string"}), "role 'id'"),
        (doc(at={"dtype": "string"}), "timestamp column needs dtype datetime"),
        (doc(key={"nullable": True}), "id column cannot be nullable"),
        (doc(key={"slice": True}), "'slice' applies to features only"),
        (doc(label={"dtype": "datetime", "classes": None}), "target cannot have dtype datetime"),
    ],
)
def test_rejected_contract_names_the_key(document: dict[str, Any], named: str) -> None:
    with pytest.raises(ContractError, match="contract") as info:
        parse_contract(document)
    assert named in str(info.value)


def test_column_that_is_not_a_mapping_is_rejected_by_name() -> None:
    with pytest.raises(ContractError, match="column 'size'"):
        parse_contract({**BASE, "columns": {**BASE["columns"], "size": "float"}})


def test_invalid_yaml_and_non_mapping_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ContractError, match="not valid YAML"):
        load_contract(tmp_path / "bad.yaml")
    with pytest.raises(ContractError, match="mapping at the top level"):
        load_contract(tmp_path / "list.yaml")


def test_defaults_fill_kind_from_dtype_and_flags() -> None:
    contract = parse_contract(doc(flag={"role": "feature", "dtype": "bool"}))
    assert contract.column("size").kind == "numeric"
    assert contract.column("colour").kind == "categorical"
    assert contract.column("flag").kind == "categorical"
    assert contract.column("key").kind is None
    assert contract.strict is True
    assert not contract.column("size").nullable
    assert contract.column("size").checks.min == 0.0
    assert contract.column("colour").checks.allowed == ("red", "blue")


def test_derived_properties_of_the_multiclass_contract() -> None:
    contract = penguins()
    assert contract.name == "penguins"
    assert contract.task == "multiclass"
    assert contract.id_column == "tag"
    assert contract.timestamp_column == "observed_at"
    assert contract.target.name == "species"
    assert contract.target.classes == ("Adelie", "Chinstrap", "Gentoo")
    assert contract.feature_names == (
        "bill_length_mm", "flipper_length_mm", "island", "banded",
    )  # fmt: skip
    assert [c.name for c in contract.numeric_features] == ["bill_length_mm", "flipper_length_mm"]
    assert [c.name for c in contract.categorical_features] == ["island", "banded"]
    assert contract.slice_columns == ("island",)
    with pytest.raises(KeyError, match="no column 'beak'"):
        contract.column("beak")


def test_regression_contract_without_id_or_timestamp() -> None:
    contract = load_contract(TEST_CONTRACTS / "house_prices.yaml")
    assert contract.task == "regression"
    assert contract.id_column is None
    assert contract.timestamp_column is None
    assert contract.column("rooms").kind == "categorical"
    assert isinstance(contract.column("rooms"), ColumnSpec)


def test_fingerprint_ignores_key_order_formatting_and_descriptions(tmp_path: Path) -> None:
    original = penguins()
    text = (TEST_CONTRACTS / "penguins.yaml").read_text()
    document = yaml.safe_load(text)
    reordered = {key: document[key] for key in reversed(list(document))}
    reordered["columns"] = {
        name: {key: spec[key] for key in reversed(list(spec))}
        for name, spec in document["columns"].items()
    }
    reordered["description"] = "Edited prose."
    reordered["version"] = 7
    reordered["columns"]["island"]["description"] = "Where the bird was seen."
    reordered["columns"]["bill_length_mm"]["checks"]["min"] = 30.0
    path = tmp_path / "penguins.yaml"
    path.write_text(yaml.safe_dump(reordered, default_flow_style=True, sort_keys=False))
    assert load_contract(path).fingerprint == original.fingerprint
    assert len(original.fingerprint) == 64


@pytest.mark.parametrize(
    ("column", "edit"),
    [
        ("size", {"checks": {"min": 0, "max": 11}}),
        ("colour", {"checks": {"allowed": ["red", "blue", "green"]}}),
        ("colour", {"nullable": True}),
        ("size", {"dtype": "int"}),
    ],
)
def test_fingerprint_changes_when_a_check_changes(column: str, edit: dict[str, Any]) -> None:
    assert parse_contract(doc(**{column: edit})).fingerprint != parse_contract(BASE).fingerprint


def test_fingerprint_changes_with_column_order() -> None:
    swapped = copy.deepcopy(BASE)
    swapped["columns"] = dict(reversed(list(BASE["columns"].items())))
    assert parse_contract(swapped).fingerprint != parse_contract(BASE).fingerprint


def test_schema_without_target_leaves_the_target_out() -> None:
    contract = penguins()
    assert "species" in build_schema(contract).columns
    assert "species" not in build_schema(contract, with_target=False).columns


def test_custom_checks_that_cannot_be_imported_name_the_key() -> None:
    contract = parse_contract({**BASE, "custom_checks": "no_such_module_xyz:Model"})
    with pytest.raises(ContractError, match="custom_checks"):
        load_custom_model(contract)


SHIPPED = sorted((ROOT / "contracts").glob("*.yaml"))


@pytest.mark.skipif(not SHIPPED, reason="no contracts/*.yaml shipped yet")
@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_contracts_load(path: Path) -> None:
    contract = load_contract(path)
    assert contract.features
    assert build_schema(contract) is not None


# -- rows drawn from the schema pass; rows broken on one check are quarantined for it ----------


def violations(spec: ColumnSpec) -> list[Any]:
    """Return values that each break one declared check of `spec`."""
    c, bad = spec.checks, []
    if c.min is not None:
        bad.append(c.min - 1)
    if c.max is not None:
        bad.append(c.max + 1)
    if c.allowed is not None or spec.classes is not None:
        bad.append("not-a-declared-value")
    if c.regex is not None:
        bad.append("!! no match")
    if not spec.nullable:
        bad.append(None)
    if spec.dtype in ("int", "float", "datetime", "bool"):
        bad.append("not parseable")
    return bad


def breakable(contract: Contract) -> list[tuple[str, Any]]:
    return [(spec.name, value) for spec in contract.columns for value in violations(spec)]


@pytest.mark.filterwarnings("ignore::UserWarning")
@FAST
@given(data=st.data())
def test_rows_drawn_from_the_schema_pass_validation(data: st.DataObject) -> None:
    for contract in (penguins(), load_contract(TEST_CONTRACTS / "house_prices.yaml")):
        frame = data.draw(build_schema(contract).strategy(size=5))
        result = validate_frame(frame, contract)
        assert result.n_quarantined == 0, result.quarantined.to_dict("records")
        assert result.n_valid == len(frame)


@pytest.mark.filterwarnings("ignore::UserWarning")
@FAST
@given(data=st.data())
def test_a_row_broken_on_one_check_is_quarantined_naming_the_column(data: st.DataObject) -> None:
    contract = penguins()
    frame = data.draw(build_schema(contract).strategy(size=4)).reset_index(drop=True)
    column, value = data.draw(st.sampled_from(breakable(contract)))
    row = data.draw(st.integers(0, len(frame) - 1))
    broken = frame.astype(object)
    broken.loc[row, column] = value
    result = validate_frame(broken, contract)
    assert result.quarantined["_row"].tolist() == [row]
    assert f"{column}: " in result.quarantined["_reason"].iloc[0]
    assert result.n_valid == len(frame) - 1


@FAST
@given(data=st.data())
def test_a_duplicated_unique_value_quarantines_both_rows(data: st.DataObject) -> None:
    contract = penguins()
    frame = pd.DataFrame(
        {
            "tag": ["P0001", "P0002", "P0003"],
            "observed_at": ["2024-05-01", "2024-05-02", "2024-05-03"],
            "bill_length_mm": [40.0, 41.0, 42.0],
            "flipper_length_mm": [190, None, 200],
            "island": ["Dream", "Biscoe", "Torgersen"],
            "banded": [True, False, True],
            "species": ["Adelie", "Gentoo", "Chinstrap"],
        }
    )
    first, second = data.draw(st.lists(st.integers(0, 2), min_size=2, max_size=2, unique=True))
    frame.loc[second, "tag"] = frame.loc[first, "tag"]
    result = validate_frame(frame, contract)
    assert sorted(result.quarantined["_row"]) == sorted([first, second])
    assert result.quarantined["_reason"].str.contains("tag: field_uniqueness").all()


def test_the_api_example_of_an_int_column_with_a_minimum_is_an_int_the_api_accepts() -> None:
    from mlops.contract.api_model import build_record_model, example_record

    contract = parse_contract(
        {
            "name": "seasons",
            "columns": {
                "season": {"role": "feature", "dtype": "int", "checks": {"min": 1.0, "max": 4}},
                "hour": {"role": "feature", "dtype": "int"},
                "temp": {"role": "feature", "dtype": "float", "checks": {"min": -10.5}},
                "y": {"role": "target", "dtype": "float", "task": "regression"},
            },
        }
    )

    example = example_record(contract)

    assert example == {"season": 1, "hour": 0, "temp": -10.5}
    assert isinstance(example["season"], int) and isinstance(example["hour"], int)
    build_record_model(contract).model_validate(example)  # the documented example is accepted


@pytest.mark.parametrize(
    ("objective", "expected"),
    [("accuracy", "accuracy"), ("F1", "f1"), ("fixed:0.25", "fixed:0.25"), (None, None)],
)
def test_the_target_threshold_objective_is_read_and_normalised(
    objective: str | None, expected: str | None
) -> None:
    contract = parse_contract(doc(label={"threshold_objective": objective}))

    assert contract.target.threshold_objective == expected


@pytest.mark.parametrize(
    ("edits", "named"),
    [
        ({"label": {"threshold_objective": "fixed:1.5"}}, "allowed are auto, f1, accuracy"),
        ({"label": {"threshold_objective": "foo"}}, "unknown threshold objective 'foo'"),
        ({"label": {"threshold_objective": 0.5}}, "'threshold_objective'"),
        ({"size": {"threshold_objective": "f1"}}, "applies to a binary target only"),
        (
            {"label": {"task": "multiclass", "classes": None, "threshold_objective": "f1"}},
            "applies to a binary target only",
        ),
    ],
)
def test_an_invalid_threshold_objective_is_a_contract_error(
    edits: dict[str, dict[str, Any]], named: str
) -> None:
    with pytest.raises(ContractError, match="column '") as info:
        parse_contract(doc(**edits))

    assert named in str(info.value)


def test_the_threshold_objective_leaves_the_fingerprint_alone() -> None:
    chosen = parse_contract(doc(label={"threshold_objective": "balanced_accuracy"}))

    assert chosen.fingerprint == parse_contract(BASE).fingerprint
