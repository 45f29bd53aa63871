"""Compare a window's profile with a reference profile, column by column, and say what drifted.

Numeric columns get whylogs' sketch-based Kolmogorov-Smirnov test, categorical columns a two-sample
chi-square test on their frequent-item counts; both also get a Hellinger distance. With thousands of
rows a test flags differences too small to matter, so a column counts as drifting only when it is
both significant (p-value below `alpha`) and large (KS statistic D for numeric columns, Hellinger
distance for categorical ones, at or above its threshold).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from scipy import stats

from mlops.contract.spec import Contract
from mlops.monitoring.profile import (
    ProfileView,
    column_counts,
    column_distribution,
    column_frequent_items,
    ks_test,
    profile_columns,
)

Kind = Literal["numeric", "categorical"]
Role = Literal["feature", "output"]
Category = Literal["none", "possible", "drift"]
# Numeric Hellinger distances bin both sides on 20 quantile bins of the reference.
_BIN_FRACTIONS = tuple(i / 20 for i in range(1, 20))


@dataclass(frozen=True)
class DriftThresholds:
    """When a column drifts: p-value below `alpha` AND effect size at or above its threshold.

    Defaults calibrated on the simulator (5000-row daily windows against 14 reference days): see
    tests/unit/test_detection_quality.py.
    """

    alpha: float = 0.05
    ks_statistic: float = 0.02  # numeric columns: the KS statistic D
    hellinger: float = 0.015  # categorical columns: the Hellinger distance

    def effect_threshold(self, kind: Kind) -> float:
        """Return the effect size a column of this kind must reach to count as drifting."""
        return self.ks_statistic if kind == "numeric" else self.hellinger


@dataclass(frozen=True)
class DriftRow:
    """The drift test of one column; scores are None where they could not be computed (see note)."""

    feature: str
    kind: Kind
    role: Role
    test: Literal["ks", "chi-square"]
    statistic: float | None = None
    p_value: float | None = None
    effect_size: float | None = None
    hellinger: float | None = None
    drifted: bool = False
    category: Category = "none"
    note: str = ""


@dataclass(frozen=True)
class DriftReport:
    """Per-column drift of a window against a reference, with the share of drifting features."""

    rows: tuple[DriftRow, ...]
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)

    @property
    def drifted_features(self) -> tuple[str, ...]:
        return tuple(row.feature for row in self.rows if row.role == "feature" and row.drifted)

    @property
    def n_features(self) -> int:
        return sum(row.role == "feature" for row in self.rows)

    @property
    def share_drifted(self) -> float:
        """Return the share of feature columns (model outputs excluded) that drifted."""
        return len(self.drifted_features) / self.n_features if self.n_features else 0.0

    @property
    def prediction_drifted(self) -> bool:
        """Tell whether any model output column drifted."""
        return any(row.drifted for row in self.rows if row.role == "output")

    def to_rows(self) -> list[dict[str, Any]]:
        """Return one JSON-safe dict per column, for a table artifact."""
        return [asdict(row) for row in self.rows]

    def to_dict(self) -> dict[str, Any]:
        """Return the whole report as JSON-safe values."""
        return {
            "share_drifted": self.share_drifted,
            "n_features": self.n_features,
            "drifted_features": list(self.drifted_features),
            "prediction_drifted": self.prediction_drifted,
            "thresholds": asdict(self.thresholds),
            "columns": self.to_rows(),
        }


def feature_drift(
    reference: ProfileView,
    target: ProfileView,
    contract: Contract,
    *,
    columns: Iterable[str] | None = None,
    thresholds: DriftThresholds | None = None,
) -> DriftReport:
    """Test the contract's features (or only `columns`) and the model outputs both profiles hold."""
    thresholds = thresholds or DriftThresholds()
    kinds: dict[str, Kind] = {spec.name: spec.kind or "numeric" for spec in contract.features}
    wanted = list(kinds) if columns is None else list(columns)
    unknown = [name for name in wanted if name not in kinds]
    if unknown:
        raise ValueError(
            f"feature_drift: {', '.join(map(repr, unknown))} not a feature of contract "
            f"{contract.name!r} (features: {', '.join(kinds)})"
        )
    tested: list[tuple[str, Kind, Role]] = [(name, kinds[name], "feature") for name in wanted]
    for name in output_columns(reference, target):
        labels = name == "prediction" and contract.task != "regression"
        tested.append((name, "categorical" if labels else "numeric", "output"))
    rows = tuple(_test_column(reference, target, column, thresholds) for column in tested)
    return DriftReport(rows=rows, thresholds=thresholds)


def output_columns(reference: ProfileView, target: ProfileView) -> list[str]:
    """Return the model output columns (prediction, probability_*) that both profiles hold."""
    both = [name for name in profile_columns(reference) if name in set(profile_columns(target))]
    return [name for name in both if name == "prediction" or name.startswith("probability_")]


def _test_column(
    reference: ProfileView,
    target: ProfileView,
    column: tuple[str, Kind, Role],
    thresholds: DriftThresholds,
) -> DriftRow:
    """Run the test that fits the column's kind and grade the result."""
    name, kind, role = column
    row = DriftRow(name, kind, role, test="ks" if kind == "numeric" else "chi-square")
    missing = _missing_note(reference, "reference", name) or _missing_note(target, "window", name)
    if missing:
        return replace(row, note=missing)
    test = _numeric_scores if kind == "numeric" else _categorical_scores
    return _grade(replace(row, **test(reference, target, name)), thresholds)


