"""Point aliases (champion, challenger, previous) at model versions, with an event history.

Every alias change is a compare-and-swap on the aliases' ``revision`` under the model's lock,
written through a temporary file and an atomic replace, and appended to the model's history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from mlops.registry.locking import ConcurrentUpdateError
from mlops.registry.rollouts import Rollout
from mlops.registry.storage import (
    VERSION_RE,
    AliasNotSetError,
    AliasState,
    RegistryError,
    RegistryStorage,
    check_name,
    dumps_json,
    format_aliases,
)

AliasChange = Callable[
    ..., tuple[Any, ...]
]  # (aliases[, rollout]) -> (aliases[, rollout], details)


class AliasStore(RegistryStorage):
    """Read and change the aliases of models, and read their history."""

    def aliases(self, model: str) -> AliasState:
        """Return the current aliases of a model (revision 0 and none when never set)."""
        check_name(model, "model name")
        path = f"{self._model_dir(model)}/aliases.json"
        try:
            doc = json.loads(self._fs.cat_file(path))
            return AliasState(
                int(doc["revision"]),
                dict(doc["aliases"]),
                doc.get("updated_at"),
                doc.get("rollout"),
            )
        except FileNotFoundError:
            return AliasState()
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(f"{self._uri(path)} is not a valid aliases file: {exc!r}") from exc

    def set_alias(
        self,
        model: str,
        alias: str,
        version: str,
        *,
        expected_revision: int | None = None,
        actor: str = "unknown",
        reason: str = "",
    ) -> AliasState:
        """Point an alias at a version (or at what another alias points to)."""
        check_name(alias, "alias")
        if VERSION_RE.match(alias):
            raise RegistryError(f"alias {alias!r} looks like a version name; choose another name")
        target = self.get(model, version).version

        def change(current: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
            details = {"alias": alias, "from": current.get(alias), "to": target}
            return {**current, alias: target}, details

        return self._update(model, "alias_set", change, expected_revision, actor, reason)

    def promote(
        self,
        model: str,
        version: str,
        *,
        expected_revision: int | None = None,
        actor: str,
        reason: str,
    ) -> AliasState:
        """Make a version the champion; the old champion becomes previous."""
        target = self.get(model, version).version

        def change(current: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
            champion = current.get("champion")
            if champion == target:
                raise RegistryError(f"{model} {target} is already the champion; nothing to promote")
            trial = ("challenger", "shadow", "canary")
            new = {k: v for k, v in current.items() if not (k in trial and v == target)}
            new["champion"] = target
            if champion is not None:
                new["previous"] = champion
            return new, {"from": champion, "to": target}

        return self._update(model, "promoted", change, expected_revision, actor, reason)

    def rollback(
        self, model: str, *, expected_revision: int | None = None, actor: str, reason: str
    ) -> AliasState:
        """Make the previous champion the champion again; the current one becomes previous."""

        def change(current: dict[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
            previous, champion = current.get("previous"), current.get("champion")
            if previous is None:
                raise AliasNotSetError(
                    f"cannot roll back {model!r}: no 'previous' version is set "
                    f"(aliases set: {format_aliases(current)}); promote a version first"
                )
            new = {**current, "champion": previous}
            if champion is None:
                del new["previous"]
            else:
                new["previous"] = champion
            return new, {"from": champion, "to": previous}

        return self._update(model, "rolled_back", change, expected_revision, actor, reason)

    def start_rollout(
        self,
        model: str,
        version: str,
        strategy: str,
        *,
        share: float = 0.0,
        expected_revision: int | None = None,
        actor: str,
        reason: str,
    ) -> AliasState:
        """Put a version on trial beside the champion, as a `shadow` or a `canary` with `share`.

        The version gets the alias named like the strategy; one rollout at a time per model.
        """
        target = self.get(model, version).version
        now = self._clock().isoformat()

        def change(
            current: dict[str, str], rollout: Any
        ) -> tuple[dict[str, str], Any, dict[str, Any]]:
            if current.get("champion") is None:
                raise AliasNotSetError(f"{model!r} has no champion to try {target} beside")
            if current["champion"] == target:
                raise RegistryError(
                    f"{model} {target} is the champion; it cannot be its own {strategy}"
                )
            if rollout is not None:
                raise RegistryError(
                    f"{model} already has a {rollout['strategy']} on trial ({rollout['version']}); "
                    "end that rollout first"
                )
            trial = Rollout(strategy, target, share, now, now, current["champion"])
            details = {"strategy": strategy, "to": target, "share": share}
            return {**current, strategy: target}, trial.to_dict(), details

        return self._update(
            model, "rollout_started", change, expected_revision, actor, reason, with_rollout=True
        )

    def widen_rollout(
        self,
        model: str,
        share: float,
        *,
        expected_revision: int | None = None,
        actor: str,
        reason: str,
    ) -> AliasState:
        """Give the canary on trial a new share of the traffic."""
        now = self._clock().isoformat()

        def change(
            current: dict[str, str], rollout: Any
        ) -> tuple[dict[str, str], Any, dict[str, Any]]:
            trial = Rollout.from_dict(rollout)
            if trial is None or trial.strategy != "canary":
                raise AliasNotSetError(f"{model!r} has no canary on trial to widen")
            widened = replace(trial, share=share, step_at=now)
            details = {
                "strategy": "canary",
                "to": trial.version,
                "from_share": trial.share,
                "share": share,
            }
            return current, widened.to_dict(), details

        return self._update(
            model, "rollout_widened", change, expected_revision, actor, reason, with_rollout=True
        )

    def end_rollout(
        self,
        model: str,
        outcome: str,
        *,
        version: str | None = None,
        expected_revision: int | None = None,
        actor: str,
        reason: str,
    ) -> AliasState:
        """End the rollout on trial (`outcome`: won, retired, rolled_back, cancelled).

        `version`: end it only if this version is the one on trial.
        """

        def change(
            current: dict[str, str], rollout: Any
        ) -> tuple[dict[str, str], Any, dict[str, Any]]:
            trial = Rollout.from_dict(rollout)
            if trial is None or (version is not None and trial.version != version):
                raise AliasNotSetError(
                    f"{model!r} has no rollout of {version or 'any version'} on trial"
                )
            new = {k: v for k, v in current.items() if k != trial.strategy}
            details = {
                "strategy": trial.strategy,
                "from": trial.version,
                "outcome": outcome,
                "share": trial.share,
            }
            return new, None, details

        return self._update(
            model, f"rollout_{outcome}", change, expected_revision, actor, reason, with_rollout=True
        )

    def history(self, model: str) -> list[dict[str, Any]]:
        """Return the events of a model, oldest first."""
        check_name(model, "model name")
        try:
            text = self._fs.cat_file(f"{self._model_dir(model)}/history.jsonl").decode()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _update(
        self,
        model: str,
        event: str,
        change: AliasChange,
        expected_revision: int | None,
        actor: str,
        reason: str,
        *,
        with_rollout: bool = False,
    ) -> AliasState:
        """Apply an alias change as a compare-and-swap on the revision, under the lock."""
        with self._locked(model):
            current = self.aliases(model)
            if expected_revision is not None and expected_revision != current.revision:
                raise ConcurrentUpdateError(
                    f"aliases of {model!r} are at revision {current.revision}, not "
                    f"{expected_revision}: someone changed them since you read them "
                    f"({format_aliases(current.aliases)}); re-read and retry"
                )
            if with_rollout:
                mapping, rollout, details = change(dict(current.aliases), current.rollout)
            else:
                mapping, details = change(dict(current.aliases))
                rollout = current.rollout
            trial = Rollout.from_dict(rollout)
            if trial is not None and mapping.get(trial.strategy) != trial.version:
                rollout = None  # the trial's alias moved (e.g. it was promoted): the trial is over
            state = AliasState(current.revision + 1, mapping, self._clock().isoformat(), rollout)
            doc = {"revision": state.revision, "aliases": mapping, "updated_at": state.updated_at}
            if rollout is not None:
                doc["rollout"] = rollout
            self._write_atomic(f"{self._model_dir(model)}/aliases.json", dumps_json(doc, "aliases"))
            self._append_history(
                model, event, actor, reason, {**details, "revision": state.revision}
            )
        return state
