"""GPU against CPU in the same run: Lightning training and ONNX Runtime inference.

Trains the same model on the same simulated rows once on CPU and once on the GPU (the product's
`train_model`, so the device is chosen the way the flows choose it), then exports it and scores
batches of several sizes through the product's session code with the CUDA and the CPU execution
providers. Ratios (CPU time / GPU time) are the result; each device used is read from what really
ran (Lightning's root device, the providers of the created session). Without a GPU it still runs
and reports the CPU figures alone.

    python -m bench.gpu [--days 30] [--rows-per-day 2000] [--epochs 5] [--out bench/results]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, labelled_rows
from mlops.inference.feed import onnx_feed
from mlops.inference.sessions import create_session, run_session
from mlops.release.export import export_onnx
from mlops.release.verify import repeat_rows
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams, split_by_time, train_model

BATCHES = (1, 64, 1024, 16384)
# The product's default network, and a wider one where a GPU has work to do.
NETWORKS = {"default (128, 64)": (128, 64), "wide (1024, 1024, 512)": (1024, 1024, 512)}


def gpu_name() -> str | None:
    """Return the CUDA device's name, or None without one."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def time_training(splits: Any, contract: Any, params: TrainParams) -> dict[str, Any]:
    """Train once; return wall time, epochs and the device Lightning really used."""
    model = train_model(splits, contract, params)
    return {
        "device": model.device,
        "epochs": model.epochs,
        "seconds": round(model.seconds, 3),
        "seconds_per_epoch": round(model.seconds / max(model.epochs, 1), 4),
        "best_val_loss": round(model.best_val_loss, 5),
        "model": model,
    }


def time_session(session: Any, feed: dict[str, np.ndarray], repeats: int) -> float:
    """Median seconds of one call, after two warm-up calls."""
    for _ in range(2):
        run_session(session, feed)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        run_session(session, feed)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def compare_inference(onnx_path: Path, frame: Any, contract: Any) -> dict[str, Any]:
    """Score batches with the CUDA and CPU providers; return latency, rows/s and parity."""
    sessions = {
        "gpu": create_session(onnx_path, prefer_gpu=True),
        "cpu": create_session(onnx_path, prefer_gpu=False),
    }
    out: dict[str, Any] = {"devices": {k: device for k, (_, device) in sessions.items()}}
    rows = []
    for size in BATCHES:
        feed = onnx_feed(repeat_rows(frame, size), contract)
        repeats = 200 if size <= 64 else 30
        row: dict[str, Any] = {"batch": size}
        for name, (session, _) in sessions.items():
            seconds = time_session(session, feed, repeats)
            row[f"{name}_ms"] = round(seconds * 1000, 3)
            row[f"{name}_rows_per_s"] = round(size / seconds)
        row["cpu_over_gpu"] = round(row["cpu_ms"] / row["gpu_ms"], 2)
        rows.append(row)
    out["batches"] = rows
    feed = onnx_feed(repeat_rows(frame, BATCHES[-1]), contract)
    gpu_out = run_session(sessions["gpu"][0], feed)
    cpu_out = run_session(sessions["cpu"][0], feed)
    out["max_abs_diff_gpu_vs_cpu"] = float(np.max(np.abs(gpu_out - cpu_out)))
    return out


def run(days: int, rows_per_day: int, epochs: int) -> dict[str, Any]:
    """Measure; return the results (without the trained models)."""
    contract = load_contract(DEFAULT_CONTRACT)
    rows = labelled_rows(
        SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable", seed=7)
    )
    splits = split_by_time(rows)
    accelerators = ["cpu", "gpu"] if torch.cuda.is_available() else ["cpu"]
    training: dict[str, Any] = {}
    trained = None
    for label, hidden in NETWORKS.items():
        params = TrainParams(max_epochs=epochs, patience=epochs, hidden=hidden)
        per_device = {}
        for accelerator in accelerators:
            result = time_training(
                splits, contract, dataclasses.replace(params, accelerator=accelerator)
            )
            model = result.pop("model")
            if label.startswith("default"):
                trained = model
            per_device[accelerator] = result
        if "gpu" in per_device:
            per_device["cpu_over_gpu_per_epoch"] = round(
                per_device["cpu"]["seconds_per_epoch"] / per_device["gpu"]["seconds_per_epoch"], 2
            )
        training[label] = per_device
    assert trained is not None
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(trained, contract, Path(folder) / "model.onnx")
        inference = compare_inference(path, splits.holdout.reset_index(drop=True), contract)
    import onnxruntime as ort

    return {
        "gpu": gpu_name(),
        "machine": platform.machine(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "onnxruntime": ort.__version__,
        "onnxruntime_providers": ort.get_available_providers(),
        "rows": {
            "train": len(splits.train),
            "val": len(splits.val),
            "holdout": len(splits.holdout),
        },
        "epochs": epochs,
        "training": training,
        "inference": inference,
    }


def markdown(results: dict[str, Any]) -> str:
    """Render the results as a markdown report."""
    lines = [
        "# GPU against CPU, same run",
        "",
        f"- GPU: {results['gpu'] or 'none (CPU figures only)'}; torch {results['torch']} "
        f"(CUDA {results['cuda']}); onnxruntime {results['onnxruntime']}",
        f"- Rows: {results['rows']}; {results['epochs']} epochs per training (no early stop)",
        "",
        "## Training (Lightning, `train_model`)",
        "",
        "| network | device | s/epoch | total s | best val loss | CPU/GPU per epoch |",
        "|---|---|---|---|---|---|",
    ]
    for label, per_device in results["training"].items():
        ratio = per_device.get("cpu_over_gpu_per_epoch")
        for accelerator in ("cpu", "gpu"):
            if accelerator in per_device:
                r = per_device[accelerator]
                shown = f"{ratio:.2f}x" if ratio and accelerator == "gpu" else ""
                lines.append(
                    f"| {label} | {r['device']} | {r['seconds_per_epoch']:.4f} | {r['seconds']:.2f}"
                    f" | {r['best_val_loss']:.5f} | {shown} |"
                )
    inference = results["inference"]
    lines += [
        "",
        "## ONNX Runtime inference (`create_session`, default network)",
        "",
        f"- Devices the sessions really got: {inference['devices']}",
        f"- Max |GPU - CPU| over {BATCHES[-1]} rows: {inference['max_abs_diff_gpu_vs_cpu']:.2e}",
        "",
        "| batch rows | GPU-session ms | CPU ms | GPU-session rows/s | CPU rows/s | CPU/GPU |",
        "|---|---|---|---|---|---|",
    ]
    for row in inference["batches"]:
        lines.append(
            f"| {row['batch']} | {row['gpu_ms']:.3f} | {row['cpu_ms']:.3f} | "
            f"{row['gpu_rows_per_s']:,} | {row['cpu_rows_per_s']:,} | {row['cpu_over_gpu']:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rows-per-day", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args()
    results = run(args.days, args.rows_per_day, args.epochs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "gpu.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