def _missing_note(view: ProfileView, side: str, name: str) -> str:
    """Explain why a column cannot be tested on one side, or return an empty string."""
    counts = column_counts(view, name)
    if counts is None:
        return f"column not in the {side} profile"
    if counts.n == 0:
        return f"no rows in {side}"
    return f"only nulls in {side}" if counts.non_null == 0 else ""


def _numeric_scores(reference: ProfileView, target: ProfileView, name: str) -> dict[str, Any]:
    """Return the KS test and the Hellinger distance of a numeric column."""
    ref, tgt = column_distribution(reference, name), column_distribution(target, name)
    if ref is None or tgt is None:
        return {"note": f"no numeric values in {'reference' if ref is None else 'window'}"}
    ks = ks_test(target, reference, name)
    if ks is None:
        return {"note": "KS test undefined on these sketches"}
    scores = {"statistic": ks[0], "p_value": ks[1], "effect_size": ks[0]}
    splits = sorted({q for q in ref.quantiles(_BIN_FRACTIONS) if math.isfinite(q)})
    if not splits:
        return {**scores, "note": "no finite reference quantiles to bin for hellinger"}
    return {**scores, "hellinger": hellinger(ref.pmf(splits), tgt.pmf(splits))}


def _categorical_scores(reference: ProfileView, target: ProfileView, name: str) -> dict[str, Any]:
    """Return the chi-square test and the Hellinger distance of a categorical column."""
    table = category_table(reference, target, name)
    if table is None:
        return {"note": "no frequent items in the profiles"}
    ref_counts, tgt_counts, new = table
    statistic, p_value = chi_square(ref_counts, tgt_counts)
    distance = hellinger(ref_counts, tgt_counts)
    note = f"new categories: {', '.join(new)}" if new else ""
    scores = {"statistic": statistic, "p_value": p_value, "effect_size": distance}
    return {**scores, "hellinger": distance, "note": note}


def category_table(
    reference: ProfileView, target: ProfileView, name: str
) -> tuple[list[float], list[float], list[str]] | None:
    """Return aligned reference and window counts per category, and the window's new categories.

    A value listed on one side only is kept when the other side's list is complete (the value truly
    did not occur there); otherwise it joins the pooled `<other>` bucket, the last of the counts.
    """
    ref, tgt = column_frequent_items(reference, name), column_frequent_items(target, name)
    ref_seen, tgt_seen = column_counts(reference, name), column_counts(target, name)
    if ref is None or tgt is None or ref_seen is None or tgt_seen is None:
        return None
    keep = [
        value
        for value in dict.fromkeys([*ref.counts, *tgt.counts])
        if (value in ref.counts or ref.complete) and (value in tgt.counts or tgt.complete)
    ]
    ref_counts = [ref.counts.get(value, 0.0) for value in keep]
    tgt_counts = [tgt.counts.get(value, 0.0) for value in keep]
    new = [value for value, r, t in zip(keep, ref_counts, tgt_counts, strict=True) if r == 0 < t]
    ref_counts.append(max(ref_seen.non_null - sum(ref_counts), 0.0))
    tgt_counts.append(max(tgt_seen.non_null - sum(tgt_counts), 0.0))
    return ref_counts, tgt_counts, new


def chi_square(reference: Sequence[float], target: Sequence[float]) -> tuple[float, float]:
    """Return the two-sample chi-square statistic and p-value of two aligned count vectors."""
    pairs = [(r, t) for r, t in zip(reference, target, strict=True) if r + t > 0]
    ref_total, tgt_total = sum(r for r, _ in pairs), sum(t for _, t in pairs)
    if len(pairs) < 2 or ref_total == 0 or tgt_total == 0:
        return 0.0, 1.0
    share = ref_total / (ref_total + tgt_total)
    statistic = 0.0
    for r, t in pairs:
        expected_ref, expected_tgt = share * (r + t), (1 - share) * (r + t)
        statistic += (r - expected_ref) ** 2 / expected_ref + (t - expected_tgt) ** 2 / expected_tgt
    return statistic, float(stats.chi2.sf(statistic, len(pairs) - 1))


def hellinger(p: Sequence[float], q: Sequence[float]) -> float:
    """Return the Hellinger distance (0 to 1) between two aligned count or probability vectors."""
    p_total, q_total = sum(p) or 1.0, sum(q) or 1.0
    pairs = zip(p, q, strict=True)
    total = sum((math.sqrt(a / p_total) - math.sqrt(b / q_total)) ** 2 for a, b in pairs)
    return min(math.sqrt(total / 2), 1.0)


def _grade(row: DriftRow, thresholds: DriftThresholds) -> DriftRow:
    """Replace NaN and infinite scores by None (explained in the note) and grade the drift."""
    notes = [row.note] if row.note else []
    scores: dict[str, Any] = {}
    for key in ("statistic", "p_value", "effect_size", "hellinger"):
        value = getattr(row, key)
        scores[key] = None if value is None or not math.isfinite(value) else float(value)
        if value is not None and scores[key] is None:
            notes.append(f"{key} was {value}")
    p_value, effect = scores["p_value"], scores["effect_size"]
    significant = p_value is not None and p_value < thresholds.alpha
    large = effect is not None and effect >= thresholds.effect_threshold(row.kind)
    # "possible": a significant difference too small to act on.
    category: Category = ("drift" if large else "possible") if significant else "none"
    note = "; ".join(dict.fromkeys(notes))
    return replace(row, **scores, drifted=category == "drift", category=category, note=note)
