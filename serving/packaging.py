"""Build a Bento that serves one registry version, pinned at build time."""

from __future__ import annotations

from pathlib import Path

from mlops.contract.loader import load_contract
from mlops.registry.store import Registry
from mlops.settings import REPO_ROOT, Settings
from serving.bento_store import save_to_bentoml

BENTOFILE = REPO_ROOT / "serving" / "bentofile.yaml"


class PackagingError(RuntimeError):
    """A Bento that cannot be built as asked."""


def build_pinned_bento(settings: Settings, model_name: str, version: str) -> str:
    """Save the version to the BentoML model store and build the Bento; return its tag."""
    import bentoml

    registry = Registry(settings.registry)
    found = registry.get(model_name, version)
    contract_path = Path(settings.contract).resolve()
    try:
        relative = contract_path.relative_to(REPO_ROOT)
    except ValueError:
        raise PackagingError(
            f"the contract {contract_path} must live inside {REPO_ROOT} (e.g. contracts/) to be "
            "packaged into the Bento"
        ) from None
    contract = load_contract(contract_path)
    expected = found.manifest.get("contract_fingerprint")
    if contract.fingerprint != expected:
        raise PackagingError(
            f"{model_name} {found.version} was trained on contract fingerprint {expected}, but "
            f"{contract_path} has {contract.fingerprint}; set MLOPS_CONTRACT to its contract"
        )
    tag = save_to_bentoml(found, registry, labels={"task": str(found.manifest.get("task"))})
    bento = bentoml.bentos.build_bentofile(
        str(BENTOFILE),
        build_ctx=str(REPO_ROOT),
        labels={"model": model_name, "model_version": found.version},
        args={"model_tag": tag, "contract": str(relative)},
    )
    return str(bento.tag)
