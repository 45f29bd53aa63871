"""What one training run takes: hyperparameters, devices, split fractions, window choices."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mlops.contract.spec import parse_threshold_objective


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class TrainParams:
    """How to train: hyperparameters and split fractions of one training run.

    Unknown keys are an error, not ignored: a misspelt `max_epoch` in a flow's `training`
    parameter would otherwise train with the default and say nothing.
    """

    # Also the train-model flow's `training` parameter: its form shows these descriptions.
    max_epochs: int = Field(25, ge=1, le=1000, description="Upper bound on epochs.")
    batch_size: int = Field(512, ge=8, description="Rows per optimisation step.")
    learning_rate: float = Field(2e-3, gt=0, description="AdamW learning rate.")
    weight_decay: float = Field(1e-5, ge=0, description="AdamW weight decay.")
    hidden: tuple[int, ...] = Field((128, 64), description="Hidden layer widths of the MLP.")
    dropout: float = Field(0.1, ge=0, lt=1, description="Dropout after each hidden layer.")
    patience: int = Field(4, ge=1, description="Early-stopping patience in epochs.")
    seed: int = Field(42, description="Seed for splits, initialisation and shuffling.")
    accelerator: str = Field("auto", description="auto (GPU when present), cpu, or gpu.")
    devices: int = Field(
        1,
        ge=1,
        description="Devices to train on. Over 1: a DDP process group of that many processes "
        "launched with torchrun (gloo on CPU, nccl on GPU); on GPU it holds as many slots of "
        "the gpu limit.",
    )
    strategy: Literal["auto", "ddp"] = Field(
        "auto",
        description="auto: in this process on one device, DDP with torchrun on several; "
        "ddp: always in a torchrun process group, even on one device.",
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of rows for validation.")
    holdout_fraction: float = Field(0.15, gt=0, lt=0.5, description="Newest share for holdout.")
    max_vocab: int = Field(5000, ge=1, description="Most categories kept per categorical column.")
    min_category_count: int = Field(
        2, ge=1, description="Training rows a category needs for its own index (else unseen)."
    )
    threshold_objective: Annotated[str, AfterValidator(parse_threshold_objective)] | None = Field(
        None,
        description="Binary models: what the decision threshold is tuned for on validation: "
        "auto (f1 when under 20% of training rows are positive, else accuracy), f1, accuracy, "
        "balanced_accuracy, or fixed:<p> (e.g. fixed:0.5). Empty: the contract's, else auto.",
    )
    refit: bool = Field(
        True,
        description="After evaluation, retrain on every row of the window (validation and "
        "holdout included) for the epochs early stopping chose, and serve that model: it has "
        "learned the newest rows. Holdout metrics and the gate use the model before the refit.",
    )
    recency_half_life: float | None = Field(
        None,
        gt=0,
        description="Weigh training rows by recency: a row older than the newest by this share "
        "of the rows learned weighs half as much (1: the oldest row weighs half the newest). "
        "Empty: every row weighs the same, or see adapt_recency. Validation, holdout and the "
        "gate are unweighted.",
    )
    adapt_recency: bool = Field(
        True,
        description="Without recency_half_life: also train with recency weights (half-life a "
        "quarter of the rows learned) and keep that model when it beats the unweighted one on "
        "the newest validation rows by two standard errors.",
    )
    adapt_window: bool = Field(
        True,
        description="When the champion's per-row loss steps up inside the window (a change of "
        "concept), also train on the rows since the change only, and keep that model when it "
        "beats the whole window's on the newest rows by two standard errors.",
    )


def params_dict(params: TrainParams) -> dict[str, Any]:
    """Return the parameters as a JSON-ready dict."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(params).items()}
