"""One rank of a distributed fit: the module torchrun runs in every process of the group.

`python -m mlops.training.rank <job dir>` reads what `fit_in_process_group` wrote there, trains
its share of the rows with Lightning's DDP, and (rank 0) writes the weights back.
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler, TensorDataset

from mlops.training.assembly import build_module, build_trainer, describe_device
from mlops.training.distributed import Arrays
from mlops.training.model import BestWeights, TabularDataModule


class RankBatches(Sampler[torch.Tensor]):
    """Cut this rank's share of the rows into batches, one index tensor per batch."""

    def __init__(self, rows: DistributedSampler[int], batch_size: int) -> None:
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        order = torch.tensor(list(self.rows), dtype=torch.int64)
        yield from order.split(self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for `epoch` (Lightning calls this on each epoch's loader)."""
        self.rows.set_epoch(epoch)


class ShardedDataModule(TabularDataModule):
    """Serve each rank its share of the rows; the global batch stays `batch_size` rows."""

    def _loader(self, dataset: TensorDataset, shuffle: bool, batch_size: int) -> DataLoader:
        world, rank = self.trainer.world_size, self.trainer.global_rank  # type: ignore[union-attr]
        rows: DistributedSampler[int] = DistributedSampler(
            dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=self.seed
        )
        return DataLoader(
            dataset, sampler=RankBatches(rows, -(-batch_size // world)), batch_size=None
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.batch_size)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.val_set is None:
            return []
        return self._loader(self.val_set, False, 4096)


def run_rank(job: Path) -> None:
    """Run this process's rank of the fit described in `job`; rank 0 writes `result.pt`."""
    with open(job / "job.pkl", "rb") as f:
        spec = pickle.load(f)
    params, epochs = spec["params"], spec["epochs"]
    with np.load(job / "arrays.npz") as saved:
        train: Arrays = tuple(saved[f"train_{i}"] for i in range(4) if f"train_{i}" in saved)
        val: Arrays | None = (
            (saved["val_0"], saved["val_1"], saved["val_2"]) if "val_0" in saved else None
        )
    pl.seed_everything(params.seed, workers=True, verbose=False)
    module = build_module(spec["task"], spec["prep"], params)
    data = ShardedDataModule(train, val, batch_size=params.batch_size, seed=params.seed)
    best = BestWeights()
    trainer = build_trainer(params, [best] if val is not None else [], epochs=epochs, ddp=True)
    trainer.fit(module, datamodule=data)
    rank, world = trainer.global_rank, trainer.world_size
    (job / f"rank-{rank}.ok").write_text(f"rank {rank} of {world}\n")
    if rank == 0:
        result = {  # a plain dict: this module runs as __main__
            "state": {k: v.detach().cpu() for k, v in module.state_dict().items()},
            "world_size": world,
            "device": describe_device(str(trainer.strategy.root_device)),
            "epochs": trainer.current_epoch,
        }
        if val is not None:
            result |= {"best_epoch": best.best_epoch, "best_val_loss": best.best_score,
                       "history": best.history}  # fmt: skip
        torch.save(result, job / "result.part")
        (job / "result.part").rename(job / "result.pt")
    _leave_process_group()


def _leave_process_group() -> None:
    """Wait for every rank, then tear the process group down before the interpreter exits.

    Left to interpreter shutdown, gloo's threads are destroyed while still joinable, and a rank
    that finishes first aborts ("terminate called without an active exception", SIGABRT),
    which torchrun reports as a failed fit although every rank had finished.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str]) -> int:
    """Entry point of each rank: `python -m mlops.training.rank <job dir>`."""
    job = Path(argv[0])
    rank = os.environ.get("RANK", "0")
    try:
        run_rank(job)
    except BaseException:
        (job / f"rank-{rank}.error").write_text(traceback.format_exc())
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
