"""Assemble a version's manifest (its lineage) and its human-readable model card."""

from __future__ import annotations

from typing import Any

from mlops.contract.spec import Contract
from mlops.release.export import output_name
from mlops.release.lineage import code_version, package_versions
from mlops.settings import REPO_ROOT
from mlops.training.train import TrainedModel, params_dict

REFIT_METRICS_FROM = "the model before the refit, on a holdout the refit then learned"
GATED_METRICS_FROM = "a refit on the rows before the holdout, on a holdout the last refit learned"


def build_manifest(
    *,
    model: TrainedModel,
    contract: Contract,
    data: dict[str, Any],
    metrics: dict[str, float],
    slice_metrics: list[dict[str, Any]],
    verification: dict[str, Any],
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Return everything needed to reproduce, serve and audit a model version.

    `data` holds the data lineage: uri, labels_uri, fingerprint, training window, split rows.
    The registry adds version, created_at and onnx_sha256.
    """
    prep = model.preprocessor
    return {
        "contract": {
            "name": contract.name,
            "fingerprint": contract.fingerprint,
            "source": contract.source,
        },
        "contract_fingerprint": contract.fingerprint,
        "task": prep.target.task,
        "classes": list(prep.target.classes or []),
        "decision_threshold": model.decision_threshold,
        "threshold_objective": model.threshold_objective,
        "inputs": [
            {"name": c.name, "type": "float32" if c.is_numeric else "string"}
            for c in contract.features
        ],
        "output": output_name(prep.target.task),
        "preprocessor": prep.to_dict(),
        "data": data,
        "parameters": params_dict(model.params),
        "training": {
            "device": model.device,
            "epochs": model.epochs,
            "best_epoch": model.best_epoch,
            "best_val_loss": model.best_val_loss,
            "seconds": round(model.seconds, 2),
        },
        "metrics": metrics,
        "slice_metrics": slice_metrics,
        **refit_entry(model),
        **({"window": model.window} if model.window else {}),
        "verification": verification,
        "onnxruntime_device": verification.get("device"),
        "code": code_version(REPO_ROOT),
        "packages": package_versions(),
        "flow_run_id": flow_run_id,
    }


def refit_entry(model: TrainedModel) -> dict[str, Any]:
    """Return the manifest's `refit` key for a refitted model, or nothing for another model."""
    if model.refit_rows is None:
        return {}
    refit = {
        "rows": model.refit_rows,
        "epochs": model.refit_epochs,
        "seconds": round(model.refit_seconds, 2),
        "metrics_from": GATED_METRICS_FROM
        if "gated" in (model.window or {})
        else REFIT_METRICS_FROM,
    }
    return {"refit": refit}


def render_model_card(manifest: dict[str, Any], *, version: str = "(unregistered)") -> str:
    """Render a markdown model card from a manifest."""
    data, training, verify = manifest["data"], manifest["training"], manifest["verification"]
    lines = [
        f"# Model card: {manifest['contract']['name']} {manifest.get('version', version)}",
        "",
        f"- Task: **{manifest['task']}**"
        + (f", classes {manifest['classes']}" if manifest["classes"] else ""),
        *_threshold_line(manifest),
        f"- Contract fingerprint: `{manifest['contract_fingerprint'][:16]}`",
        f"- Data: `{data.get('uri')}`, window {data.get('window_from')} to {data.get('window_to')}",
        f"- Rows: train {data.get('train_rows')}, validation {data.get('val_rows')}, "
        f"holdout {data.get('holdout_rows')}; "
        f"data fingerprint `{str(data.get('fingerprint'))[:16]}`",
        f"- Trained on **{training['device']}**: {training['epochs']} epochs "
        f"(best {training['best_epoch']}) in {training['seconds']} s",
        *_recency_line(manifest.get("parameters") or {}),
        *_refit_line(manifest.get("refit")),
        *_window_line(manifest.get("window")),
        f"- Code: {manifest['code'].get('git_sha')} (dirty: {manifest['code'].get('dirty')})",
        f"- Prefect flow run: {manifest.get('flow_run_id')}",
        "",
        "## Holdout metrics",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v:.4f} |" for k, v in manifest["metrics"].items()]
    if manifest.get("slice_metrics"):
        lines += ["", "## Slices", "", _slice_table(manifest["slice_metrics"])]
    lines += [
        "",
        "## Export verification",
        "",
        f"- {verify['checker']}",
        f"- ONNX vs PyTorch on {verify['parity_rows']} rows: max |diff| "
        f"{verify['max_abs_diff']:.2e} (tolerance {verify['tolerance']:.0e}); unseen categories "
        f"{verify['oov_max_abs_diff']:.2e}",
        f"- onnxruntime on **{verify['device']}** ({', '.join(verify['providers'])}): p50 "
        f"{verify['p50_ms_batch1']:.3f} ms at batch 1, {verify['p50_ms_batch256']:.3f} ms at 256",
        "",
        "## Inputs",
        "",
        ", ".join(f"`{i['name']}` ({i['type']})" for i in manifest["inputs"]),
        "",
    ]
    return "\n".join(lines)


def _recency_line(parameters: dict[str, Any]) -> list[str]:
    half_life = parameters.get("recency_half_life")
    if not half_life:
        return []
    return [
        f"- Recency weights: a row weighs half as much for every {half_life:g} of the rows learned "
        f"it is older than the newest (the oldest weighs {0.5 ** (1 / half_life):.3g})"
    ]


def _refit_line(refit: dict[str, Any] | None) -> list[str]:
    if not refit:
        return []
    return [
        f"- Refitted on all {refit['rows']} rows (holdout included) for {refit['epochs']} epochs; "
        + (
            "the metrics below are those of a refit on the rows before the holdout, which it had "
            "not seen."
            if refit.get("metrics_from") == GATED_METRICS_FROM
            else "the metrics below are those of the model before the refit, on a holdout it had "
            "not seen."
        )
    ]


def _window_line(window: dict[str, Any] | None) -> list[str]:
    if not window:
        return []
    lines = []
    if "holdout" in window:
        lines.append(f"- Holdout: {window['holdout']}.")
    if "gated" in window:
        lines.append(f"- Gated and measured as {window['gated']}.")
    if "recency" in window:
        lines.append(_recency_choice_line(window["recency"]))
    if "change" not in window:
        return lines
    change = window["change"]
    kept = "the rows since it only" if window["rows"] == "since change" else "the whole window"
    where = (
        "The change the previous champion was trained across (no new step since) began"
        if change.get("inherited")
        else f"The previous champion's loss stepped up {change['loss_before']} -> "
        f"{change['loss_after']} (z {change['z']})"
    )
    return [
        f"- {where} {change['rows_after']} rows before the "
        f"window's end; trained on {kept} (rows since the change vs whole window, paired z "
        f"{window['recent_better_z']} on {window['validation_rows']} validation rows)",
        *lines,
    ]


def _recency_choice_line(recency: dict[str, Any]) -> str:
    return (
        f"- Recency-weighted alternative (half-life {recency['half_life']:g} of the rows "
        f"learned): paired z {recency['better_z']} against unweighted on "
        f"{recency['validation_rows']} validation rows; "
        + ("kept." if recency["kept"] else "not kept (needed: 2).")
    )


def _threshold_line(manifest: dict[str, Any]) -> list[str]:
    if manifest["task"] != "binary":
        return []
    objective = manifest.get("threshold_objective") or "f1"  # older manifests: F1 argmax
    how = "fixed" if objective.startswith("fixed:") else f"tuned for {objective} on validation"
    if manifest.get("refit") and objective in ("accuracy", "balanced_accuracy"):
        anchor = "0.5" if objective == "accuracy" else "the positive rate of the rows learned"
        how = f"{objective}: a refit serves at {anchor}, its calibrated cut"
    return [f"- Decision threshold: {float(manifest['decision_threshold']):.4f} ({how})"]


def _slice_table(rows: list[dict[str, Any]]) -> str:
    metric_names = [k for k in rows[0] if k not in {"slice", "value", "rows"}]
    head = "| slice | value | rows | " + " | ".join(metric_names) + " |"
    sep = "|---" * (3 + len(metric_names)) + "|"
    body = [
        f"| {r['slice']} | {r['value']} | {r['rows']} | "
        + " | ".join(f"{r[m]:.4f}" for m in metric_names)
        + " |"
        for r in rows
    ]
    return "\n".join([head, sep, *body])
