"""Point aliases (champion, challenger, previous) at model versions, with an event history.

Every alias change is a compare-and-swap on the aliases' ``revision`` under the model's lock,
written through a temporary file and an atomic replace, and appended to the model's history.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from mlops.registry.locking import ConcurrentUpdateError
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

AliasChange = Callable[[dict[str, str]], tuple[dict[str, str], dict[str, Any]]]


class AliasStore(RegistryStorage):
    """Read and change the aliases of models, and read their history."""

    def aliases(self, model: str) -> AliasState:
        """Return the current aliases of a model (revision 0 and none when never set)."""
        check_name(model, "model name")
        path = f"{self._model_dir(model)}/aliases.json"
        try:
            doc = json.loads(self._fs.cat_file(path))
            return AliasState(int(doc["revision"]), dict(doc["aliases"]), doc.get("updated_at"))
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
            new = {k: v for k, v in current.items() if (k, v) != ("challenger", target)}
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
            mapping, details = change(dict(current.aliases))
            state = AliasState(current.revision + 1, mapping, self._clock().isoformat())
            doc = {"revision": state.revision, "aliases": mapping, "updated_at": state.updated_at}
            self._write_atomic(f"{self._model_dir(model)}/aliases.json", dumps_json(doc, "aliases"))
            self._append_history(
                model, event, actor, reason, {**details, "revision": state.revision}
            )
        return state
