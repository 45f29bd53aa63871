"""The retraining policies a backtest compares: static, every, periodic:K and triggered."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["static", "every", "periodic", "triggered"]
DESCRIPTIONS = {
    "static": "the first model forever",
    "every": "retrain after every batch",
    "periodic": "retrain after every {period} batches",
    "triggered": "retrain when monitor-model's retrain policy says so",
}
_PERIODIC = re.compile(r"^periodic:(\d+)$")


@dataclass(frozen=True)
class PolicySpec:
    """One policy: its name as given, its kind, and the period of `periodic:K`."""

    name: str
    kind: Kind
    period: int = 1

    @classmethod
    def parse(cls, text: str) -> PolicySpec:
        """Read "static", "every", "periodic:K" (K >= 1) or "triggered"."""
        name = text.strip().lower()
        if name in ("static", "every", "triggered"):
            return cls(name, name)  # type: ignore[arg-type]
        match = _PERIODIC.match(name)
        if match and int(match[1]) >= 1:
            return cls(name, "periodic", int(match[1]))
        raise ValueError(
            f"unknown policy {text!r}: use static, every, periodic:K (K >= 1) or triggered"
        )

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.kind].format(period=self.period)

    def scheduled(self, batch_index: int) -> bool:
        """Whether a schedule-driven policy retrains after batch `batch_index` (0-based)."""
        if self.kind == "every":
            return True
        return self.kind == "periodic" and (batch_index + 1) % self.period == 0


def parse_policies(texts: str | list[str] | tuple[str, ...]) -> tuple[PolicySpec, ...]:
    """Read a comma-separated list (or a list) of policies; names must not repeat."""
    items = texts.split(",") if isinstance(texts, str) else list(texts)
    specs = tuple(PolicySpec.parse(t) for t in items if t.strip())
    if not specs:
        raise ValueError("no policy given: use e.g. static,every,triggered")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"a policy is named twice: {names}")
    return specs
