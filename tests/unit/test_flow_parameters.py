"""Flow parameters refuse unknown keys: a misspelt key would otherwise be dropped in silence."""

from __future__ import annotations

from typing import Any

import pytest
from prefect.exceptions import ParameterTypeError

from flows.backtest import backtest_policy_flow
from flows.monitoring import monitor_model_flow
from flows.training import train_model_flow
from flows.tuning import tune_model_flow

CASES = [
    (train_model_flow, "training", {"max_epoch": 3}),
    (train_model_flow, "gate", {"max_regresion": 0.01}),
    (train_model_flow, "data", {"uri": "rows.csv"}),
    (monitor_model_flow, "thresholds", {"drift_shar": 0.2}),
    (monitor_model_flow, "window", {"hour": 2}),
    (backtest_policy_flow, "replay", {"batches": "7d"}),
    (tune_model_flow, "search", {"trial": 5}),
]


@pytest.mark.parametrize(("flow", "parameter", "value"), CASES)
def test_an_unknown_key_in_a_flow_parameter_is_refused_by_name(
    flow: Any, parameter: str, value: dict[str, Any]
) -> None:
    key = next(iter(value))
    with pytest.raises(ParameterTypeError, match=rf"{parameter}\.{key}"):
        flow.validate_parameters({parameter: value})


def test_the_same_parameters_with_known_keys_are_accepted() -> None:
    validated = train_model_flow.validate_parameters(
        {"training": {"max_epochs": 3}, "gate": {"max_regression": 0.01}}
    )

    assert validated["training"].max_epochs == 3
    assert validated["gate"].max_regression == 0.01
