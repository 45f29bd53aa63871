"""Tests of the preprocessing fitted on the training split: vocabularies, stats, target encoding."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlops.training.features import (
    OOV_INDEX,
    Preprocessor,
    TargetEncoding,
    Vocabulary,
    categorical_strings,
    category_strings,
    encode_features,
    encode_target,
    fit_preprocessor,
    numeric_array,
    numeric_values,
)
from tests.support.synthetic import make_contract, make_frame


def test_vocabulary_lookup_maps_known_values_to_their_position_plus_one() -> None:
    vocab = Vocabulary("city", ("lyon", "oslo", "paris"))

    assert vocab.lookup(pd.Series(["paris", "lyon", "oslo"])).tolist() == [3, 1, 2]
    assert vocab.size == 4


def test_vocabulary_lookup_maps_unseen_and_missing_values_to_the_oov_index() -> None:
    vocab = Vocabulary("city", ("lyon", "paris"))

    found = vocab.lookup(pd.Series(["atlantis", None, np.nan, "paris"], dtype=object))

    assert found.tolist() == [OOV_INDEX, OOV_INDEX, OOV_INDEX, 2]
    assert found.dtype == np.int64


def test_fit_preprocessor_sends_values_rarer_than_min_count_to_oov() -> None:
    contract = make_contract("binary")
    train = make_frame("binary", 200, seed=3)
    train["city"] = ["paris"] * 150 + ["lyon"] * 49 + ["oslo"]

    prep = fit_preprocessor(train, contract, min_count=2)
    city = next(v for v in prep.categorical if v.name == "city")

    assert city.values == ("lyon", "paris")
    assert city.lookup(pd.Series(["oslo"])).tolist() == [OOV_INDEX]


def test_fit_preprocessor_keeps_at_most_max_vocab_most_frequent_values() -> None:
    contract = make_contract("binary")
    train = make_frame("binary", 100, seed=3)
    train["city"] = ["paris"] * 50 + ["lyon"] * 30 + ["oslo"] * 20

    prep = fit_preprocessor(train, contract, max_vocab=2)
    city = next(v for v in prep.categorical if v.name == "city")

    assert city.values == ("lyon", "paris")


def test_numeric_stats_come_from_the_frame_they_are_fitted_on_ignoring_nulls() -> None:
    contract = make_contract("regression")
    train = make_frame("regression", 300, seed=3)
    later = make_frame("regression", 300, seed=4)
    later["rating"] += 50.0

    prep = fit_preprocessor(train, contract)
    stats = {s.name: s for s in prep.numeric}

    assert stats["rating"].mean == pytest.approx(train["rating"].mean(), rel=1e-6)
    assert stats["rating"].std == pytest.approx(train["rating"].std(ddof=0), rel=1e-6)
    assert stats["amount"].mean == pytest.approx(np.nanmean(train["amount"]), rel=1e-6)
    assert stats["amount"].null_indicator and not stats["rating"].null_indicator
    assert abs(stats["rating"].mean - pd.concat([train, later])["rating"].mean()) > 10


def test_constant_numeric_column_gets_unit_std_so_scaling_cannot_divide_by_zero() -> None:
    contract = make_contract("binary")
    train = make_frame("binary", 50, seed=3)
    train["rating"] = 2.5

    stats = {s.name: s for s in fit_preprocessor(train, contract).numeric}

    assert stats["rating"].mean == 2.5 and stats["rating"].std == 1.0


@pytest.mark.parametrize("dtype", ["bool", "boolean"])
def test_boolean_categoricals_render_as_lowercase_true_and_false(dtype: str) -> None:
    series = pd.Series([True, False, True], dtype=dtype)

    assert categorical_strings(series).tolist() == ["true", "false", "true"]


def test_nullable_boolean_categorical_renders_missing_as_null() -> None:
    series = pd.Series([True, None], dtype="boolean")

    rendered = categorical_strings(series)

    assert rendered.iloc[0] == "true" and pd.isna(rendered.iloc[1])


def test_categorical_strings_render_ints_as_digits_and_keep_missing_as_null() -> None:
    assert categorical_strings(pd.Series([1, 2, 3])).tolist() == ["1", "2", "3"]
    assert categorical_strings(pd.Series([1, None], dtype="Int64")).iloc[0] == "1"
    assert pd.isna(categorical_strings(pd.Series(["a", None], dtype=object)).iloc[1])


def test_numeric_values_are_float32_with_nan_for_missing_and_bools_as_0_1() -> None:
    values = numeric_values(pd.Series([1.5, None, 3.0], dtype="Float64"))
    flags = numeric_values(pd.Series([True, False]))

    assert values.dtype == np.float32
    assert values[0] == 1.5 and np.isnan(values[1])
    assert flags.tolist() == [1.0, 0.0]


def test_encode_features_returns_numeric_and_category_matrices_in_contract_order() -> None:
    contract = make_contract("binary")
    frame = make_frame("binary", 40, seed=3)
    prep = fit_preprocessor(frame, contract, min_count=1)

    num, cat = encode_features(frame, prep)

    assert num.shape == (40, 3) and num.dtype == np.float32
    assert cat.shape == (40, 4) and cat.dtype == np.int64
    assert [s.name for s in prep.numeric] == ["amount", "age", "rating"]
    assert [v.name for v in prep.categorical] == ["city", "is_member", "tier", "channel"]
    assert np.isnan(num[:, 0]).sum() == frame["amount"].isna().sum()
    assert (cat[frame["channel"].isna().to_numpy(), 3] == OOV_INDEX).all()


def test_preprocessor_survives_a_json_round_trip_through_to_dict_and_from_dict() -> None:
    for task in ("binary", "multiclass", "regression"):
        prep = fit_preprocessor(make_frame(task, 200, seed=3), make_contract(task))

        rebuilt = Preprocessor.from_dict(json.loads(json.dumps(prep.to_dict())))

        assert rebuilt == prep


def test_encode_target_maps_classes_to_indices_and_binary_to_float_0_1() -> None:
    multi = TargetEncoding("multiclass", ("low", "mid", "high"))
    binary = TargetEncoding("binary", (0, 1))

    codes = encode_target(pd.Series(["high", "low", "mid"]), multi)
    flags = encode_target(pd.Series(np.array([1, 0, 1])), binary)

    assert codes.tolist() == [2, 0, 1] and codes.dtype == np.int64
    assert flags.tolist() == [1.0, 0.0, 1.0] and flags.dtype == np.float32


def test_encode_target_standardises_regression_values() -> None:
    encoding = TargetEncoding("regression", None, mean=10.0, std=2.0)

    assert encode_target(pd.Series([10.0, 14.0]), encoding).tolist() == [0.0, 2.0]


def test_encode_target_names_the_values_missing_from_the_classes() -> None:
    encoding = TargetEncoding("multiclass", ("low", "mid", "high"))

    with pytest.raises(ValueError, match=r"\['extreme', 'unknown'\].*not among the classes"):
        encode_target(pd.Series(["low", "extreme", "unknown", "extreme"]), encoding)


def test_binary_target_with_a_single_class_in_training_data_is_refused() -> None:
    contract = make_contract("binary", classes=None)
    train = make_frame("binary", 50, seed=3)
    train["label"] = 1

    with pytest.raises(ValueError, match=r"binary target 'label' needs 2 classes.*found \(1,\)"):
        fit_preprocessor(train, contract)


def test_classes_default_to_the_sorted_training_values_when_the_contract_omits_them() -> None:
    contract = make_contract("multiclass", classes=None)
    train = make_frame("multiclass", 300, seed=3)

    prep = fit_preprocessor(train, contract)

    assert prep.target.classes == ("high", "low", "mid")
    assert prep.target.n_outputs == 3


@pytest.mark.parametrize(
    "values",
    [
        [True, False, True],
        [True, None, False],  # a nullable boolean with a null: still true/false
        ["paris", None, "lyon"],
        [3, 14, 3],
        [None, None, None],
    ],
    ids=["bools", "bools with null", "strings", "ints", "all null"],
)
def test_category_strings_of_plain_values_match_the_training_rendering(values) -> None:
    # training frames hold nullable dtypes (boolean, Int64, string), which categorical_strings sees
    dtype = {bool: "boolean", int: "Int64", str: "string"}.get(
        type(next((v for v in values if v is not None), None)), object
    )
    expected = categorical_strings(pd.Series(values, dtype=dtype)).tolist()

    rendered = category_strings(values)

    assert [None if pd.isna(v) else v for v in expected] == rendered


def test_numeric_array_of_plain_values_matches_numeric_values() -> None:
    values = [1.5, None, 3, True, 1e-8, 123456789]

    found = numeric_array(values)

    assert found.dtype == np.float32
    np.testing.assert_array_equal(found, numeric_values(pd.Series(values, dtype=object)))
