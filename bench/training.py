"""Benchmark training and inference of the default use case: ONNX Runtime vs PyTorch eager.

Simulates the stable two weeks of the default scenario, trains with the production code path,
exports and verifies, then times predictions on the same rows through ONNX Runtime (raw columns in,
preprocessing inside the graph) and through the PyTorch pipeline (pandas preprocessing + eager
module), the baseline a user would hand-write. Then compares training epochs: the project's
Lightning path, the previous one and a minimal tensor loop (bench.training_epochs). Writes
bench/results/training.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.training_epochs import compare_epochs, epoch_lines
from mlops.contract.loader import load_contract
from mlops.data.simulate import SimulationConfig, simulate
from mlops.data.sources import Window, load_dataset
from mlops.data.validate import validate_frame
from mlops.inference.feed import onnx_feed
from mlops.release.export import export_onnx
from mlops.release.verify import create_session, run_session, verify_export
from mlops.settings import DEFAULT_CONTRACT
from mlops.training.train import TrainParams, predict_torch, split_by_time, train_model

RESULTS = Path(__file__).resolve().parent / "results"


def _timed(fn: Any, repeats: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.median(samples)), "p95_ms": float(np.percentile(samples, 95))}


def run(
    days: int, rows_per_day: int, max_epochs: int, epoch_rounds: int, epochs_per_round: int
) -> dict[str, Any]:
    """Run the benchmark and return its figures."""
    work = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    simulate(
        str(work / "sim"), SimulationConfig(days=days, rows_per_day=rows_per_day, scenario="stable")
    )
    contract = load_contract(DEFAULT_CONTRACT)
    loaded = load_dataset(
        str(work / "sim" / "raw"),
        contract,
        labels_uri=str(work / "sim" / "labels"),
        window=Window(),
    )
    valid = validate_frame(loaded.labeled_frame(), contract).valid
    splits = split_by_time(valid)
    params = TrainParams(max_epochs=max_epochs)
    started = time.perf_counter()
    model = train_model(splits, contract, params)
    train_s = time.perf_counter() - started
    started = time.perf_counter()
    path = export_onnx(model, contract, work / "model.onnx")
    export_s = time.perf_counter() - started
    report = verify_export(path, model, contract, splits.holdout)
    session, device = create_session(path)
    figures: dict[str, Any] = {}
    for batch in (1, 256):
        rows = splits.holdout.head(batch)
        feed = onnx_feed(rows, contract)
        onnx_t = _timed(lambda feed=feed: run_session(session, feed), 300 if batch == 1 else 50)
        torch_t = _timed(lambda rows=rows: predict_torch(model, rows), 300 if batch == 1 else 50)
        figures[f"batch_{batch}"] = {
            "onnxruntime": onnx_t,
            "pytorch_eager": torch_t,
            "speedup_p50": torch_t["p50_ms"] / onnx_t["p50_ms"],
        }
    epochs = compare_epochs(
        splits, contract, model.preprocessor, params, epoch_rounds, epochs_per_round
    )
    return {
        "rows": {
            "train": len(splits.train),
            "val": len(splits.val),
            "holdout": len(splits.holdout),
        },
        "training": {
            "seconds": round(train_s, 2),
            "epochs": model.epochs,
            "device": model.device,
            "seconds_per_epoch": round(train_s / model.epochs, 2),
        },
        "export_seconds": round(export_s, 2),
        "verification": report.to_dict(),
        "onnxruntime_device": device,
        "inference": figures,
        "epoch_time": epochs,
        "machine": {
            "cpu_count": torch.get_num_threads(),
            "platform": platform.platform(),
            "cuda": torch.cuda.is_available(),
        },
    }


def to_markdown(result: dict[str, Any]) -> str:
    """Render the figures as a markdown report."""
    t = result["training"]
    lines = [
        "# Training and inference benchmark",
        "",
        f"- Rows: {result['rows']}",
        f"- Training on {t['device']}: {t['seconds']} s for {t['epochs']} epochs "
        f"({t['seconds_per_epoch']} s/epoch); export {result['export_seconds']} s",
        f"- Parity: max |diff| {result['verification']['max_abs_diff']:.2e} on "
        f"{result['verification']['parity_rows']} rows",
        "",
        "| batch | onnxruntime p50 ms | pytorch eager p50 ms | speedup |",
        "|---|---|---|---|",
    ]
    for name, fig in result["inference"].items():
        lines.append(
            f"| {name.split('_')[1]} | {fig['onnxruntime']['p50_ms']:.3f} | "
            f"{fig['pytorch_eager']['p50_ms']:.3f} | {fig['speedup_p50']:.1f}x |"
        )
    return "\n".join(lines + epoch_lines(result["epoch_time"])) + "\n"


def main() -> None:
    """Parse arguments, run, and write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--rows-per-day", type=int, default=5000)
    parser.add_argument("--max-epochs", type=int, default=25)
    parser.add_argument(
        "--epoch-rounds", type=int, default=3, help="Alternating rounds of the epoch comparison."
    )
    parser.add_argument(
        "--epochs-per-round", type=int, default=4, help="Epochs each variant trains per round."
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    result = run(
        args.days, args.rows_per_day, args.max_epochs, args.epoch_rounds, args.epochs_per_round
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "training.json").write_text(json.dumps(result, indent=2))
    (args.out / "training.md").write_text(to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
